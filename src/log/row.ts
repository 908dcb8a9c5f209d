// From a verified delivery and the request it came in to the row the log stores: the columns read
// from the signed payload, the digest that recognises a repeat, the body (NULL when the payload
// rebuilds it), and the headers without credentials.
import type { SignedPayload, UnparsedReason } from "../verify/delivery.ts";
import type { VerifiedDelivery } from "../verify/verify-delivery.ts";
import type { AcceptedDelivery } from "./append.ts";
import { storedHeaders } from "./headers.ts";

/** What the HTTP layer knows of the request a delivery came in. */
export interface RequestFacts {
  receivedAt: string;
  remoteAddress: string | null;
  headers: Headers;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The columns the log indexes, read from the signed payload (never from the envelope). */
interface EventFacts {
  /** Null for an unparsed payload. */
  event: string | null;
  unparsedReason: UnparsedReason | null;
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

/** An unparsed payload that is still an object (no string `event`) keeps its installation's keys. */
export function eventFacts(payload: SignedPayload): EventFacts {
  const object = isObject(payload.value) ? payload.value : {};
  const installation = isObject(object.installation) ? object.installation : {};
  const organization = isObject(installation.organization) ? installation.organization : {};
  const transaction = isObject(object.transaction) ? object.transaction : null;
  const amount = transaction?.amount;
  return {
    event: payload.parsed ? payload.value.event : null,
    unparsedReason: payload.parsed ? null : payload.reason,
    installationId: idOf(installation.id),
    organizationId: idOf(organization.id),
    appId: idOf(installation.appId),
    transactionId: transaction ? idOf(transaction.id) : null,
    transactionStatus: typeof transaction?.status === "string" ? transaction.status : null,
    transactionType: typeof transaction?.type === "string" ? transaction.type : null,
    transactionAmount: typeof amount === "number" && Number.isFinite(amount) ? amount : null,
  };
}

// The one-shot hash: no hasher object for the one update of each delivery.
const sha256 = (bytes: Uint8Array) => Bun.CryptoHasher.hash("sha256", bytes, "hex");

/**
 * The row of a verified delivery. `redact`: values never to be stored with its headers (the query
 * token). A body in ICR's canonical form is stored as NULL: the payload rebuilds it byte for byte.
 */
export function acceptedDelivery(verified: VerifiedDelivery, request: RequestFacts, redact: readonly string[]): AcceptedDelivery {
  const { payload } = verified;
  return {
    ...eventFacts(payload),
    receivedAt: request.receivedAt,
    remoteAddress: request.remoteAddress,
    headers: storedHeaders(request.headers, redact),
    rawBody: verified.canonical ? null : verified.rawBody,
    payload: payload.text,
    payloadSha256: sha256(payload.bytes),
    secretLabel: verified.secretLabel,
    envelopeMismatch: verified.envelopeMismatch,
  };
}
