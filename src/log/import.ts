// Appending deliveries another log took (`icr-receiver import`): through the writer's own
// batchAppender, on a connection of the importer's own, in IMMEDIATE transactions that wait for
// the write lock like any writer. What it adds to the writer's rules is one skip: a delivery the
// log already holds (same payload, same receive time, same body) is not stored a second time, so
// importing the same export twice changes nothing.
import { batchAppender, type AcceptedDelivery } from "./append.ts";
import type { EventLogDatabase } from "./database.ts";
import { copyDigestBacklog, DIGESTS_PER_BATCH, eventDigestsCopier } from "./event-digests.ts";
import { eventKeysCopier, KEYS_PER_STEP } from "./event-keys.ts";

/** What became of one delivery of a batch. */
export type ImportOutcome =
  /** A new event (`id`), this delivery its first. */
  | { kind: "event"; id: number }
  /** A delivery of the event `id` the log already had (or took earlier in this batch): a duplicate. */
  | { kind: "duplicate"; id: number }
  /** The log already holds this very delivery of event `id`: nothing stored. */
  | { kind: "present"; id: number };

/** The key of a delivery within a batch: its payload digest, receive time and body. */
const deliveryKey = (d: AcceptedDelivery) => `${d.payloadSha256}\u0000${d.receivedAt}\u0000${d.rawBody === null ? "\u0001" : `\u0002${d.rawBody}`}`;

/**
 * The importer over a writing connection. `append(batch)` stores a batch in one IMMEDIATE
 * transaction (all of it or, when it throws, none of it) and returns each delivery's outcome.
 */
export function deliveryImporter(database: EventLogDatabase) {
  const { sqlite } = database;
  const append = batchAppender(database);
  const { digests } = append;
  const copyKeys = eventKeysCopier(database);
  const digestsCopier = eventDigestsCopier(database);
  copyDigestBacklog(digestsCopier);
  // Through deliveries_event_id: an event has a handful of deliveries.
  const stored = sqlite.prepare<{ one: number }, [number, string, string | null]>(
    "SELECT 1 AS one FROM deliveries INDEXED BY deliveries_event_id WHERE event_id = ? AND received_at = ? AND raw_body IS ? LIMIT 1",
  );

  const transaction = sqlite.transaction((batch: AcceptedDelivery[]): ImportOutcome[] => {
    // Under the write lock: whatever a receiver appended meanwhile is found.
    digests.sync();
    const outcomes: (ImportOutcome | null)[] = new Array(batch.length).fill(null);
    const kept: AcceptedDelivery[] = [];
    const keptAt: number[] = [];
    const seen = new Map<string, number>();
    batch.forEach((delivery, i) => {
      const existing = digests.find(delivery.payloadSha256);
      if (existing !== null && stored.get(existing, delivery.receivedAt, delivery.rawBody) !== null) {
        outcomes[i] = { kind: "present", id: existing };
        return;
      }
      const key = deliveryKey(delivery);
      const earlier = seen.get(key);
      if (earlier !== undefined) {
        outcomes[i] = { kind: "present", id: -1 - earlier }; // resolved below, once the first one has its id
        return;
      }
      seen.set(key, kept.length);
      kept.push(delivery);
      keptAt.push(i);
    });
    // A savepoint inside this transaction: the writer's rules (ids, chain hashes, the duplicate rule).
    const appended = kept.length === 0 ? [] : append(kept);
    // The filter keys of these events (the receiver's writer copies them behind its commits), in
    // the same commit: one fsync per batch, not two. One step; copyKeys() finishes a backlog.
    if (appended.length > 0) copyKeys();
    appended.forEach(({ id, duplicate }, k) => (outcomes[keptAt[k]!] = { kind: duplicate ? "duplicate" : "event", id }));
    return outcomes.map((outcome) =>
      outcome!.kind === "present" && outcome!.id < 0 ? { kind: "present", id: appended[-1 - outcome!.id]!.id } : outcome!,
    );
  });

  return {
    append(batch: AcceptedDelivery[]): ImportOutcome[] {
      let outcomes: ImportOutcome[];
      try {
        outcomes = transaction.immediate(batch);
      } catch (error) {
        // Rolled back whole, perhaps after the appender's savepoint was released: the digests'
        // tail may hold rows that are gone.
        digests.forget();
        throw error;
      }
      // A batch of digests, in steps of their own (a receiver beside it commits between them).
      // The deliveries are stored whatever becomes of it: a step that fails is done later, by the
      // next batch, the last copyKeys() or the receiver.
      try {
        if (digestsCopier.behind() >= DIGESTS_PER_BATCH) while (digestsCopier.step());
      } catch {
        // Busy beside a receiver: see above.
      }
      return outcomes;
    },
    /**
     * Copies the filter keys and the digests of new events (as the receiver's writer does behind
     * its commits), a step per transaction, until none are left. Returns how many keys it copied.
     */
    copyKeys(): number {
      let total = 0;
      for (let copied = KEYS_PER_STEP; copied >= KEYS_PER_STEP; total += copied) copied = copyKeys();
      while (digestsCopier.step(true));
      return total;
    },
  };
}
