// Reads a webhook request's body with a size limit, undoing a `Content-Encoding` of gzip, deflate
// or br. Bun does not decompress request bodies, so this module does.
//
// Why node:zlib's one-shot functions with `maxOutputLength` rather than a streaming decoder: the
// compressed body is already held whole and bounded by `limit` (the signature check needs the
// exact bytes anyway), so one synchronous call is all the work there is. `maxOutputLength` makes
// zlib itself stop — and throw ERR_BUFFER_TOO_LARGE — as soon as the output would pass the limit,
// so a bomb never costs more than about `limit` bytes of output; Bun 1.4.4 honours it for all
// four decoders. A stream would add backpressure, error routing and cancellation paths for no
// gain in what is bounded. The price is that the event loop is blocked while at most `limit`
// bytes are produced: with limits of a few MiB that is a millisecond or so.
import { kMaxLength } from "node:buffer";
import zlib from "node:zlib";

/** A `Content-Encoding` this module undoes (`x-gzip` is reported as `gzip`). */
type ContentCoding = "gzip" | "deflate" | "br";

/**
 * The body, or why it was refused. A refusal is the client's fault, never an exception.
 * - `bodySize`: the bytes known when refused — the declared Content-Length, or the (compressed)
 *   bytes read so far.
 * - `bodyRead`: whether the body was read to its end. When false (413 on a declared length, 413
 *   on a chunked body cut off, 415, a connection that closed mid-body) the rest of the body may
 *   still be on the wire: answer with `connection: close`.
 */
export type RequestBody =
  | { ok: true; bytes: Uint8Array; encoding: ContentCoding | null }
  | {
      ok: false;
      status: 400 | 413 | 415;
      reason: "body_too_large" | "incomplete_body" | "unsupported_encoding" | "invalid_encoding";
      message: string;
      bodySize: number;
      bodyRead: boolean;
    };

type Refusal = Extract<RequestBody, { ok: false }>;

const CODINGS: Readonly<Record<string, ContentCoding>> = { gzip: "gzip", "x-gzip": "gzip", deflate: "deflate", br: "br" };

/**
 * Reads `request`'s body, refusing it once more than `limit` bytes arrive or, when it is
 * compressed, once the decompressed bytes would pass `limit` (both limits apply).
 *
 * - No `Content-Encoding`, or `identity` (case-insensitive, trimmed): the bytes as sent.
 * - `gzip` / `x-gzip`, `deflate` (zlib format, or raw deflate when the first two bytes are not a
 *   zlib header), `br`: the decompressed bytes. Corrupt or truncated data → 400 invalid_encoding.
 * - Any other coding, or more than one (`gzip, br`; `identity` entries are ignored) → 415
 *   unsupported_encoding, without reading the body.
 * - A declared Content-Length over `limit` → 413 without reading; a body without one is read
 *   incrementally and cancelled once it passes `limit` → 413.
 * - The connection closes mid-body → 400 incomplete_body.
 *
 * Throws only on a bug, such as a body that was already consumed.
 */
export async function readRequestBody(request: Request, limit: number): Promise<RequestBody> {
  if (request.bodyUsed) throw new TypeError("readRequestBody: the request body was already read");
  const declared = request.headers.get("content-length");
  const coding = contentCoding(request.headers.get("content-encoding"));
  if (coding === undefined) {
    return refusal(415, "unsupported_encoding", "this content-encoding is not supported: send gzip, deflate, br or none, at most one", Number(declared ?? 0), false);
  }
  const raw = await readRaw(request, declared, limit);
  if (!(raw instanceof Uint8Array)) return raw;
  if (coding === null) return { ok: true, bytes: raw, encoding: null };
  const decoded = decode(raw, coding, limit);
  if (decoded === "too_large") {
    return refusal(413, "body_too_large", `decompressed body exceeds the limit of ${limit} bytes`, raw.byteLength, true);
  }
  if (decoded === "invalid") {
    return refusal(400, "invalid_encoding", `the body is not valid ${coding} data`, raw.byteLength, true);
  }
  return { ok: true, bytes: decoded, encoding: coding };
}

/** null: identity; undefined: not supported (unknown, or several codings stacked). */
function contentCoding(header: string | null): ContentCoding | null | undefined {
  if (header === null) return null;
  const codings = header
    .split(",")
    .map((token) => token.trim().toLowerCase())
    .filter((token) => token !== "" && token !== "identity");
  if (codings.length === 0) return null;
  if (codings.length > 1) return undefined;
  return CODINGS[codings[0]!];
}

/** The bytes as sent, at most `limit` of them (the behaviour of webhook.ts's `readBody`). */
async function readRaw(request: Request, declared: string | null, limit: number): Promise<Uint8Array | Refusal> {
  const tooLarge = (size: number, bodyRead: boolean) =>
    refusal(413, "body_too_large", `body exceeds the limit of ${limit} bytes`, size, bodyRead);
  // The client went away, or was cut off by the idle timeout, mid-body: its refusal, not our error.
  const incomplete = (size: number) =>
    refusal(400, "incomplete_body", "the connection closed before the body was complete", size, false);

  if (declared !== null) {
    if (Number(declared) > limit) return tooLarge(Number(declared), false);
    const buffer = await request.arrayBuffer().catch(() => null);
    if (buffer === null) return incomplete(Number(declared));
    // Only a Request built in-process can carry more than it declares; over a socket Bun frames it.
    if (buffer.byteLength > limit) return tooLarge(buffer.byteLength, true);
    return new Uint8Array(buffer);
  }
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const chunk = await reader.read().catch(() => null);
    if (chunk === null) return incomplete(size);
    if (chunk.done) break;
    size += chunk.value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return tooLarge(size, false);
    }
    chunks.push(chunk.value);
  }
  return Buffer.concat(chunks);
}

/** Decompresses `bytes`; zlib stops as soon as the output would pass `limit`. */
function decode(bytes: Uint8Array, coding: ContentCoding, limit: number): Uint8Array | "too_large" | "invalid" {
  // zlib wants 1 ≤ maxOutputLength ≤ kMaxLength; a limit of 0 is enforced by the check below.
  const options = { maxOutputLength: Math.min(Math.max(limit, 1), kMaxLength) };
  try {
    const output =
      coding === "gzip"
        ? zlib.gunzipSync(bytes, options)
        : coding === "br"
          ? zlib.brotliDecompressSync(bytes, options)
          : isZlibHeader(bytes)
            ? zlib.inflateSync(bytes, options)
            : // RFC 9110's deflate is the zlib format, but many clients send raw deflate.
              zlib.inflateRawSync(bytes, options);
    return output.byteLength > limit ? "too_large" : output;
  } catch (error) {
    // zlib's other errors (Z_DATA_ERROR, Z_BUF_ERROR on truncation, brotli's codes) are all bad data.
    return (error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE" ? "too_large" : "invalid";
  }
}

/** RFC 1950's header: method 8 (deflate), window ≤ 32 KiB, and a check so CMF·256 + FLG ≡ 0 (mod 31). */
function isZlibHeader(bytes: Uint8Array): boolean {
  const cmf = bytes[0];
  const flg = bytes[1];
  return cmf !== undefined && flg !== undefined && (cmf & 0x0f) === 8 && cmf >> 4 <= 7 && ((cmf << 8) | flg) % 31 === 0;
}

function refusal(status: Refusal["status"], reason: Refusal["reason"], message: string, bodySize: number, bodyRead: boolean): Refusal {
  return { ok: false, status, reason, message, bodySize, bodyRead };
}
