// The event log, as an operator sees it in `sqlite3`: snake_case names, JSON kept as TEXT so
// json_extract works, timestamps as ISO-8601 UTC text (lexical order is time order).
// Both tables are append-only: the triggers that enforce it live in a custom migration in drizzle/.
import { sql } from "drizzle-orm";
import { blob, check, index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/**
 * One row per distinct signed payload: what ICR told us happened. An authentic delivery whose
 * signed data is not a JSON object with a string `event` is an event all the same, an unparsed
 * one: `event` NULL and `unparsed_reason` saying why (see UNPARSED_REASONS in src/verify/delivery.ts).
 */
export const events = sqliteTable(
  "events",
  {
    id: integer("id").primaryKey(),
    receivedAt: text("received_at").notNull(),
    /** The signed payload's `event`; NULL for an unparsed event. */
    event: text("event"),
    installationId: text("installation_id"),
    organizationId: text("organization_id"),
    appId: text("app_id"),
    transactionId: text("transaction_id"),
    transactionStatus: text("transaction_status"),
    transactionType: text("transaction_type"),
    transactionAmount: real("transaction_amount"),
    /**
     * The decoded signedData, byte for byte: the only part of a delivery that is signed. NULL when
     * it is not base64 or not UTF-8 text (the delivery's raw_body still holds it as received).
     */
    payload: text("payload"),
    /**
     * Hex SHA-256 of the decoded payload bytes (of signedData itself where it is not base64): a
     * repeat of the same payload is the same event.
     * Distinct by construction (the writer looks each one up before it inserts; `check` verifies),
     * not by a unique index: a key that random would dirty one index page per commit. Its first
     * 64 bits are indexed in event_digests instead, behind the log.
     */
    payloadSha256: text("payload_sha256").notNull(),
    secretLabel: text("secret_label").notNull(),
    envelopeMismatch: integer("envelope_mismatch", { mode: "boolean" }).notNull(),
    /** SHA-256 over the previous event's chain_hash and this row: an edited row breaks the chain. */
    chainHash: text("chain_hash").notNull(),
    /** Why the signed data is not an event the receiver can read (`not_json`, …); NULL when parsed. */
    unparsedReason: text("unparsed_reason"),
  },
  // The only index the commit that acknowledges a delivery writes besides the rowid: every other
  // way into the log is written behind it (event_keys, event_digests).
  (table) => [
    // Only unparsed events are in it: written rarely, and `GET /events?parsed=false` pages by it.
    index("events_unparsed").on(table.id).where(sql`${table.event} IS NULL`),
  ],
);

/**
 * The keys events are filtered by, one row per event, with the indexes those filters use. Derived
 * from `events` and written behind it in bulk (src/log/event-keys.ts), never in the transaction
 * that acknowledges a delivery: an index on a key with a handful of values is appended at one
 * page per value, and a batch of 16 deliveries spread over 28 (organization, event) pairs
 * dirtied 16 of its pages, a third of the bytes each commit wrote. Queries look past its last
 * row into `events` itself, so they never miss the newest events.
 */
export const eventKeys = sqliteTable(
  "event_keys",
  {
    eventId: integer("event_id")
      .primaryKey()
      .references(() => events.id),
    /** NULL for an unparsed event, as in `events`. */
    event: text("event"),
    organizationId: text("organization_id"),
    installationId: text("installation_id"),
    /**
     * No longer written or read by this release: the first 8 bytes of the event's payload_sha256,
     * by which a 0.5.0 receiver finds repeats, kept with its index so that one still serving
     * during the hand-over to this release keeps working (it fills in what this one leaves NULL).
     */
    digest: blob("digest", { mode: "buffer" }),
    /**
     * The event's received_at: time filters read it here. Nullable only because a receiver older
     * than 0.8.0 copies keys without it during a hand-over; a trigger (drizzle/0011) fills it in.
     */
    receivedAt: text("received_at"),
  },
  (table) => [
    index("event_keys_digest").on(table.digest),
    index("event_keys_received_at").on(table.receivedAt),
    index("event_keys_organization_event").on(table.organizationId, table.event),
    // An organization alone: in (organization, event) its events are in id order only per event.
    index("event_keys_organization").on(table.organizationId),
    index("event_keys_installation").on(table.installationId),
    index("event_keys_event").on(table.event),
  ],
);

/**
 * The first 8 bytes of every event's payload_sha256, indexed: how the writer finds a repeat
 * anywhere in the log (src/log/event-digests.ts), each match confirmed against the event's full
 * digest. Written behind the log in batches sorted by digest, so that the random index is written
 * a page at a time for all of a batch's digests on it rather than a page for each digest. Derived
 * from `events`; `check` proves it against them.
 */
export const eventDigests = sqliteTable(
  "event_digests",
  {
    digest: blob("digest", { mode: "buffer" }).notNull(),
    eventId: integer("event_id").notNull(),
  },
  // Unique, so that copying a batch again (after a crash halfway through it) adds nothing.
  (table) => [uniqueIndex("event_digests_digest_event").on(table.digest, table.eventId)],
);

/**
 * One row: every event up to `through` has its row in event_digests (a batch is copied in steps).
 * Any delete from event_digests sets `through` back to 0 and counts a `generation` (a trigger in
 * drizzle/0010): a batch begun before it is not recorded, so nothing deleted is counted as copied.
 */
export const eventDigestsProgress = sqliteTable(
  "event_digests_progress",
  {
    id: integer("id").primaryKey(),
    through: integer("through").notNull(),
    generation: integer("generation").notNull().default(0),
  },
  (table) => [check("event_digests_progress_one_row", sql`${table.id} = 1`)],
);

/** One row per accepted HTTP delivery, first or repeat, exactly as it arrived. */
export const deliveries = sqliteTable(
  "deliveries",
  {
    id: integer("id").primaryKey(),
    eventId: integer("event_id")
      .notNull()
      .references(() => events.id),
    receivedAt: text("received_at").notNull(),
    remoteAddress: text("remote_address"),
    /** Request headers as a JSON object (lower-case names). */
    headers: text("headers").notNull(),
    /**
     * The body exactly as received, or NULL when it was ICR's canonical form of the event's payload
     * (`canonicalBody` in src/verify/delivery.ts: the payload text with `,"signedData":"<base64 of
     * the payload>"}` in place of its closing brace), which rebuilds it byte for byte.
     */
    rawBody: text("raw_body"),
    secretLabel: text("secret_label").notNull(),
    envelopeMismatch: integer("envelope_mismatch", { mode: "boolean" }).notNull(),
    /** True when the event already existed: this delivery was a repeat. */
    duplicate: integer("duplicate", { mode: "boolean" }).notNull(),
    /** SHA-256 over the previous delivery's chain_hash and this row. */
    chainHash: text("chain_hash").notNull(),
  },
  (table) => [index("deliveries_event_id").on(table.eventId)],
);

/**
 * Deliveries that were refused, for the operator: never the body, only its size and hash. A ring
 * of fixed size (the slot is the sequence number modulo the capacity), so a flood of forgeries
 * cannot fill the disk. Not part of the append-only log.
 */
export const rejections = sqliteTable(
  "rejections",
  {
    slot: integer("slot").primaryKey(),
    seq: integer("seq").notNull(),
    receivedAt: text("received_at").notNull(),
    remoteAddress: text("remote_address"),
    status: integer("status").notNull(),
    reason: text("reason").notNull(),
    bodySize: integer("body_size").notNull(),
    bodySha256: text("body_sha256"),
  },
  (table) => [index("rejections_seq").on(table.seq)],
);

// Forwarding (src/forward/): how far each destination has got through the log. Not part of the
// append-only log: rows change as events are delivered. Times are Unix milliseconds.

/** One row per destination that has ever been configured. */
export const forwardDestinations = sqliteTable("forward_destinations", {
  name: text("name").primaryKey(),
  /** Every event up to this id has been handed to its installation's lane (or did not match). */
  discoveredThrough: integer("discovered_through").notNull(),
  /** Events delivered (a 2xx), replays included. */
  delivered: integer("delivered").notNull(),
  /**
   * The receiver forwarding to it now, and until when: two receivers on one log (an upgrade's
   * hand-over) must not both send, or both write the lanes.
   */
  owner: text("owner"),
  leaseUntil: integer("lease_until"),
});

/**
 * The events of one installation (`installation` "" for those without one) are delivered in log
 * order: a lane holds the last one that is done (delivered or dead) and the state of the next.
 * Only lanes with events left to send have a row.
 */
export const forwardLanes = sqliteTable(
  "forward_lanes",
  {
    destination: text("destination").notNull(),
    installation: text("installation").notNull(),
    /** The last event of this installation that is done. */
    through: integer("through").notNull(),
    /** Failed attempts at the next event, and when it is tried again. */
    attempts: integer("attempts").notNull(),
    nextAttemptAt: integer("next_attempt_at").notNull(),
    lastError: text("last_error"),
  },
  (table) => [primaryKey({ columns: [table.destination, table.installation] })],
);

/** Events that never got through within the maximum age, until they are replayed. */
export const forwardDeadLetters = sqliteTable(
  "forward_dead_letters",
  {
    destination: text("destination").notNull(),
    eventId: integer("event_id").notNull(),
    attempts: integer("attempts").notNull(),
    lastError: text("last_error").notNull(),
    deadAt: integer("dead_at").notNull(),
  },
  (table) => [primaryKey({ columns: [table.destination, table.eventId] })],
);

/** Events asked to be sent again (`forward replay`), outside their lane's order. */
export const forwardReplays = sqliteTable(
  "forward_replays",
  {
    destination: text("destination").notNull(),
    eventId: integer("event_id").notNull(),
    requestedAt: integer("requested_at").notNull(),
    attempts: integer("attempts").notNull(),
    nextAttemptAt: integer("next_attempt_at").notNull(),
    lastError: text("last_error"),
  },
  (table) => [primaryKey({ columns: [table.destination, table.eventId] })],
);

/** Named consumers that pull events (`/consumers/:name`): each one's acknowledged position. */
export const consumers = sqliteTable("consumers", {
  name: text("name").primaryKey(),
  /** The last event the consumer acknowledged (0: none yet). */
  position: integer("position").notNull(),
  createdAt: text("created_at").notNull(),
  updatedAt: text("updated_at").notNull(),
});

export type EventRow = typeof events.$inferSelect;

/**
 * One row per reconciliation with ICR's API (`icr-receiver reconcile`, or `--reconcile-every`):
 * when it ran, whether it got through, how many gaps of each kind it found, and the gaps as JSON.
 * Not part of the append-only log: a report about it, never a signed event.
 */
export const reconcileRuns = sqliteTable(
  "reconcile_runs",
  {
    id: integer("id").primaryKey(),
    startedAt: text("started_at").notNull(),
    finishedAt: text("finished_at").notNull(),
    /** `cli` or `schedule`. */
    source: text("source").notNull(),
    /** False when the run could not finish (ICR unreachable, a credential refused): `error` says why. */
    ok: integer("ok", { mode: "boolean" }).notNull(),
    error: text("error"),
    /** Transactions created or updated before this were not compared (ISO-8601; NULL: an empty log). */
    since: text("since"),
    installationsChecked: integer("installations_checked").notNull(),
    transactionsChecked: integer("transactions_checked").notNull(),
    missedInstallations: integer("missed_installations").notNull(),
    missedUninstallations: integer("missed_uninstallations").notNull(),
    missedTransactions: integer("missed_transactions").notNull(),
    /** The gaps as a JSON array (see src/reconcile/reconcile.ts), `[]` for none or a failed run. */
    gaps: text("gaps").notNull(),
  },
  (table) => [index("reconcile_runs_started_at").on(table.startedAt)],
);
