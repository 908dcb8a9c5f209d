// Signing a delivery as ICR does: the one signer the CLI, the tests, the fixtures and the bench use.
// Pure: strings and bytes in, the body and header out; no I/O.
import { canonicalBody } from "./delivery.ts";
import { sign, SIGNATURE_HEADER } from "./signature.ts";

/**
 * What a delivery carries: the payload's JSON text (compact, as `JSON.stringify` writes it), or
 * raw bytes (which need not be text), both base64-encoded as ICR does; or `{ signedData }`, a
 * signedData string sent and signed exactly as given (another base64 alphabet, no padding, line
 * breaks, or not base64 at all).
 */
export type Signable = string | Uint8Array | { signedData: string };

export interface SignOptions {
  /**
   * The body's unsigned top-level fields: the body is `JSON.stringify({ ...envelope, signedData })`
   * (`{}` gives the bare `{"signedData":"…"}`). Absent: ICR's own body, see `signDelivery`.
   */
  envelope?: Record<string, unknown> | undefined;
}

export interface SignedDelivery {
  /** The signedData string in the body, and the HMAC's message. */
  signedData: string;
  /** The HTTP body, JSON text. */
  body: string;
  /** The `x-icr-signature-256` value: `sha256=` + hex HMAC-SHA256(secret, signedData). */
  signature: string;
  /** `{ "x-icr-signature-256": signature }`, to spread into a request's headers. */
  headers: { [SIGNATURE_HEADER]: string };
}

const isObjectText = (text: string) => text.startsWith("{") && text.endsWith("}") && text !== "{}";

/**
 * The delivery ICR sends for `payload` under the webhook `secret`.
 *
 * - `signedData`: standard base64 (padded) of the payload text's UTF-8 bytes, or of the bytes;
 *   `{ signedData }` verbatim.
 * - `body`: with `options.envelope`, `JSON.stringify({ ...envelope, signedData })`. Without it,
 *   for the JSON text of a non-empty object, ICR's own body `canonicalBody(payload)`: the text
 *   with `,"signedData":"…"}` in place of its closing brace, which is
 *   `JSON.stringify({ ...JSON.parse(payload), signedData })` for compact text without a signedData
 *   key; for anything else (`{}`, other text, bytes, `{ signedData }`) the bare
 *   `{"signedData":"…"}`.
 * - `signature`: `sign(secret, signedData)`.
 */
export function signDelivery(payload: Signable, secret: string, options: SignOptions = {}): SignedDelivery {
  const signedData =
    typeof payload === "string"
      ? Buffer.from(payload, "utf8").toString("base64")
      : payload instanceof Uint8Array
        ? Buffer.from(payload).toString("base64")
        : payload.signedData;
  const body =
    options.envelope !== undefined
      ? JSON.stringify({ ...options.envelope, signedData })
      : typeof payload === "string" && isObjectText(payload)
        ? canonicalBody(payload)!
        : JSON.stringify({ signedData });
  const signature = sign(secret, signedData);
  return { signedData, body, signature, headers: { [SIGNATURE_HEADER]: signature } };
}
