// HTTP → verify → append: the route ICR posts to. The checks run in the order the answers are
// specified (413, 400, 403, 400, 503, 202) and nothing but the durable append follows verification.
import { Elysia } from "elysia";
import type { Appended } from "../log/append.ts";
import type { GroupCommit } from "../log/group-commit.ts";
import { eventFacts } from "../verify/delivery.ts";
import { SIGNATURE_HEADER, type LabelledSecret } from "../verify/signature.ts";
import { verifyDelivery, type DeliveryRejection } from "../verify/verify-delivery.ts";
import { errorResponse, HttpError } from "./errors.ts";
import { RejectionLimiter } from "./rejection-limit.ts";

/** What happened to one delivery: for the answer, the logs and the metrics (never a body or secret). */
export type DeliveryOutcome =
  | { accepted: true; status: 202; appended: Appended; secretLabel: string; envelopeMismatch: boolean; event: string }
  | { accepted: false; status: number; reason: string; message: string; detail?: string };

export interface WebhookOptions {
  path: string;
  secrets: readonly LabelledSecret[];
  bodyLimit: number;
  /** Refusals per minute per address before they are answered 429 (0: no limit). */
  rejectionLimit: number;
  writer: GroupCommit;
  onOutcome?: (outcome: DeliveryOutcome, remoteAddress: string | null, seconds: number) => void;
}

const STATUS: Record<DeliveryRejection["reason"], number> = {
  invalid_body: 400,
  missing_signed_data: 400,
  missing_signature: 403,
  invalid_signature: 403,
  invalid_signed_data: 400,
};

class Refused extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly bodySize: number,
    readonly body: Uint8Array | null = null,
  ) {
    super(message);
  }
}

/** Reads at most `limit` bytes; a larger body is refused without being buffered whole. */
export async function readBody(request: Request, limit: number): Promise<Uint8Array> {
  const tooLarge = (size: number) => new Refused(413, "body_too_large", `body exceeds the limit of ${limit} bytes`, size);
  // The client went away, or was cut off by the idle timeout, mid-body: its refusal, not our error.
  const incomplete = (size: number) => () => {
    throw new Refused(400, "incomplete_body", "the connection closed before the body was complete", size);
  };
  const declared = request.headers.get("content-length");
  if (declared !== null) {
    if (Number(declared) > limit) throw tooLarge(Number(declared));
    return new Uint8Array(await request.arrayBuffer().catch(incomplete(Number(declared))));
  }
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read().catch(incomplete(size));
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(size);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** Verifies a delivery and appends it; resolves once it is committed. Throws Refused or 503. */
async function receive(
  request: Request,
  remoteAddress: string | null,
  { secrets, bodyLimit, writer }: WebhookOptions,
): Promise<DeliveryOutcome> {
  const receivedAt = new Date().toISOString();
  const encoding = request.headers.get("content-encoding");
  if (encoding !== null && encoding.toLowerCase() !== "identity") {
    throw new Refused(415, "unsupported_encoding", "compressed bodies are not accepted", Number(request.headers.get("content-length") ?? 0));
  }
  const body = await readBody(request, bodyLimit);
  const verified = verifyDelivery(body, request.headers.get(SIGNATURE_HEADER), secrets);
  if (!verified.ok) throw new Refused(STATUS[verified.reason], verified.reason, verified.message, body.byteLength, body);

  const { payload, secretLabel, envelopeMismatch } = verified;
  const facts = eventFacts(payload.value);
  let appended: Appended;
  try {
    appended = await writer.append({
      ...facts,
      receivedAt,
      remoteAddress,
      headers: JSON.stringify(Object.fromEntries(request.headers)),
      rawBody: verified.canonical ? null : verified.rawBody,
      payload: payload.text,
      payloadSha256: new Bun.CryptoHasher("sha256").update(payload.bytes).digest("hex"),
      secretLabel,
      envelopeMismatch,
    });
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return { accepted: false, status: 503, reason: "log_unavailable", message: "the event log cannot be written; nothing was stored", detail };
  }
  return { accepted: true, status: 202, appended, secretLabel, envelopeMismatch, event: facts.event };
}

export const webhook = (options: WebhookOptions) => {
  const limiter = new RejectionLimiter(options.rejectionLimit);
  const { writer, onOutcome = () => {} } = options;

  /** A refusal: recorded for the operator, unless this address has been refused too often. */
  function refuse(refused: Refused, remoteAddress: string | null): DeliveryOutcome {
    if (!limiter.allow(remoteAddress ?? "unknown")) {
      return { accepted: false, status: 429, reason: "rate_limited", message: "too many refused deliveries from this address" };
    }
    writer.recordRejection({
      receivedAt: new Date().toISOString(),
      remoteAddress,
      status: refused.status,
      reason: refused.reason,
      bodySize: refused.bodySize,
      bodySha256: refused.body && new Bun.CryptoHasher("sha256").update(refused.body).digest("hex"),
    });
    return { accepted: false, status: refused.status, reason: refused.reason, message: refused.message };
  }

  return new Elysia({ name: "webhook" })
    .post(
      options.path,
      async ({ request, server, set }) => {
        const started = performance.now();
        const remoteAddress = server?.requestIP(request)?.address ?? null;
        let outcome: DeliveryOutcome;
        // Refused before its body was read to the end (413, 415): the rest is not wanted.
        let bodyUnread = false;
        try {
          outcome = await receive(request, remoteAddress, options);
        } catch (error) {
          if (!(error instanceof Refused)) throw error;
          bodyUnread = error.body === null;
          outcome = refuse(error, remoteAddress);
        }
        onOutcome(outcome, remoteAddress, (performance.now() - started) / 1000);
        if (!outcome.accepted) {
          const headers: Record<string, string> = {};
          if (outcome.status === 429) headers["retry-after"] = String(limiter.retryAfter(remoteAddress ?? "unknown"));
          // Otherwise Bun keeps the connection and reads (and discards) whatever the client still
          // sends: a 20 MB body would be read in full after its 413.
          if (bodyUnread) headers.connection = "close";
          // Returned, not thrown: the outcome is already logged and counted.
          return errorResponse(outcome.status, outcome.reason, outcome.message, headers);
        }
        set.status = 202;
        return { id: outcome.appended.id, duplicate: outcome.appended.duplicate };
      },
      // The HMAC covers signedData exactly as sent, so the body is read raw, never pre-parsed.
      { parse: "none" },
    )
    .all(options.path, () => {
      throw new HttpError(405, "method_not_allowed", "only POST is accepted here", { allow: "POST" });
    });
};
