// The event log, as the HTTP routes and the CLI see it: the one seam between them and storage. The
// doc comments here are the contract; how a row is laid out, the writer and checkpointer threads,
// and SQLite itself are this module's business and nobody else's.
import { Database } from "bun:sqlite";
import { existsSync, rmSync, statSync } from "node:fs";
import type { VerifiedDelivery } from "../verify/verify-delivery.ts";
import { WRITER_WORKER_URL } from "../workers.ts";
import type { Appended, Rejection } from "./append.ts";
import { runChecks, type CheckReport } from "./check.ts";
import { Consumers } from "./consumers.ts";
import { closeDatabase, configureForWriting, openDatabase, openDatabaseReadOnly, type Checkpoints, type EventLogDatabase } from "./database.ts";
import { GroupCommit, type CommitStats } from "./group-commit.ts";
import { deliveryImporter, type ImportOutcome } from "./import.ts";
import { bundledMigrations, migrate } from "./migrations.ts";
import { EventQueries, type DeliveryView, type EventFilter, type EventView, type ReconcileFacts } from "./query.ts";
import { acceptedDelivery, type RequestFacts } from "./row.ts";
import { COPIED_DIGESTS_THROUGH } from "./event-digests.ts";
import { KEYS_COPIED_THROUGH } from "./event-keys.ts";
import { deliveries, events, reconcileRuns, rejections } from "./schema.ts";
import { count, desc, eq, lt, max, sql } from "drizzle-orm";

export type { Appended, Rejection } from "./append.ts";
export { APPEND_ONLY_TRIGGERS, type CheckReport } from "./check.ts";
export { LogWriteError, type CommitStats } from "./group-commit.ts";
export { eventJson, pageJson, type DeliveryView, type EventFilter, type EventView } from "./query.ts";
export { FILTER_DEFAULTS, FILTER_PARAMETERS, FilterError, parseEventFilter, type FilterValues } from "./filter.ts";
export type { RequestFacts } from "./row.ts";
export type { ImportOutcome } from "./import.ts";
export { CONSUMER_NAME, ConsumerError, type ConsumerView, type Consumers } from "./consumers.ts";
export type { InstallationFact, ReconcileFacts, TransactionFact } from "./query.ts";

/** One page of events, and the cursor of the next page (null on the last one). */
export interface EventPage {
  events: EventView[];
  next: string | null;
}

/** Reading the log: what GET /events and the CLI see. Reads never block a writer (WAL). */
export interface EventReader {
  /** One page of events matching `filter`, in id order; a new event is in it once its 202 is sent. */
  list(filter: EventFilter): EventPage;
  /** One event with every accepted delivery of it, oldest first; null if there is no such event. */
  get(id: number): (EventView & { deliveries: DeliveryView[] }) | null;
  /** The accepted deliveries of these events, oldest first, by event id. */
  deliveriesOf(eventIds: number[]): Map<number, DeliveryView[]>;
  /** Each installation's last lifecycle event and each transaction's last event (`reconcile` compares them with ICR). */
  reconcileFacts(): ReconcileFacts;
}

/** One reconciliation with ICR's API, as kept in the log's file (beside the log, not in it). */
export interface ReconcileRunRecord {
  startedAt: string;
  finishedAt: string;
  source: "cli" | "schedule";
  ok: boolean;
  /** Why a failed run failed; never a credential. */
  error: string | null;
  since: string | null;
  installationsChecked: number;
  transactionsChecked: number;
  missedInstallations: number;
  missedUninstallations: number;
  missedTransactions: number;
  /** The gaps, stored as JSON. */
  gaps: readonly unknown[];
}

/** The kept results of reconciliations, newest last. */
export interface ReconcileRuns {
  /** Keeps a run (committed before it returns); its id. */
  record(run: ReconcileRunRecord): number;
  /** The newest run, or the newest that succeeded; null if none. */
  last(options?: { ok?: true }): (ReconcileRunRecord & { id: number }) | null;
}

function reconcileRunsOver(db: EventLogDatabase["db"]): ReconcileRuns {
  return {
    record: ({ gaps, ...run }) => db.insert(reconcileRuns).values({ ...run, gaps: JSON.stringify(gaps) }).returning({ id: reconcileRuns.id }).get().id,
    last({ ok } = {}) {
      const row = db
        .select()
        .from(reconcileRuns)
        .where(ok ? eq(reconcileRuns.ok, true) : undefined)
        .orderBy(desc(reconcileRuns.id))
        .limit(1)
        .get();
      return row === undefined ? null : { ...row, source: row.source as ReconcileRunRecord["source"], gaps: JSON.parse(row.gaps) as unknown[] };
    },
  };
}

/** The log as the receiver writes it. */
export interface EventLog extends EventReader {
  readonly path: string;
  /**
   * Appends a verified delivery with the facts of the request it came in; resolves once the
   * commit that holds it is on disk (a repeat of a stored payload is recorded as a delivery of that
   * event, `duplicate: true`). Rejects with LogWriteError when that commit failed: then nothing of
   * it was stored. Any other rejection is a bug.
   */
  append(delivery: VerifiedDelivery, request: RequestFacts): Promise<Appended>;
  /** Notes a refused delivery for the operator. Nobody waits for it: lost (only it) if its commit fails. */
  recordRejection(rejection: Rejection): void;
  /** Whether a delivery can be taken now: the last commit did not fail and the write lock is free. */
  writable(): boolean;
  /** Whether the last commit failed (a full disk, a lock held too long): cleared by the next success. */
  readonly commitFailing: boolean;
  /** Bytes of the log's file and its write-ahead log. */
  sizeBytes(): number;
  /**
   * How many of the newest events the copies the writer keeps behind the log have yet to take:
   * into event_keys (queries read these from `events` meanwhile) and into event_digests (the
   * writer holds these in memory meanwhile). A batch's worth at most, unless a copy is failing.
   */
  copiesBehind(): CopiesBehind;
  /** The named consumers' positions (each change committed before it returns). */
  readonly consumers: Consumers;
  /** The kept results of reconciliations with ICR's API. */
  readonly reconcileRuns: ReconcileRuns;
  /** Commits what is queued, ends the writer thread and closes the log. */
  close(): Promise<void>;
}

export interface EventLogOptions {
  /** How long a write waits for a lock another process holds before it fails (ms). */
  busyTimeoutMs?: number;
  /** Values never to be stored with a delivery's headers (the query token). */
  redact?: readonly string[];
  /** Told of every commit, for the metrics. */
  onCommit?: (stats: CommitStats) => void;
  /** Who checkpoints the WAL (default "receiver"; "litestream" when Litestream replicates the log). */
  checkpoints?: Checkpoints;
}

export interface CopiesBehind {
  eventKeys: number;
  eventDigests: number;
}

function copiesBehindOver({ db }: EventLogDatabase): () => CopiesBehind {
  const lastEvent = db.select({ id: max(events.id) }).from(events);
  const behind = db
    .select({
      eventKeys: sql<number>`coalesce((${lastEvent}), 0) - ${sql.raw(KEYS_COPIED_THROUGH)}`,
      eventDigests: sql<number>`coalesce((${lastEvent}), 0) - ${sql.raw(COPIED_DIGESTS_THROUGH)}`,
    })
    .from(sql`(SELECT 1)`)
    .prepare();
  return () => behind.get()!;
}

function readerOver(database: EventLogDatabase): EventReader {
  const queries = new EventQueries(database.db);
  return {
    list: (filter) => queries.list(filter),
    get: (id) => queries.get(id),
    deliveriesOf: (ids) => queries.deliveriesOf(ids),
    reconcileFacts: () => queries.reconcileFacts(),
  };
}

/**
 * The longest a readiness probe waits for the write lock. The receiver's own threads hold it for a
 * commit (a millisecond or two) many times a second: without a wait, a busy receiver reads as not
 * ready to a load balancer's health check about half the time. A lock held longer than this is
 * another process's (a sqlite3 shell, a migration), and then deliveries would wait too.
 */
const READY_LOCK_WAIT_MS = 100;

/** Whether the log can take a write now: the write lock comes free within READY_LOCK_WAIT_MS. */
function lockFree({ sqlite, busyTimeoutMs }: EventLogDatabase): boolean {
  try {
    sqlite.run(`PRAGMA busy_timeout = ${READY_LOCK_WAIT_MS}`);
    sqlite.run("BEGIN IMMEDIATE");
    sqlite.run("ROLLBACK");
    return true;
  } catch {
    return false;
  } finally {
    sqlite.run(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  }
}

const fileSize = (path: string) => statSync(path, { throwIfNoEntry: false })?.size ?? 0;

/**
 * Opens the log for writing, creating it if needed (its directory must exist: a missing one may
 * be a volume that is not mounted), applies pending migrations (here, and nowhere else), and
 * starts the writer thread. Throws when the log cannot be written.
 */
export async function openEventLog(path: string, { busyTimeoutMs = 5000, redact = [], onCommit, checkpoints }: EventLogOptions = {}): Promise<EventLog> {
  const database = openDatabase(path, { busyTimeoutMs, checkpoints });
  let writer: GroupCommit;
  try {
    writer = await GroupCommit.start({ workerUrl: WRITER_WORKER_URL, path, busyTimeoutMs, checkpoints }, onCommit);
  } catch (error) {
    closeDatabase(database);
    throw error;
  }
  return {
    path,
    ...readerOver(database),
    append: (delivery, request) => writer.append(acceptedDelivery(delivery, request, redact)),
    recordRejection: (rejection) => writer.recordRejection(rejection),
    // A full disk lets BEGIN IMMEDIATE through, not the commit: the writer's last answer counts too.
    writable: () => !writer.failing && lockFree(database),
    get commitFailing() {
      return writer.failing;
    },
    sizeBytes: () => fileSize(path) + fileSize(`${path}-wal`),
    copiesBehind: copiesBehindOver(database),
    consumers: new Consumers(database.db),
    reconcileRuns: reconcileRunsOver(database.db),
    async close() {
      await writer.close();
      closeDatabase(database);
    },
  };
}

/** The log read-only, as the CLI reads it while the server writes. */
export interface EventLogReader extends EventReader {
  readonly path: string;
  /** Runs `read` in one read transaction: every query in it sees the same snapshot of the log. */
  snapshot<T>(read: () => Promise<T>): Promise<T>;
  /** Every check of `icr-receiver check`, on one snapshot. */
  check(): CheckReport;
  /**
   * Writes a consistent, compact copy of the log to `file` from one snapshot, checks the copy
   * (PRAGMA quick_check) and returns its row counts. Throws if the copy is not sound.
   */
  copyTo(file: string): { events: number; deliveries: number };
  close(): void;
}

/** Opens an existing log read-only: never creates one, never migrates, never blocks the server. */
export function openEventLogReader(path: string): EventLogReader {
  if (!existsSync(path)) throw new Error(`no event log at ${path}`);
  const database = openDatabaseReadOnly(path);
  return {
    path,
    ...readerOver(database),
    async snapshot(read) {
      database.sqlite.run("BEGIN");
      try {
        return await read();
      } finally {
        database.sqlite.run("COMMIT");
      }
    },
    check: () => runChecks(path, database),
    copyTo(file) {
      rmSync(file, { force: true }); // VACUUM INTO refuses a non-empty file
      database.sqlite.query("VACUUM INTO ?").run(file);
      return inspectCopy(file);
    },
    close: () => database.sqlite.close(),
  };
}

/** The named consumers of an existing log, for the CLI (a reset writes, waiting for the lock). */
export function openConsumers(path: string): { consumers: Consumers; close(): void } {
  if (!existsSync(path)) throw new Error(`no event log at ${path}`);
  const database = openDatabase(path, { migrate: false });
  return { consumers: new Consumers(database.db), close: () => database.sqlite.close() };
}

/** The kept reconciliations of an existing log, for the CLI (a record writes, waiting for the lock). */
export function openReconcileRuns(path: string): { runs: ReconcileRuns; close(): void } {
  if (!existsSync(path)) throw new Error(`no event log at ${path}`);
  const database = openDatabase(path, { migrate: false });
  return { runs: reconcileRunsOver(database.db), close: () => database.sqlite.close() };
}

/** A delivery another log took, verified again here, with the facts of the request it first came in. */
export interface ImportedDelivery {
  verified: VerifiedDelivery;
  request: RequestFacts;
}

/** Appending, in bulk, deliveries another log took (`icr-receiver import`). */
export interface EventLogImporter {
  readonly path: string;
  /**
   * Appends a batch in one IMMEDIATE transaction (waiting for the write lock as any writer does)
   * under the writer's rules: ids and chain hashes read under the lock, a repeat of a stored
   * payload recorded as a duplicate delivery of its event. One rule more: a delivery the log
   * already holds (same payload, receive time and body) is not stored again (`present`), so an
   * import can be repeated. Committed when it returns; when it throws, nothing of the batch is stored.
   */
  append(batch: readonly ImportedDelivery[]): ImportOutcome[];
  /** Copies the filter keys of new events (the receiver's writer does it behind its commits); how many. */
  copyKeys(): number;
  close(): void;
}

/**
 * Opens the log to import into, creating and migrating it if needed (its directory must exist),
 * on a writing connection of its own: safe beside a running receiver. `redact`: values never to
 * be stored with a delivery's headers (the query token); credential headers are always redacted.
 */
export function openEventLogImporter(
  path: string,
  { busyTimeoutMs = 5000, redact = [], checkpoints = "receiver" }: Omit<EventLogOptions, "onCommit"> = {},
): EventLogImporter {
  const database = openDatabase(path, { busyTimeoutMs, checkpoints });
  // As the receiver's writer: checkpoints are a running receiver's checkpointer's business (this
  // connection's own remains a backstop, at 16 MB of WAL, that an offline import relies on);
  // under Litestream, openDatabase has turned them off.
  if (checkpoints === "receiver") database.sqlite.run("PRAGMA wal_autocheckpoint = 4000");
  let importer: ReturnType<typeof deliveryImporter>;
  try {
    importer = deliveryImporter(database);
  } catch (error) {
    database.sqlite.close();
    throw error;
  }
  return {
    path,
    append: (batch) => importer.append(batch.map(({ verified, request }) => acceptedDelivery(verified, request, redact))),
    copyKeys: () => importer.copyKeys(),
    // Not closeDatabase: its TRUNCATE checkpoint would hold a running receiver's writer up. The
    // receiver's checkpointer folds the WAL back; offline, SQLite does it as the last connection closes.
    close: () => database.sqlite.close(),
  };
}

/** Opens a copy on its own and checks it is sound; its row counts. */
function inspectCopy(path: string): { events: number; deliveries: number } {
  const copy = new Database(path, { readonly: true, strict: true });
  try {
    const check = copy.query<{ quick_check: string }, []>("PRAGMA quick_check").all();
    if (check.length !== 1 || check[0]!.quick_check !== "ok") throw new Error("the copy failed PRAGMA quick_check");
    const count = (table: string) => copy.query<{ n: number }, []>(`SELECT count(*) AS n FROM "${table}"`).get()!.n;
    return { events: count("events"), deliveries: count("deliveries") };
  } finally {
    copy.close();
  }
}

/**
 * Applies, as `serve` would at start, the migrations this binary carries that the log at `path`
 * has not had (creating the log if there is none). Returns their tags and how many are bundled.
 */
export function migrateEventLog(path: string): { applied: string[]; bundled: number } {
  let sqlite: Database;
  try {
    sqlite = new Database(path, { create: true, strict: true });
  } catch (error) {
    throw new Error(`cannot open the event log ${path}: ${(error as Error).message}`);
  }
  try {
    // The settings serve uses, so a log created here is a normal one.
    configureForWriting(sqlite);
    return { applied: migrate(sqlite), bundled: bundledMigrations().length };
  } catch (error) {
    throw new Error(`migrating ${path} failed: ${(error as Error).message}`);
  } finally {
    sqlite.close();
  }
}

/** A refused delivery as the rejection ring keeps it (never its body: only its size and hash). */
export interface RejectionView {
  /** Its place in the order of refusals: newer ones have higher numbers. */
  seq: number;
  receivedAt: string;
  remoteAddress: string | null;
  status: number;
  reason: string;
  bodySize: number;
  bodySha256: string | null;
}

/** What the console reads beside the EventReader: the rejection ring and the size of the log. */
export interface LogInspection {
  /**
   * Refused deliveries, newest first: `limit` of them, those before `before` (a `seq`) when given.
   * `next` is the `before` of the following page (null on the last). The ring keeps the newest
   * 10,000; a refusal answered 429 is not in it.
   */
  rejections(page: { limit: number; before?: number }): { rejections: RejectionView[]; next: number | null };
  /** Rows in the log's tables. */
  rows(): { events: number; deliveries: number; rejections: number };
  close(): void;
}

/** Opens a read-only connection of the caller's own over the log at `path` (which must exist). */
export function openLogInspection(path: string): LogInspection {
  const { sqlite, db } = openDatabaseReadOnly(path);
  return {
    rejections({ limit, before }) {
      const rows = db
        .select()
        .from(rejections)
        .where(before === undefined ? undefined : lt(rejections.seq, before))
        .orderBy(desc(rejections.seq))
        .limit(limit + 1)
        .all();
      const page = rows.slice(0, limit).map(({ slot: _slot, ...row }) => row);
      return { rejections: page, next: rows.length > limit ? page.at(-1)!.seq : null };
    },
    rows() {
      // Append-only tables (triggers refuse deletes): the highest id is the count, read from the
      // end of the primary key rather than by scanning millions of rows.
      return {
        events: db.select({ n: max(events.id) }).from(events).get()?.n ?? 0,
        deliveries: db.select({ n: max(deliveries.id) }).from(deliveries).get()?.n ?? 0,
        rejections: db.select({ n: count() }).from(rejections).get()?.n ?? 0,
      };
    },
    close: () => sqlite.close(),
  };
}
