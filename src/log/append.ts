// What the log stores per accepted delivery, and the one transaction that stores a batch of them.
import type { Database, SQLQueryBindings } from "bun:sqlite";
import { max, sql } from "drizzle-orm";
import { chainedValues, chainHash, GENESIS, type ChainedTable } from "./chain.ts";
import { TABLE_COLUMNS } from "./columns.ts";
import type { EventLogDatabase } from "./database.ts";
import { eventDigests } from "./event-digests.ts";
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

/**
 * An insert of every column of `table`, each bound from the row's field of the same name. A plain
 * bun:sqlite statement, not Drizzle's prepared insert: it runs twice for every delivery inside the
 * commit, and Drizzle maps every placeholder of it on every call; the columns still come from the
 * schema (TABLE_COLUMNS).
 */
function inserter(sqlite: Database, table: ChainedTable) {
  const columns = TABLE_COLUMNS[table];
  const names = columns.map((column) => `"${column.name}"`).join(", ");
  const values = columns.map((column) => `$${column.key}`).join(", ");
  const statement = sqlite.prepare<never, [SQLQueryBindings]>(`INSERT INTO "${table}" (${names}) VALUES (${values})`);
  return (row: Record<string, unknown>) => statement.run(row as SQLQueryBindings);
}

/** The last row of a chained table, read under the write lock: the id and hash the next row follows. */
function lastRow(sqlite: Database, table: ChainedTable) {
  return sqlite.prepare<ChainEnd, []>(`SELECT id, chain_hash AS chainHash FROM "${table}" ORDER BY id DESC LIMIT 1`);
}

interface ChainEnd {
  id: number;
  chainHash: string;
}

/** The values a chain hash covers, in the chain's order, as the database will return them. */
const chained = (table: ChainedTable, row: Record<string, unknown>) => chainedValues(table, (column) => row[column.key]);

/**
 * The insert of one batch as one transaction (bun:sqlite transactions are synchronous: it
 * commits, or rolls back whole, before returning). A delivery whose payload hash is already in
 * the log becomes a delivery of that event, flagged as a duplicate. Ids are assigned here, from
 * the last row read under the write lock, because each row's chain hash covers its id.
 *
 * Repeats are found through EventDigests: its tail is read by `warm` before the first batch and
 * brought up to date under the lock at the start of every batch (another receiver, during a
 * hand-over, may have appended since), and read again after a batch that rolled back.
 */
export function batchAppender(log: EventLogDatabase) {
  const { db, sqlite } = log;
  const p = (name: string) => sql.placeholder(name);
  // Once per batch, on the commit path too: plain statements, as the inserts are.
  const lastEvent = lastRow(sqlite, "events");
  const lastDelivery = lastRow(sqlite, "deliveries");
  const digests = eventDigests(log);
  // Bounded by how far event_digests is behind the log: part of opening the writer, not of a batch.
  const warm = () => digests.sync();
  const lastRejection = db.select({ seq: max(rejections.seq) }).from(rejections).prepare();
  const insertEvent = inserter(sqlite, "events");
  const insertDelivery = inserter(sqlite, "deliveries");
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
    let event: ChainEnd = lastEvent.get() ?? { id: 0, chainHash: GENESIS };
    let delivery: ChainEnd = lastDelivery.get() ?? { id: 0, chainHash: GENESIS };
    digests.sync(event.id);
    const results = batch.map((accepted): Appended => {
      const envelopeMismatch = accepted.envelopeMismatch ? 1 : 0;
      const existing = digests.find(accepted.payloadSha256);
      if (existing === null) {
        // One copy of the row per table: its chain hash is filled in once computed (a chain leaves chain_hash out).
        const eventRow = { ...accepted, id: event.id + 1, envelopeMismatch, chainHash: "" };
        eventRow.chainHash = chainHash(event.chainHash, chained("events", eventRow));
        insertEvent(eventRow);
        digests.add(accepted.payloadSha256, eventRow.id);
        event = eventRow;
      }
      const id = existing ?? event.id;
      const deliveryRow = { ...accepted, id: delivery.id + 1, eventId: id, envelopeMismatch, duplicate: existing === null ? 0 : 1, chainHash: "" };
      deliveryRow.chainHash = chainHash(delivery.chainHash, chained("deliveries", deliveryRow));
      insertDelivery(deliveryRow);
      delivery = deliveryRow;
      return { id, duplicate: existing !== null };
    });
    // Most batches carry no refusal: the ring's last sequence number is read only for those that do.
    let seq = refused.length === 0 ? 0 : (lastRejection.get()?.seq ?? 0);
    for (const rejection of refused) {
      seq++;
      recordRejection.run({ remoteAddress: null, bodySha256: null, ...rejection, seq, slot: seq % REJECTIONS_KEPT });
    }
    return results;
  });
  const append = (batch: AcceptedDelivery[], refused: Rejection[] = []) => {
    try {
      // IMMEDIATE: take the write lock up front, so a busy log fails the batch before any work.
      return transaction.immediate(batch, refused);
    } catch (error) {
      digests.forget();
      throw error;
    }
  };
  return Object.assign(append, { warm, digests });
}
