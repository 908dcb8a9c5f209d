// The whole check of one delivery, in the order the answers are specified: the body is a JSON
// object with a string signedData (400), the signature matches a configured secret (403). What the
// signature vouches for is never refused: signed data that is not a readable event is verified all
// the same, as an unparsed payload. Pure: bytes and strings in, a verified delivery or a rejection out.
import {
  decodeSignedData,
  parsePayload,
  envelopeMismatch,
  parseEnvelope,
  type Rejection,
  type SignedPayload,
} from "./delivery.ts";
import { verifyWithFallback, type LabelledSecret } from "./signature.ts";

export interface VerifiedDelivery {
  /** The body as text, exactly as received. */
  rawBody: string;
  /** The body is `canonicalBody(payload.text)` of a parsed payload, which rebuilds it byte for byte. */
  canonical: boolean;
  payload: SignedPayload;
  secretLabel: string;
  envelopeMismatch: boolean;
}

export type DeliveryRejection = Rejection<"invalid_body" | "missing_signed_data" | "missing_signature" | "invalid_signature">;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const SIGNED_DATA_KEY = ',"signedData":"';

/**
 * ICR's body is `canonicalBody` of the signed payload. A body of exactly that form is valid JSON
 * whose every other field equals the signed one, so it needs neither a parse of its own nor a
 * field-by-field comparison (together about half the CPU time of a delivery). Anything else
 * returns null and takes the general path.
 */
function verifyCanonical(
  body: Uint8Array,
  signature: string,
  secrets: readonly LabelledSecret[],
): VerifiedDelivery | null {
  let rawBody: string;
  try {
    rawBody = utf8.decode(body);
  } catch {
    return null;
  }
  const key = rawBody.lastIndexOf(SIGNED_DATA_KEY);
  if (key < 0 || !rawBody.endsWith('"}')) return null;
  const signedData = rawBody.slice(key + SIGNED_DATA_KEY.length, -2);
  const secretLabel = verifyWithFallback(secrets, signedData, signature);
  if (secretLabel === null) return null;
  // Decoded leniently: isCanonical admits only the one standard, padded encoding of these bytes,
  // so anything looser never gets past it.
  const bytes = Buffer.from(signedData, "base64");
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return null;
  }
  if (!isCanonical(rawBody, key, signedData, text, bytes)) return null;
  const payload = parsePayload(text, bytes);
  if (!payload.parsed) return null;
  return { rawBody, canonical: true, payload, secretLabel, envelopeMismatch: false };
}

/**
 * Whether `rawBody` is `canonicalBody(text)`, given that it ends with `,"signedData":"<signedData>"}`
 * from `key` on and that `bytes` (signedData decoded) are `text` in UTF-8: the text before `key`
 * must be the payload's without its closing brace, and signedData the standard, padded base64 of
 * the payload's bytes. Compared piece by piece, so that the body is never built a second time.
 */
function isCanonical(rawBody: string, key: number, signedData: string, text: string, bytes: Buffer): boolean {
  return text.endsWith("}") && key === text.length - 1 && rawBody.startsWith(text.slice(0, -1)) && bytes.toString("base64") === signedData;
}

export function verifyDelivery(
  body: Uint8Array,
  signature: string | null,
  secrets: readonly LabelledSecret[],
): ({ ok: true } & VerifiedDelivery) | DeliveryRejection {
  if (signature) {
    const fast = verifyCanonical(body, signature, secrets);
    if (fast !== null) return { ok: true, ...fast };
  }
  const envelope = parseEnvelope(body);
  if (!envelope.ok) return envelope;
  if (!signature) return { ok: false, reason: "missing_signature", message: "no signature header" };
  const secretLabel = verifyWithFallback(secrets, envelope.envelope.signedData, signature);
  if (secretLabel === null) return { ok: false, reason: "invalid_signature", message: "signature does not match" };
  const payload = decodeSignedData(envelope.envelope.signedData);
  return {
    ok: true,
    rawBody: envelope.text,
    // A canonical body with a matching signature never gets here: the fast path took it.
    canonical: false,
    payload,
    secretLabel,
    envelopeMismatch: envelopeMismatch(envelope.envelope, payload),
  };
}
