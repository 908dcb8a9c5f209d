// HTTP → verify → append: the route ICR posts to. The checks run in the order the answers are
// specified (413, 400, 403, 400, 503, 202) and nothing but the durable append follows verification.
import { Elysia } from "elysia";
import type { Appended } from "../log/append.ts";
import type { GroupCommit } from "../log/group-commit.ts";
import { eventFacts } from "../verify/delivery.ts";
import { SIGNATURE_HEADER, type LabelledSecret } from "../verify/signature.ts";
import { verifyDelivery, type DeliveryRejection } from "../verify/verify-delivery.ts";
import { HttpError } from "./errors.ts";

export interface WebhookOptions {
  path: string;
  secrets: readonly LabelledSecret[];
  bodyLimit: number;
  writer: GroupCommit;
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, "body_too_large", `body exceeds the limit of ${limit} bytes`);
}

/** Reads at most `limit` bytes; a larger body is refused without being buffered whole. */
export async function readBody(request: Request, limit: number): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null) {
    if (Number(declared) > limit) throw tooLarge(limit);
    return new Uint8Array(await request.arrayBuffer());
  }
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

const STATUS: Record<DeliveryRejection["reason"], number> = {
  invalid_body: 400,
  missing_signed_data: 400,
  missing_signature: 403,
  invalid_signature: 403,
  invalid_signed_data: 400,
};

/** Verifies a delivery and appends it; resolves once it is committed, or throws an HttpError. */
export async function receive(
  request: Request,
  remoteAddress: string | null,
  { secrets, bodyLimit, writer }: WebhookOptions,
): Promise<Appended> {
  const receivedAt = new Date().toISOString();
  const encoding = request.headers.get("content-encoding");
  if (encoding !== null && encoding.toLowerCase() !== "identity") {
    throw new HttpError(415, "unsupported_encoding", "compressed bodies are not accepted");
  }
  const body = await readBody(request, bodyLimit);
  const verified = verifyDelivery(body, request.headers.get(SIGNATURE_HEADER), secrets);
  if (!verified.ok) throw new HttpError(STATUS[verified.reason], verified.reason, verified.message);

  const { payload } = verified;
  try {
    return await writer.append({
      ...eventFacts(payload.value),
      receivedAt,
      remoteAddress,
      headers: JSON.stringify(Object.fromEntries(request.headers)),
      rawBody: verified.rawBody,
      payload: payload.text,
      payloadSha256: new Bun.CryptoHasher("sha256").update(payload.bytes).digest("hex"),
      secretLabel: verified.secretLabel,
      envelopeMismatch: verified.envelopeMismatch,
    });
  } catch {
    throw new HttpError(503, "log_unavailable", "the event log cannot be written; nothing was stored");
  }
}

export const webhook = (options: WebhookOptions) =>
  new Elysia({ name: "webhook" })
    .post(
      options.path,
      async ({ request, server, set }) => {
        const remoteAddress = server?.requestIP(request)?.address ?? null;
        const appended = await receive(request, remoteAddress, options);
        set.status = 202;
        return { id: appended.id, duplicate: appended.duplicate };
      },
      // The HMAC covers signedData exactly as sent, so the body is read raw, never pre-parsed.
      { parse: "none" },
    )
    .all(options.path, () => {
      throw new HttpError(405, "method_not_allowed", "only POST is accepted here", { allow: "POST" });
    });
