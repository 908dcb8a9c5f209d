// HTTP → verify → append: the route ICR posts to. The checks run in the order the answers are
// specified (415, 413, 400, 403, 503, 202) and nothing but the durable append follows
// verification. What the signature vouches for is never refused: signed data that is not a
// readable event is stored as an unparsed event.
import { Elysia } from "elysia";
import { LogWriteError, type Appended, type EventLog } from "../log/event-log.ts";
import type { UnparsedReason } from "../verify/delivery.ts";
import { SIGNATURE_HEADER, type LabelledSecret } from "../verify/signature.ts";
import { verifyDelivery, type DeliveryRejection } from "../verify/verify-delivery.ts";
import { limitedAddress } from "./client-address.ts";
import { errorResponse, HttpError } from "./errors.ts";
import type { RejectionLimiter } from "./rejection-limit.ts";
import { readRequestBody } from "./request-body.ts";

/** What happened to one delivery: for the answer, the logs and the metrics (never a body or secret). */
export type DeliveryOutcome =
  | {
      accepted: true;
      status: 202;
      appended: Appended;
      secretLabel: string;
      envelopeMismatch: boolean;
      event: string | null;
      unparsedReason: UnparsedReason | null;
    }
  | { accepted: false; status: number; reason: string; message: string; detail?: string; retryAfterSeconds?: number };

interface WebhookOptions {
  path: string;
  secrets: readonly LabelledSecret[];
  bodyLimit: number;
  /** Counts refusals per address, shared with the console's wrong logins; past it, 429. */
  limiter: RejectionLimiter;
  log: EventLog;
  onOutcome?: (outcome: DeliveryOutcome, remoteAddress: string | null, seconds: number) => void;
}

const STATUS: Record<DeliveryRejection["reason"], number> = {
  invalid_body: 400,
  missing_signed_data: 400,
  missing_signature: 403,
  invalid_signature: 403,
};

/** A delivery refused before it reached the log: recorded in the rejection ring (never its body). */
interface Refusal {
  status: number;
  reason: string;
  message: string;
  bodySize: number;
  /** The body when it was read whole (for its hash); null when refused before that. */
  body: Uint8Array | null;
  /** False when refused before the body was read to its end (413, 415): the rest is not wanted. */
  bodyRead: boolean;
}

const sha256 = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

/**
 * Verifies a delivery and appends it; resolves once it is committed, or with why it was not. 503
 * only when the log says the commit failed; anything else thrown is a bug (a 500).
 */
async function receive(
  request: Request,
  remoteAddress: string | null,
  { secrets, bodyLimit, log }: WebhookOptions,
): Promise<DeliveryOutcome | Refusal> {
  const receivedAt = new Date().toISOString();
  const read = await readRequestBody(request, bodyLimit);
  if (!read.ok) return { status: read.status, reason: read.reason, message: read.message, bodySize: read.bodySize, body: null, bodyRead: read.bodyRead };
  const body = read.bytes;
  const verified = verifyDelivery(body, request.headers.get(SIGNATURE_HEADER), secrets);
  if (!verified.ok) {
    return { status: STATUS[verified.reason], reason: verified.reason, message: verified.message, bodySize: body.byteLength, body, bodyRead: true };
  }

  let appended: Appended;
  try {
    appended = await log.append(verified, { receivedAt, remoteAddress, headers: request.headers });
  } catch (error) {
    if (!(error instanceof LogWriteError)) throw error;
    return { accepted: false, status: 503, reason: "log_unavailable", message: "the event log cannot be written; nothing was stored", detail: error.message };
  }
  const { payload, secretLabel, envelopeMismatch } = verified;
  return {
    accepted: true,
    status: 202,
    appended,
    secretLabel,
    envelopeMismatch,
    event: payload.parsed ? payload.value.event : null,
    unparsedReason: payload.parsed ? null : payload.reason,
  };
}

export const webhook = (options: WebhookOptions) => {
  const { log, limiter, onOutcome = () => {} } = options;

  /**
   * A refusal: recorded for the operator (with the socket's address), unless the client it is
   * counted against has been refused too often. Whom it counts against is worked out here, for
   * refusals only.
   */
  function refuse(refused: Refusal, request: Request, remoteAddress: string | null): DeliveryOutcome {
    const client = limitedAddress(request, remoteAddress);
    if (!limiter.allow(client)) {
      const retryAfterSeconds = limiter.retryAfter(client);
      return { accepted: false, status: 429, reason: "rate_limited", message: "too many refused deliveries from this address", retryAfterSeconds };
    }
    log.recordRejection({
      receivedAt: new Date().toISOString(),
      remoteAddress,
      status: refused.status,
      reason: refused.reason,
      bodySize: refused.bodySize,
      bodySha256: refused.body && sha256(refused.body),
    });
    return { accepted: false, status: refused.status, reason: refused.reason, message: refused.message };
  }

  return new Elysia({ name: "webhook" })
    .post(
      options.path,
      async ({ request, server, set }) => {
        const started = performance.now();
        const remoteAddress = server?.requestIP(request)?.address ?? null;
        const received = await receive(request, remoteAddress, options);
        const refused = !("accepted" in received);
        const outcome = refused ? refuse(received, request, remoteAddress) : received;
        const bodyUnread = refused && !received.bodyRead;
        onOutcome(outcome, remoteAddress, (performance.now() - started) / 1000);
        if (!outcome.accepted) {
          const headers: Record<string, string> = {};
          if (outcome.retryAfterSeconds !== undefined) headers["retry-after"] = String(outcome.retryAfterSeconds);
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
