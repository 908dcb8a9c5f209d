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
  const parsed = parseJson(text);
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

/** Standard or URL-safe base64, padding optional; null for anything else. */
export function decodeBase64(encoded: string): Uint8Array | null {
  if (!BASE64.test(encoded) && !BASE64URL.test(encoded)) return null;
  const unpadded = encoded.replace(/=+$/, "");
  if (unpadded.length % 4 === 1) return null;
  if (encoded.length !== unpadded.length && encoded.length % 4 !== 0) return null;
  return Buffer.from(unpadded, encoded.includes("-") || encoded.includes("_") ? "base64url" : "base64");
}

export interface SignedPayload {
  /** The decoded bytes as text: stored verbatim, never re-serialised. */
  text: string;
  bytes: Uint8Array;
  value: Record<string, unknown> & { event: string };
}

/** Decodes a verified signedData into the payload it carries. */
export function decodeSignedData(
  signedData: string,
): Result<{ payload: SignedPayload }, "invalid_signed_data"> {
  const bytes = decodeBase64(signedData);
  if (bytes === null) {
    return { ok: false, reason: "invalid_signed_data", message: "signedData is not base64" };
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, reason: "invalid_signed_data", message: "signedData does not decode to UTF-8 text" };
  }
  return parsePayload(text, bytes);
}

/** The payload in decoded signedData text: a JSON object with a string event. */
export function parsePayload(
  text: string,
  bytes: Uint8Array,
): Result<{ payload: SignedPayload }, "invalid_signed_data"> {
  const parsed = parseJson(text);
  if (!parsed.ok || !isObject(parsed.value)) {
    return { ok: false, reason: "invalid_signed_data", message: "signedData does not decode to a JSON object" };
  }
  if (typeof parsed.value.event !== "string") {
    return { ok: false, reason: "invalid_signed_data", message: "signed payload has no string event" };
  }
  return { ok: true, payload: { text, bytes, value: parsed.value as SignedPayload["value"] } };
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
 * other than signedData that the payload lacks or holds a different value for.
 */
export function envelopeMismatch(envelope: Envelope, payload: Record<string, unknown>): boolean {
  for (const [key, value] of Object.entries(envelope)) {
    if (key === "signedData") continue;
    if (!Object.hasOwn(payload, key) || !jsonEqual(value, payload[key])) return true;
  }
  return false;
}

/** The columns the log indexes, read from the signed payload (never from the envelope). */
export interface EventFacts {
  event: string;
  installationId: string | null;
  organizationId: string | null;
  appId: string | null;
  transactionId: string | null;
  transactionStatus: string | null;
  transactionType: string | null;
  transactionAmount: number | null;
}

function idOf(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return null;
}

export function eventFacts(payload: SignedPayload["value"]): EventFacts {
  const installation = isObject(payload.installation) ? payload.installation : {};
  const organization = isObject(installation.organization) ? installation.organization : {};
  const transaction = isObject(payload.transaction) ? payload.transaction : null;
  const amount = transaction?.amount;
  return {
    event: payload.event,
    installationId: idOf(installation.id),
    organizationId: idOf(organization.id),
    appId: idOf(installation.appId),
    transactionId: transaction ? idOf(transaction.id) : null,
    transactionStatus: typeof transaction?.status === "string" ? transaction.status : null,
    transactionType: typeof transaction?.type === "string" ? transaction.type : null,
    transactionAmount: typeof amount === "number" && Number.isFinite(amount) ? amount : null,
  };
}
