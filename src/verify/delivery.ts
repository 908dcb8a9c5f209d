// Reading a delivery: the unsigned envelope, the signed payload inside it, and what the two say.
// Pure functions over bytes and strings; the HTTP layer turns their reasons into status codes.

export type Envelope = Record<string, unknown> & { signedData: string };

export type Rejection<Reason extends string> = { ok: false; reason: Reason; message: string };
type Result<T, Reason extends string> = ({ ok: true } & T) | Rejection<Reason>;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    // SyntaxError, or RangeError on nesting deep enough to exhaust the parser's stack.
    return { ok: false };
  }
}

// A byte-order mark is not part of the JSON text (RFC 8259 lets a parser ignore it); the signature
// covers signedData, not the body's framing, so a serializer that writes one is still ICR.
const BOM = "\uFEFF";

/** The body as text and its envelope, or why it is not a delivery (before any signature check). */
export function parseEnvelope(
  body: Uint8Array,
): Result<{ text: string; envelope: Envelope }, "invalid_body" | "missing_signed_data"> {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return { ok: false, reason: "invalid_body", message: "body is not valid UTF-8" };
  }
  const parsed = parseJson(text.startsWith(BOM) ? text.slice(BOM.length) : text);
  if (!parsed.ok || !isObject(parsed.value)) {
    return { ok: false, reason: "invalid_body", message: "body is not a JSON object" };
  }
  if (typeof parsed.value.signedData !== "string") {
    return { ok: false, reason: "missing_signed_data", message: "body has no string signedData" };
  }
  return { ok: true, text, envelope: parsed.value as Envelope };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;
// MIME-style line breaks and stray spaces: the signature covers them, so they are ICR's own.
const WHITESPACE = /[ \t\r\n]/g;

/** Standard or URL-safe base64, padding optional, whitespace ignored; null for anything else. */
export function decodeBase64(encoded: string): Uint8Array | null {
  const compact = encoded.replace(WHITESPACE, "");
  if (!BASE64.test(compact) && !BASE64URL.test(compact)) return null;
  const unpadded = compact.replace(/=+$/, "");
  if (unpadded.length % 4 === 1) return null;
  if (compact.length !== unpadded.length && compact.length % 4 !== 0) return null;
  return Buffer.from(unpadded, compact.includes("-") || compact.includes("_") ? "base64url" : "base64");
}

/** Why authentic signed data is not an event the receiver can read; it is stored all the same. */
export const UNPARSED_REASONS = ["not_base64", "not_utf8", "not_json", "not_an_object", "no_event"] as const;
export type UnparsedReason = (typeof UNPARSED_REASONS)[number];

/**
 * What a verified signedData carries. `bytes` identify the event (a repeat of them is the same
 * event): the decoded signed data, or signedData's own text where it is not base64.
 */
export type SignedPayload =
  | {
      parsed: true;
      /** The decoded bytes as text: stored verbatim, never re-serialised. */
      text: string;
      bytes: Uint8Array;
      value: Record<string, unknown> & { event: string };
    }
  | {
      parsed: false;
      reason: UnparsedReason;
      /** The decoded bytes as text, when they are UTF-8. */
      text: string | null;
      bytes: Uint8Array;
      /** The decoded JSON value, when the text is JSON. */
      value: unknown;
    };

/** Decodes a verified signedData into the payload it carries, readable or not. */
export function decodeSignedData(signedData: string): SignedPayload {
  const bytes = decodeBase64(signedData);
  if (bytes === null) return { parsed: false, reason: "not_base64", text: null, bytes: Buffer.from(signedData, "utf8"), value: undefined };
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { parsed: false, reason: "not_utf8", text: null, bytes, value: undefined };
  }
  return parsePayload(text, bytes);
}

/** The payload in decoded signedData text: a JSON object with a string event, or why not. */
export function parsePayload(text: string, bytes: Uint8Array): SignedPayload {
  const parsed = parseJson(text);
  if (!parsed.ok) return { parsed: false, reason: "not_json", text, bytes, value: undefined };
  const value = parsed.value;
  if (!isObject(value)) return { parsed: false, reason: "not_an_object", text, bytes, value };
  if (typeof value.event !== "string") return { parsed: false, reason: "no_event", text, bytes, value };
  return { parsed: true, text, bytes, value: value as Record<string, unknown> & { event: string } };
}

/**
 * ICR's body for a payload: the payload's own JSON text with `,"signedData":"<base64 of it>"}` in
 * place of its closing brace (the text of JSON.stringify({ ...payload, signedData })). A body of
 * exactly this form is rebuilt from the payload, so the log need not keep it twice.
 */
export function canonicalBody(payloadText: string): string | null {
  if (!payloadText.endsWith("}")) return null;
  const signedData = Buffer.from(payloadText, "utf8").toString("base64");
  return `${payloadText.slice(0, -1)},"signedData":"${signedData}"}`;
}

/** Structural equality of JSON values, object key order ignored. Iterative: depth cannot overflow. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  const stack: [unknown, unknown][] = [[a, b]];
  while (stack.length > 0) {
    const [x, y] = stack.pop()!;
    if (x === y) continue;
    if (typeof x !== "object" || typeof y !== "object" || x === null || y === null) return false;
    if (Array.isArray(x) !== Array.isArray(y)) return false;
    const xKeys = Object.keys(x);
    if (xKeys.length !== Object.keys(y).length) return false;
    for (const key of xKeys) {
      if (!Object.hasOwn(y, key)) return false;
      stack.push([(x as Record<string, unknown>)[key], (y as Record<string, unknown>)[key]]);
    }
  }
  return true;
}

/**
 * True when an unsigned top-level copy disagrees with the signed payload: any envelope field
 * other than signedData that the payload lacks or holds a different value for (a payload that is
 * not an object holds none).
 */
export function envelopeMismatch(envelope: Envelope, payload: SignedPayload): boolean {
  const signed = isObject(payload.value) ? payload.value : {};
  for (const [key, value] of Object.entries(envelope)) {
    if (key === "signedData") continue;
    if (!Object.hasOwn(signed, key) || !jsonEqual(value, signed[key])) return true;
  }
  return false;
}
