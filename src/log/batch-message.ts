// How a batch travels to the writer thread: one flat array of field values, not an array of
// objects. postMessage clones each object property by property; a flat array of strings and
// numbers costs it far less (measured: see bench/README.md).
import type { AcceptedDelivery } from "./append.ts";
import { DELIVERY_FIELDS } from "./columns.ts";

export type PackedBatch = AcceptedDelivery[keyof AcceptedDelivery][];

export function packBatch(batch: readonly AcceptedDelivery[]): PackedBatch {
  const packed: PackedBatch = new Array(batch.length * DELIVERY_FIELDS.length);
  let i = 0;
  for (const delivery of batch) for (const field of DELIVERY_FIELDS) packed[i++] = delivery[field as keyof AcceptedDelivery];
  return packed;
}

export function unpackBatch(packed: PackedBatch): AcceptedDelivery[] {
  const batch: AcceptedDelivery[] = [];
  for (let i = 0; i < packed.length; i += DELIVERY_FIELDS.length) {
    const delivery: Record<string, unknown> = {};
    DELIVERY_FIELDS.forEach((field, k) => (delivery[field] = packed[i + k]));
    batch.push(delivery as unknown as AcceptedDelivery);
  }
  return batch;
}
