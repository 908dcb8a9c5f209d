// What the log stores per accepted delivery, and the one transaction that stores a batch of them.
import type { Database, SQLQueryBindings } from "bun:sqlite";
import { desc, eq, max, Param, Placeholder, sql } from "drizzle-orm";
import type { EventFacts } from "../verify/delivery.ts";
import { chainedValues, chainHash, GENESIS, type ChainedTable } from "./chain.ts";
import type { EventLogDatabase } from "./database.ts";
import { DigestIndex } from "./digest-index.ts";
import { deliveries, events, rejections } from "./schema.ts";

/** Everything the log keeps about one accepted delivery. */
export interface AcceptedDelivery extends EventFacts {
  receivedAt: string;
  remoteAddress: string | null;
  /** JSON object text of the request headers. */
  headers: string;
  /** Null when the body was the payload's canonical form (see the schema's raw_body). */
  rawBody: string | null;
  /** Null for an unparsed payload that is not UTF-8 text (see the schema). */
  payload: string | null;
  payloadSha256: string;
  secretLabel: string;
  envelopeMismatch: boolean;
}

/** What is kept of a refused delivery: never its body. */
export interface Rejection {
  receivedAt: string;
  remoteAddress: string | null;
  status: number;
  reason: string;
  bodySize: number;
  bodySha256: string | null;
}

export interface Appended {
  id: number;
  duplicate: boolean;
}

/** How many refused deliveries the ring keeps (about 2 MB). */
export const REJECTIONS_KEPT = 10_000;

/**
 * An insert built with Drizzle (names and columns come from the schema), executed as a plain
 * bun:sqlite statement: Drizzle's own prepared statements cost about 5 µs more per insert, and
 * every delivery makes two.
 */
function prepare<Row>(sqlite: Database, query: { toSQL(): { sql: string; params: unknown[] } }) {
  const { sql: text, params } = query.toSQL();
  // Inserts wrap each placeholder in a Param (with the column's encoder); a literal is bound as is.
  const binders = params.map((param) => {
    const inner = param instanceof Param ? param.value : param;
    return inner instanceof Placeholder
      ? (values: Record<string, unknown>) => values[inner.name] as SQLQueryBindings
      : () => inner as SQLQueryBindings;
  });
  const statement = sqlite.prepare<Row, SQLQueryBindings[]>(text);
  return (values: Record<string, unknown> = {}): Row | null => statement.get(...binders.map((bind) => bind(values)));
}

const camelCase = (column: string) => column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
const keyOf = new Map<string, string>();

/** The values a chain hash covers, in the chain's order, as the database will return them. */
function chained(table: ChainedTable, row: Record<string, unknown>): unknown[] {
  return chainedValues(table, (column) => {
    let key = keyOf.get(column);
    if (key === undefined) keyOf.set(column, (key = camelCase(column)));
    return row[key];
  });
}

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
  const insertEvent = prepare(
    sqlite,
    db
      .insert(events)
      .values({
        id: p("id"),
        receivedAt: p("receivedAt"),
        event: p("event"),
        installationId: p("installationId"),
        organizationId: p("organizationId"),
        appId: p("appId"),
        transactionId: p("transactionId"),
        transactionStatus: p("transactionStatus"),
        transactionType: p("transactionType"),
        transactionAmount: p("transactionAmount"),
        payload: p("payload"),
        payloadSha256: p("payloadSha256"),
        secretLabel: p("secretLabel"),
        envelopeMismatch: p("envelopeMismatch"),
        chainHash: p("chainHash"),
        unparsedReason: p("unparsedReason"),
      }),
  );
  const insertDelivery = prepare(
    sqlite,
    db.insert(deliveries).values({
      id: p("id"),
      eventId: p("eventId"),
      receivedAt: p("receivedAt"),
      remoteAddress: p("remoteAddress"),
      headers: p("headers"),
      rawBody: p("rawBody"),
      secretLabel: p("secretLabel"),
      envelopeMismatch: p("envelopeMismatch"),
      duplicate: p("duplicate"),
      chainHash: p("chainHash"),
    }),
  );
  const recordRejection = prepare(
    sqlite,
    db
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
      }),
  );

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
      recordRejection({ ...rejection, seq, slot: seq % REJECTIONS_KEPT });
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
