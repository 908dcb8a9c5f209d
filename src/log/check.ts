// Is the event log sound? Each check is an entry in CHECKS, and shows up in `icr-receiver check`'s
// report and in its --json.
import { count, eq, isNull } from "drizzle-orm";
import { CHAINED_TABLE_NAMES, verifyChain } from "./chain.ts";
import type { EventLogDatabase } from "./database.ts";
import { COPIED_DIGESTS_THROUGH } from "./event-digests.ts";
import { CREDENTIAL_HEADERS, REDACTED } from "./headers.ts";
import { bundledMigrations, type Migration } from "./migrations.ts";
import { consumersPastTheEnd } from "./consumers.ts";
import { consumers, deliveries, events } from "./schema.ts";

const plural = (n: number, noun: string, nouns = `${noun}s`) => `${n} ${n === 1 ? noun : nouns}`;

interface CheckOutcome {
  ok: boolean;
  /** One line for the report. */
  summary: string;
  /** What is wrong, one item per problem (shown under a failed check). */
  problems?: string[];
  /** Machine-readable facts for --json. */
  data?: Record<string, unknown>;
}

interface Check {
  name: string;
  run(log: EventLogDatabase): CheckOutcome;
}

interface CheckResult extends CheckOutcome {
  name: string;
}

export interface CheckReport {
  database: string;
  ok: boolean;
  checks: CheckResult[];
}

const integrity: Check = {
  name: "integrity",
  run({ sqlite }) {
    const rows = sqlite.query<{ integrity_check: string }, []>("PRAGMA integrity_check").all();
    const problems = rows.map((r) => r.integrity_check).filter((message) => message !== "ok");
    return problems.length === 0
      ? { ok: true, summary: "PRAGMA integrity_check: ok" }
      : { ok: false, summary: `PRAGMA integrity_check: ${plural(problems.length, "problem")}`, problems };
  },
};

const foreignKeys: Check = {
  name: "foreign-keys",
  run({ sqlite }) {
    const rows = sqlite.query<{ table: string; rowid: number; parent: string }, []>("PRAGMA foreign_key_check").all();
    const problems = rows.map((r) => `${r.table} row ${r.rowid} refers to a missing ${r.parent} row`);
    return problems.length === 0
      ? { ok: true, summary: "every delivery belongs to an event" }
      : { ok: false, summary: `${plural(problems.length, "dangling reference")}`, problems: problems.slice(0, 20) };
  },
};

/** The triggers drizzle/0001_append_only.sql creates. */
export const APPEND_ONLY_TRIGGERS = [
  { name: "events_no_update", table: "events", operation: "UPDATE" },
  { name: "events_no_delete", table: "events", operation: "DELETE" },
  { name: "deliveries_no_update", table: "deliveries", operation: "UPDATE" },
  { name: "deliveries_no_delete", table: "deliveries", operation: "DELETE" },
] as const;

const appendOnly: Check = {
  name: "append-only",
  run({ sqlite }) {
    const rows = sqlite
      .query<{ name: string; tbl_name: string; sql: string | null }, []>(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'",
      )
      .all();
    const problems: string[] = [];
    for (const expected of APPEND_ONLY_TRIGGERS) {
      const row = rows.find((r) => r.name === expected.name);
      const sql = row?.sql ?? "";
      if (row === undefined) problems.push(`trigger ${expected.name} is missing`);
      else if (
        row.tbl_name !== expected.table ||
        !new RegExp(`\\bBEFORE\\s+${expected.operation}\\b`, "i").test(sql) ||
        !/RAISE\s*\(\s*ABORT\b/i.test(sql)
      ) {
        problems.push(`trigger ${expected.name} no longer aborts every ${expected.operation} on ${expected.table}`);
      }
    }
    return problems.length === 0
      ? { ok: true, summary: `${APPEND_ONLY_TRIGGERS.length} append-only triggers present` }
      : { ok: false, summary: `append-only enforcement broken: ${plural(problems.length, "problem")}`, problems };
  },
};

const hashChain: Check = {
  name: "hash-chain",
  run({ sqlite }) {
    const problems: string[] = [];
    const data: Record<string, number> = {};
    for (const table of CHAINED_TABLE_NAMES) {
      const result = verifyChain(sqlite, table);
      data[table] = result.rows;
      if (!result.ok) problems.push(`${table}: the chain breaks at id ${result.firstBadId} (that row was edited, or one before it removed)`);
    }
    const tables = Object.entries(data).map(([table, rows]) => `${table} (${plural(rows, "row")})`);
    return problems.length === 0
      ? { ok: true, summary: `chains verify: ${tables.join(", ")}`, data }
      : { ok: false, summary: `tampering evident: ${plural(problems.length, "broken chain")}`, problems, data };
  },
};

/** Compares the migrations recorded in the database with the ones this binary carries. Pure. */
function compareMigrations(
  bundled: readonly Pick<Migration, "tag" | "createdAt" | "hash">[],
  applied: readonly { hash: string; created_at: number | string }[],
): CheckOutcome {
  const problems: string[] = [];
  const appliedAt = new Map(applied.map((row) => [Number(row.created_at), row.hash]));
  for (const migration of bundled) {
    const hash = appliedAt.get(migration.createdAt);
    if (hash === undefined) problems.push(`${migration.tag} is not applied (run icr-receiver migrate)`);
    else if (hash !== migration.hash) problems.push(`${migration.tag} was applied from different SQL than this binary carries`);
  }
  const known = new Set(bundled.map((m) => m.createdAt));
  const unknown = applied.filter((row) => !known.has(Number(row.created_at))).length;
  if (unknown > 0) problems.push(`${plural(unknown, "applied migration")} unknown to this binary (is it older than the database?)`);
  const data = { bundled: bundled.length, applied: applied.length };
  return problems.length === 0
    ? { ok: true, summary: `${bundled.length} of ${bundled.length} migrations applied`, data }
    : { ok: false, summary: `migrations out of step: ${plural(problems.length, "problem")}`, problems, data };
}

const migrations: Check = {
  name: "migrations",
  run({ sqlite }) {
    const table = sqlite.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '__drizzle_migrations'").get();
    if (table === null) {
      return { ok: false, summary: "no __drizzle_migrations table: not migrated (run icr-receiver migrate)" };
    }
    const applied = sqlite
      .query<{ hash: string; created_at: number }, []>("SELECT hash, created_at FROM __drizzle_migrations")
      .all();
    return compareMigrations(bundledMigrations(), applied);
  },
};

const counts: Check = {
  name: "counts",
  run({ db, sqlite }) {
    // runChecks holds one read transaction, so the counts agree while the server writes.
    const eventCount = db.select({ n: count() }).from(events).get()!.n;
    const deliveryCount = db.select({ n: count() }).from(deliveries).get()!.n;
    const duplicates = db.select({ n: count() }).from(deliveries).where(eq(deliveries.duplicate, true)).get()!.n;
    const unparsed = db.select({ n: count() }).from(events).where(isNull(events.event)).get()!.n;
    const data = { events: eventCount, unparsed, deliveries: deliveryCount, duplicates };
    const summary = `${plural(eventCount, "event")} (${unparsed} unparsed), ${plural(deliveryCount, "delivery", "deliveries")}, ${plural(duplicates, "duplicate")}`;
    const problems: string[] = [];
    // Every event is stored with exactly one first (non-duplicate) delivery.
    const firsts = deliveryCount - duplicates;
    if (firsts !== eventCount) problems.push(`${plural(firsts, "first delivery", "first deliveries")} for ${plural(eventCount, "event")}`);
    // An unparsed event has no name and a reason, a parsed one a name and no reason.
    const { inconsistent } = sqlite
      .query<{ inconsistent: number }, []>(
        "SELECT count(*) AS inconsistent FROM events WHERE (event IS NULL) <> (unparsed_reason IS NOT NULL)",
      )
      .get()!;
    if (inconsistent > 0) problems.push(`${plural(inconsistent, "event")} with both or neither of an event name and an unparsed reason`);
    return problems.length === 0 ? { ok: true, summary, data } : { ok: false, summary, problems, data };
  },
};

/**
 * Deliveries stored before 0.4.0 kept every request header, credentials included. Append-only rows
 * cannot be rewritten, so they are reported here (and redacted whenever they are served).
 */
const credentials: Check = {
  name: "credentials",
  run({ sqlite }) {
    const conditions = CREDENTIAL_HEADERS.map(
      (name) => `coalesce(json_extract(headers, '$."${name}"'), '${REDACTED}') <> '${REDACTED}'`,
    ).join(" OR ");
    const { n, first } = sqlite
      .query<{ n: number; first: number | null }, []>(`SELECT count(*) AS n, min(id) AS first FROM deliveries WHERE ${conditions}`)
      .get()!;
    const data = { deliveriesWithCredentials: n };
    return n === 0
      ? { ok: true, summary: "no delivery keeps a credential header", data }
      : {
          ok: true,
          summary: `${plural(n, "delivery", "deliveries")} stored before 0.4.0 keep a credential header (first: delivery ${first}); never served, see the README`,
          data,
        };
  },
};

/** event_keys is derived from events: each of its rows must match its event, with no gaps. */
const eventKeysCheck: Check = {
  name: "event-keys",
  run({ sqlite }) {
    const { copied, wrong, last } = sqlite
      .query<{ copied: number; wrong: number; last: number | null }, []>(
        `SELECT count(*) AS copied, max(k.event_id) AS last,
                sum(e.id IS NULL OR k.event IS NOT e.event OR k.organization_id IS NOT e.organization_id
                    OR k.installation_id IS NOT e.installation_id OR k.received_at IS NOT e.received_at) AS wrong
         FROM event_keys k LEFT JOIN events e ON e.id = k.event_id`,
      )
      .get()!;
    // The writer copies in id order, so the copied rows are exactly the events up to the last one.
    const { upToLast } = sqlite
      .query<{ upToLast: number }, [number]>("SELECT count(*) AS upToLast FROM events WHERE id <= ?")
      .get(last ?? 0)!;
    const behind = sqlite.query<{ n: number }, [number]>("SELECT count(*) AS n FROM events WHERE id > ?").get(last ?? 0)!.n;
    const data = { copied, behind, wrong: wrong ?? 0, missing: upToLast - copied };
    const problems: string[] = [];
    if (data.wrong > 0) problems.push(`${plural(data.wrong, "row")} of event_keys disagree with their event (rebuild: see the README)`);
    if (data.missing > 0) problems.push(`${plural(data.missing, "event")} up to id ${last} have no row in event_keys`);
    const summary = `keys of ${plural(copied, "event")} indexed, ${behind} not yet copied`;
    return problems.length === 0 ? { ok: true, summary, data } : { ok: false, summary, problems, data };
  },
};

/**
 * The digests the writer finds repeats by (src/log/event-digests.ts): every event up to where the
 * copy has reached has its row in event_digests, no row disagrees with its event, and no payload
 * is stored as two events. No unique index keeps payloads distinct (the writer does), so this is
 * where it is proven: in the copied part through the digest index, in the tail against the copied
 * part and within itself.
 */
const digestsCheck: Check = {
  name: "digests",
  run({ sqlite }) {
    const one = <T>(sql: string, ...params: number[]) => sqlite.query<T, number[]>(sql).get(...params)!;
    const { through } = one<{ through: number }>(`SELECT ${COPIED_DIGESTS_THROUGH} AS through`);
    const { rows } = one<{ rows: number }>("SELECT count(*) AS rows FROM event_digests");
    // Each event probes for its own row; rows are unique, so a row that no event matched is wrong.
    const { missing, matched } = one<{ missing: number; matched: number }>(
      `SELECT coalesce(sum(id <= ?1 AND NOT present), 0) AS missing, coalesce(sum(present), 0) AS matched FROM (
         SELECT e.id, EXISTS (SELECT 1 FROM event_digests d WHERE d.digest = unhex(substr(e.payload_sha256, 1, 16)) AND d.event_id = e.id) AS present
         FROM events e)`,
      through,
    );
    const wrong = rows - matched;
    const { repeatedCopied } = one<{ repeatedCopied: number }>(
      `SELECT count(*) AS repeatedCopied FROM (
         SELECT 1 FROM event_digests d JOIN events e ON e.id = d.event_id
         WHERE d.event_id <= ?1 AND d.digest IN (SELECT digest FROM event_digests GROUP BY digest HAVING count(*) > 1)
         GROUP BY e.payload_sha256 HAVING count(*) > 1)`,
      through,
    );
    const { repeatedInTail } = one<{ repeatedInTail: number }>(
      "SELECT count(*) AS repeatedInTail FROM (SELECT 1 FROM events WHERE id > ? GROUP BY payload_sha256 HAVING count(*) > 1)",
      through,
    );
    const { repeatedAcross } = one<{ repeatedAcross: number }>(
      `SELECT count(*) AS repeatedAcross FROM events t WHERE t.id > ?1 AND EXISTS (
         SELECT 1 FROM event_digests d JOIN events e ON e.id = d.event_id
         WHERE d.digest = unhex(substr(t.payload_sha256, 1, 16)) AND d.event_id <= ?1 AND e.payload_sha256 = t.payload_sha256)`,
      through,
    );
    const { behind } = one<{ behind: number }>("SELECT count(*) AS behind FROM events WHERE id > ?", through);
    const repeatedPayloads = repeatedCopied + repeatedInTail + repeatedAcross;
    const data = { copied: through, behind, missing, wrong, repeatedPayloads };
    const problems: string[] = [];
    if (missing > 0) problems.push(`${plural(missing, "event")} up to id ${through} ${missing === 1 ? "has" : "have"} no row in event_digests`);
    if (wrong > 0) problems.push(`${plural(wrong, "row")} of event_digests ${wrong === 1 ? "does" : "do"} not match an event's digest`);
    if (repeatedPayloads > 0) problems.push(`${plural(repeatedPayloads, "payload")} stored as more than one event`);
    const summary = `digests of ${plural(through, "event")} indexed, ${behind} held in memory by the writer`;
    return problems.length === 0 ? { ok: true, summary, data } : { ok: false, summary, problems, data };
  },
};

/**
 * Forwarding's progress (src/forward/) against the log: no destination has handed out events past
 * the log's end, no lane is past its destination's progress (an event it skipped), and every dead
 * letter and replay names an event of the log.
 */
const forwarding: Check = {
  name: "forwarding",
  run({ sqlite }) {
    const one = <T>(sql: string) => sqlite.query<T, []>(sql).get()!;
    const { last } = one<{ last: number | null }>("SELECT max(id) AS last FROM events");
    const ahead = sqlite
      .query<{ name: string; discovered_through: number }, [number]>("SELECT name, discovered_through FROM forward_destinations WHERE discovered_through > ?")
      .all(last ?? 0);
    const { orphans } = one<{ orphans: number }>(
      `SELECT count(*) AS orphans FROM forward_lanes l LEFT JOIN forward_destinations d ON d.name = l.destination
       WHERE d.name IS NULL OR l.through > d.discovered_through`,
    );
    const { missing } = one<{ missing: number }>(
      `SELECT (SELECT count(*) FROM forward_dead_letters WHERE event_id NOT IN (SELECT id FROM events))
            + (SELECT count(*) FROM forward_replays WHERE event_id NOT IN (SELECT id FROM events)) AS missing`,
    );
    const data = {
      destinations: one<{ n: number }>("SELECT count(*) AS n FROM forward_destinations").n,
      lanes: one<{ n: number }>("SELECT count(*) AS n FROM forward_lanes").n,
      deadLetters: one<{ n: number }>("SELECT count(*) AS n FROM forward_dead_letters").n,
      replays: one<{ n: number }>("SELECT count(*) AS n FROM forward_replays").n,
    };
    const problems = [
      ...ahead.map((d) => `destination ${d.name} has handed out events up to ${d.discovered_through}, past the log's last event (${last ?? 0})`),
      ...(orphans > 0 ? [`${plural(orphans, "lane")} past their destination's progress, or of no destination`] : []),
      ...(missing > 0 ? [`${plural(missing, "dead letter or replay", "dead letters or replays")} of events not in the log`] : []),
    ];
    const summary =
      data.destinations === 0
        ? "no forwarding destination"
        : `${plural(data.destinations, "destination")}: ${plural(data.lanes, "installation")} with events to send, ${plural(data.deadLetters, "dead letter")}, ${plural(data.replays, "replay")} waiting`;
    return problems.length === 0 ? { ok: true, summary, data } : { ok: false, summary, problems, data };
  },
};

/** Named consumers: no position past the log's end. */
const consumersCheck: Check = {
  name: "consumers",
  run({ db }) {
    const ahead = consumersPastTheEnd(db);
    const { n } = db.select({ n: count() }).from(consumers).get()!;
    const summary = `${plural(n, "consumer")}`;
    return ahead.length === 0
      ? { ok: true, summary, data: { consumers: n } }
      : { ok: false, summary, problems: ahead.map((c) => `consumer ${c.name} is at ${c.position}, past the log's last event`), data: { consumers: n } };
  },
};

const CHECKS: readonly Check[] = [integrity, foreignKeys, appendOnly, hashChain, migrations, counts, eventKeysCheck, digestsCheck, credentials, forwarding, consumersCheck];

/** Runs every check in one read transaction (one consistent snapshot); a check that throws fails. */
export function runChecks(database: string, log: EventLogDatabase, checks: readonly Check[] = CHECKS): CheckReport {
  const results: CheckResult[] = [];
  log.sqlite.run("BEGIN");
  try {
    for (const check of checks) {
      try {
        results.push({ name: check.name, ...check.run(log) });
      } catch (error) {
        results.push({ name: check.name, ok: false, summary: `could not run: ${(error as Error).message}` });
      }
    }
  } finally {
    log.sqlite.run("COMMIT");
  }
  return { database, ok: results.every((r) => r.ok), checks: results };
}
