// Migrations travel inside the compiled binary: the journal and every .sql file are imported as
// text, so the VM needs no drizzle/ folder. Applied the way drizzle-orm's migrator applies them
// (same `__drizzle_migrations` table), so drizzle-kit and this code agree on what has run.
import type { Database } from "bun:sqlite";
import journal from "../../drizzle/meta/_journal.json";
import eventLog from "../../drizzle/0000_event_log.sql" with { type: "text" };
import appendOnly from "../../drizzle/0001_append_only.sql" with { type: "text" };
import digestIndexCanonicalBody from "../../drizzle/0002_digest_index_canonical_body.sql" with { type: "text" };
import eventKeys from "../../drizzle/0003_event_keys.sql" with { type: "text" };
import unparsedEvents from "../../drizzle/0004_unparsed_events.sql" with { type: "text" };
import forwarding from "../../drizzle/0005_forwarding.sql" with { type: "text" };
import consumers from "../../drizzle/0006_consumers.sql" with { type: "text" };
import reconcileRuns from "../../drizzle/0007_reconcile_runs.sql" with { type: "text" };
import forwardingLease from "../../drizzle/0008_forwarding_lease.sql" with { type: "text" };
import eventDigests from "../../drizzle/0009_event_digests.sql" with { type: "text" };
import eventDigestsSorted from "../../drizzle/0010_event_digests_sorted.sql" with { type: "text" };
import eventKeysReceivedAt from "../../drizzle/0011_event_keys_received_at.sql" with { type: "text" };

/** Every migration's SQL by journal tag; a test checks that it matches the journal exactly. */
export const migrationSql: Record<string, string> = {
  "0000_event_log": eventLog,
  "0001_append_only": appendOnly,
  "0002_digest_index_canonical_body": digestIndexCanonicalBody,
  "0003_event_keys": eventKeys,
  "0004_unparsed_events": unparsedEvents,
  "0005_forwarding": forwarding,
  "0006_consumers": consumers,
  "0007_reconcile_runs": reconcileRuns,
  "0008_forwarding_lease": forwardingLease,
  "0009_event_digests": eventDigests,
  "0010_event_digests_sorted": eventDigestsSorted,
  "0011_event_keys_received_at": eventKeysReceivedAt,
};

export interface Migration {
  tag: string;
  createdAt: number;
  hash: string;
  statements: string[];
}

export function bundledMigrations(): Migration[] {
  return journal.entries.map((entry) => {
    const sql = migrationSql[entry.tag];
    if (sql === undefined) throw new Error(`migration ${entry.tag} is in the journal but not bundled`);
    return {
      tag: entry.tag,
      createdAt: entry.when,
      hash: new Bun.CryptoHasher("sha256").update(sql).digest("hex"),
      statements: sql.split("--> statement-breakpoint").filter((s) => s.trim() !== ""),
    };
  });
}

/** Applies, in one transaction, every migration newer than the newest applied; returns their tags. */
export function migrate(sqlite: Database, migrations = bundledMigrations()): string[] {
  sqlite.run(
    "CREATE TABLE IF NOT EXISTS __drizzle_migrations (id INTEGER PRIMARY KEY, hash text NOT NULL, created_at numeric)",
  );
  const last = sqlite
    .query<{ created_at: number }, []>("SELECT created_at FROM __drizzle_migrations ORDER BY created_at DESC LIMIT 1")
    .get();
  const pending = migrations.filter((m) => last === null || m.createdAt > Number(last.created_at));
  sqlite.transaction(() => {
    for (const m of pending) {
      for (const statement of m.statements) sqlite.run(statement);
      sqlite.run("INSERT INTO __drizzle_migrations (hash, created_at) VALUES (?, ?)", [m.hash, m.createdAt]);
    }
  }).immediate();
  return pending.map((m) => m.tag);
}
