// How a batch travels to the writer thread: one flat array of field values, not an array of
// objects. postMessage clones each object property by property; a flat array of strings and
// numbers costs it far less (measured: see the README's performance notes).
import type { AcceptedDelivery } from "./append.ts";

const FIELDS = [
  "event", "unparsedReason", "installationId", "organizationId", "appId", "transactionId", "transactionStatus",
  "transactionType", "transactionAmount", "receivedAt", "remoteAddress", "headers", "rawBody",
  "payload", "payloadSha256", "secretLabel", "envelopeMismatch",
] as const satisfies readonly (keyof AcceptedDelivery)[];

// A delivery has exactly these fields: adding one to AcceptedDelivery without adding it here
// fails to compile.
type Missing = Exclude<keyof AcceptedDelivery, (typeof FIELDS)[number]>;
const complete: Missing extends never ? true : Missing = true;
void complete;

export type PackedBatch = AcceptedDelivery[keyof AcceptedDelivery][];

export function packBatch(batch: readonly AcceptedDelivery[]): PackedBatch {
  const packed: PackedBatch = new Array(batch.length * FIELDS.length);
  let i = 0;
  for (const delivery of batch) for (const field of FIELDS) packed[i++] = delivery[field];
  return packed;
}

export function unpackBatch(packed: PackedBatch): AcceptedDelivery[] {
  const batch: AcceptedDelivery[] = [];
  for (let i = 0; i < packed.length; i += FIELDS.length) {
    const delivery: Record<string, unknown> = {};
    FIELDS.forEach((field, k) => (delivery[field] = packed[i + k]));
    batch.push(delivery as unknown as AcceptedDelivery);
  }
  return batch;
}
