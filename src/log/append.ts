// What the log stores per accepted delivery, and the one transaction that stores a batch of them.
import { desc, eq, max, sql } from "drizzle-orm";
import { chainedValues, chainHash, GENESIS, type ChainedTable } from "./chain.ts";
import { CHAINED_TABLES, TABLE_COLUMNS } from "./columns.ts";
import type { Drizzle, EventLogDatabase } from "./database.ts";
import { DigestIndex } from "./digest-index.ts";
import { deliveries, events, rejections } from "./schema.ts";

/** A row's values as the appender is given them: every column but those it assigns itself. */
type Given<Row, Assigned extends keyof Row> = { [K in Exclude<keyof Row, Assigned>]-?: Exclude<Row[K], undefined> };

/** Everything the log keeps about one accepted delivery: its event's columns and its own. */
export type AcceptedDelivery = Given<typeof events.$inferInsert, "id" | "chainHash"> &
  Given<typeof deliveries.$inferInsert, "id" | "eventId" | "duplicate" | "chainHash">;

/** What is kept of a refused delivery: never its body. */
export type Rejection = Omit<typeof rejections.$inferInsert, "slot" | "seq">;

export interface Appended {
  id: number;
  duplicate: boolean;
}

/** How many refused deliveries the ring keeps (about 2 MB). */
export const REJECTIONS_KEPT = 10_000;

/** An insert of every column of `table`, each bound from the row's field of the same name. */
function inserter(db: Drizzle, table: ChainedTable) {
  const values = Object.fromEntries(TABLE_COLUMNS[table].map((column) => [column.key, sql.placeholder(column.key)]));
  const statement = db.insert(CHAINED_TABLES[table]).values(values as never).prepare();
  return (row: Record<string, unknown>) => statement.run(row);
}

/** The values a chain hash covers, in the chain's order, as the database will return them. */
const chained = (table: ChainedTable, row: Record<string, unknown>) => chainedValues(table, (column) => row[column.key]);

/**
 * The insert of one batch as one transaction (bun:sqlite transactions are synchronous: it
 * commits, or rolls back whole, before returning). A delivery whose payload hash is already in
 * the log becomes a delivery of that event, flagged as a duplicate. Ids are assigned here, from
 * the last row read under the write lock, because each row's chain hash covers its id.
 *
 * Repeats are found in a DigestIndex kept in memory: built from the log by `warm` (or before the
 * first batch), outside the write lock; brought up to date under the lock at the start of every
 * batch (another receiver, during a hand-over, may have appended since); rebuilt after a batch
 * that rolled back.
 */
export function batchAppender({ db, sqlite }: EventLogDatabase) {
  const p = (name: string) => sql.placeholder(name);
  // Once per batch (or per repeat): Drizzle's own prepared queries, which map column names.
  const lastEvent = db
    .select({ id: events.id, chainHash: events.chainHash })
    .from(events)
    .orderBy(desc(events.id))
    .limit(1)
    .prepare();
  const lastDelivery = db
    .select({ id: deliveries.id, chainHash: deliveries.chainHash })
    .from(deliveries)
    .orderBy(desc(deliveries.id))
    .limit(1)
    .prepare();
  const digestOfEvent = db
    .select({ payloadSha256: events.payloadSha256 })
    .from(events)
    .where(eq(events.id, p("id")))
    .prepare();
  const digestOf = (id: number) => digestOfEvent.get({ id })?.payloadSha256 ?? null;
  // Raw SQL for the INDEXED BY: the planner would otherwise walk the table, payloads and all.
  const digestsAfter = sqlite.prepare<{ id: number; payload_sha256: string }, [number]>(
    "SELECT id, payload_sha256 FROM events INDEXED BY events_id_payload_sha256 WHERE id > ? ORDER BY id",
  );
  let digests: DigestIndex | null = null;
  const catchUp = (index: DigestIndex) => {
    for (const row of digestsAfter.iterate(index.lastId)) index.add(row.payload_sha256, row.id);
    return index;
  };
  // 0.75-0.85 s for a million events (bench): off the start-up path, so the port is open meanwhile.
  const warm = () => (digests ??= catchUp(new DigestIndex()));
  const lastRejection = db.select({ seq: max(rejections.seq) }).from(rejections).prepare();
  const insertEvent = inserter(db, "events");
  const insertDelivery = inserter(db, "deliveries");
  // Rare (refusals ride along with a batch): Drizzle's own prepared statement.
  const recordRejection = db
    .insert(rejections)
    .values({
      slot: p("slot"),
      seq: p("seq"),
      receivedAt: p("receivedAt"),
      remoteAddress: p("remoteAddress"),
      status: p("status"),
      reason: p("reason"),
      bodySize: p("bodySize"),
      bodySha256: p("bodySha256"),
    })
    .onConflictDoUpdate({
      target: rejections.slot,
      set: {
        seq: sql`excluded.seq`,
        receivedAt: sql`excluded.received_at`,
        remoteAddress: sql`excluded.remote_address`,
        status: sql`excluded.status`,
        reason: sql`excluded.reason`,
        bodySize: sql`excluded.body_size`,
        bodySha256: sql`excluded.body_sha256`,
      },
    })
    .prepare();

  const transaction = sqlite.transaction((batch: AcceptedDelivery[], refused: Rejection[]): Appended[] => {
    let event = lastEvent.get() ?? { id: 0, chainHash: GENESIS };
    let delivery = lastDelivery.get() ?? { id: 0, chainHash: GENESIS };
    const index = warm();
    if (event.id !== index.lastId) catchUp(index);
    const results = batch.map((accepted): Appended => {
      const envelopeMismatch = accepted.envelopeMismatch ? 1 : 0;
      const existing = index.find(accepted.payloadSha256, digestOf);
      if (existing === null) {
        const eventRow = { ...accepted, id: event.id + 1, envelopeMismatch };
        const eventChain = chainHash(event.chainHash, chained("events", eventRow));
        insertEvent({ ...eventRow, chainHash: eventChain });
        index.add(accepted.payloadSha256, eventRow.id);
        event = { id: eventRow.id, chainHash: eventChain };
      }
      const id = existing ?? event.id;
      const deliveryRow = { ...accepted, id: delivery.id + 1, eventId: id, envelopeMismatch, duplicate: existing === null ? 0 : 1 };
      const deliveryChain = chainHash(delivery.chainHash, chained("deliveries", deliveryRow));
      insertDelivery({ ...deliveryRow, chainHash: deliveryChain });
      delivery = { id: deliveryRow.id, chainHash: deliveryChain };
      return { id, duplicate: existing !== null };
    });
    let seq = lastRejection.get()?.seq ?? 0;
    for (const rejection of refused) {
      seq++;
      recordRejection.run({ remoteAddress: null, bodySha256: null, ...rejection, seq, slot: seq % REJECTIONS_KEPT });
    }
    return results;
  });
  const append = (batch: AcceptedDelivery[], refused: Rejection[] = []) => {
    warm();
    try {
      // IMMEDIATE: take the write lock up front, so a busy log fails the batch before any work.
      return transaction.immediate(batch, refused);
    } catch (error) {
      // The index may hold digests of rows that were rolled back: start again from the log.
      digests = null;
      throw error;
    }
  };
  return Object.assign(append, { warm });
}
