// The log as a database: migrations, durability settings, append-only enforcement, and
// inspection with Debian's real sqlite3 CLI while a server writes.
import { afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import journal from "../drizzle/meta/_journal.json";
import { chainHash, GENESIS, verifyChain } from "../src/log/chain.ts";
import { CHAIN_LAYOUT, TABLE_COLUMNS } from "../src/log/columns.ts";
import { closeDatabase, openDatabase } from "../src/log/database.ts";
import { bundledMigrations, migrate, migrationSql } from "../src/log/migrations.ts";
import { runChecks } from "../src/log/check.ts";
import { batchAppender } from "../src/log/append.ts";
import { signDelivery } from "../src/verify/sign-delivery.ts";
import { acceptedDelivery } from "./support/accepted-delivery.ts";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { indexesOf } from "./support/indexes.ts";
import { signedDelivery, startServer, tempDir, type TestServer } from "./support/server.ts";
import { sqlite3 } from "./support/sqlite-shell.ts";

/** The columns 0.1.0 chained, in order: every row written since depends on them staying so. */
const CHAINED_COLUMNS = {
  events: ["id", "received_at", "event", "installation_id", "organization_id", "app_id", "transaction_id", "transaction_status", "transaction_type", "transaction_amount", "payload", "payload_sha256", "secret_label", "envelope_mismatch"],
  deliveries: ["id", "event_id", "received_at", "remote_address", "headers", "raw_body", "secret_label", "envelope_mismatch", "duplicate"],
};

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

/** Debian's sqlite3, read-only, as an operator inspects the log. */
const inspect = (path: string, sql: string) => sqlite3(path, sql, ["-readonly"]);

describe("migrations", () => {
  test("every journal entry is bundled, every .sql file is in the journal, timestamps strictly increase", () => {
    const files = readdirSync(join(import.meta.dir, "..", "drizzle")).filter((f) => f.endsWith(".sql"));
    expect(files.map((f) => f.replace(/\.sql$/, "")).sort()).toEqual(journal.entries.map((e) => e.tag).sort());
    expect(Object.keys(migrationSql).sort()).toEqual(journal.entries.map((e) => e.tag).sort());
    const whens = journal.entries.map((e) => e.when);
    whens.forEach((when, i) => i > 0 && expect(when).toBeGreaterThan(whens[i - 1]!));
  });

  test("applied once; a second start applies nothing", () => {
    const path = join(tempDir(), "log.db");
    const sqlite = new Database(path);
    expect(migrate(sqlite)).toEqual(journal.entries.map((e) => e.tag));
    expect(migrate(sqlite)).toEqual([]);
    const applied = sqlite.query<{ hash: string }, []>("SELECT hash FROM __drizzle_migrations ORDER BY id").all();
    expect(applied.map((a) => a.hash)).toEqual(bundledMigrations().map((m) => m.hash));
    sqlite.close();
  });
});

describe("upgrading a log written before 0002", () => {
  test("keeps every row, raw body and chain hash, and the append-only triggers", () => {
    const path = join(tempDir(), "old.db");
    const old = new Database(path);
    migrate(old, bundledMigrations().slice(0, 2));
    // Rows as the receiver stored them then: a NOT NULL raw body on every delivery.
    const row = { payload: '{"event":"installed"}', body: '{"event":"installed","signedData":"eyJldmVudCI6Imluc3RhbGxlZCJ9"}' };
    const eventValues = [1, "2026-01-01T00:00:00.000Z", "installed", null, null, null, null, null, null, null, row.payload, "ab".repeat(32), "default", 0];
    const deliveryValues = [1, 1, "2026-01-01T00:00:00.000Z", "127.0.0.1", "{}", row.body, "default", 0, 0];
    old.run(`INSERT INTO events (${CHAINED_COLUMNS.events.join(", ")}, chain_hash) VALUES (${"?, ".repeat(14)}?)`, [
      ...eventValues,
      chainHash(GENESIS, eventValues),
    ] as never);
    old.run(`INSERT INTO deliveries (${CHAINED_COLUMNS.deliveries.join(", ")}, chain_hash) VALUES (${"?, ".repeat(9)}?)`, [
      ...deliveryValues,
      chainHash(GENESIS, deliveryValues),
    ] as never);
    old.close();

    const log = openDatabase(path); // applies 0002
    expect(log.sqlite.query<{ raw_body: string }, []>("SELECT raw_body FROM deliveries").get()!.raw_body).toBe(row.body);
    expect(verifyChain(log.sqlite, "events")).toEqual({ ok: true, table: "events", rows: 1 });
    expect(verifyChain(log.sqlite, "deliveries")).toEqual({ ok: true, table: "deliveries", rows: 1 });
    expect(() => log.sqlite.run("DELETE FROM deliveries")).toThrow("deliveries is append-only");
    expect(() => log.sqlite.run("UPDATE deliveries SET raw_body = NULL")).toThrow("deliveries is append-only");
    // 0002's unique index is gone; the index it put in its place went in turn in 0011.
    expect(indexesOf(log.sqlite, "events")).toEqual(["events_unparsed"]);
    closeDatabase(log);
  });
});

describe("what the hash chain covers", () => {
  test("every column of a chained table is chained: the first release's in their order, later ones by name when set", () => {
    for (const table of ["events", "deliveries"] as const) {
      const { chained, chainedWhenSet } = CHAIN_LAYOUT[table];
      // A column inserted among these would change the hash of every row already written.
      expect(chained.map((c) => c.name)).toEqual(CHAINED_COLUMNS[table]);
      // Nothing falls outside the tamper evidence but the chain hash itself.
      const covered = [...chained, ...chainedWhenSet].map((c) => c.name);
      expect(TABLE_COLUMNS[table].map((c) => c.name).filter((name) => !covered.includes(name))).toEqual(["chain_hash"]);
    }
    expect(CHAIN_LAYOUT.events.chainedWhenSet.map((c) => c.name)).toEqual(["unparsed_reason"]);
  });
});

describe("upgrading a log written before 0004 (unparsed events)", () => {
  test("keeps every row, its chain and keys; the triggers are back; new rows, unparsed too, continue the chain", () => {
    const path = join(tempDir(), "old.db");
    const old = new Database(path);
    migrate(old, bundledMigrations().slice(0, 4));
    // Three events and four deliveries as 0.3.0 stored them, chained over that release's columns.
    let eventChain = GENESIS;
    let deliveryChain = GENESIS;
    for (let id = 1; id <= 3; id++) {
      const payload = `{"event":"installed","n":${id}}`;
      const eventValues = [id, `2026-01-01T00:00:0${id}.000Z`, "installed", `inst-${id}`, "org-a", null, null, null, null, null, payload, String(id).repeat(64), "default", 0];
      eventChain = chainHash(eventChain, eventValues);
      old.run(`INSERT INTO events (${CHAINED_COLUMNS.events.join(", ")}, chain_hash) VALUES (${"?, ".repeat(14)}?)`, [...eventValues, eventChain] as never);
      old.run("INSERT INTO event_keys VALUES (?, 'installed', 'org-a', ?)", [id, `inst-${id}`]);
    }
    for (let id = 1; id <= 4; id++) {
      const deliveryValues = [id, Math.min(id, 3), "2026-01-01T00:00:05.000Z", "127.0.0.1", "{}", null, "default", 0, id === 4 ? 1 : 0];
      deliveryChain = chainHash(deliveryChain, deliveryValues);
      old.run(`INSERT INTO deliveries (${CHAINED_COLUMNS.deliveries.join(", ")}, chain_hash) VALUES (${"?, ".repeat(9)}?)`, [...deliveryValues, deliveryChain] as never);
    }
    old.close();

    const log = openDatabase(path); // applies 0004
    expect(log.sqlite.query<{ n: number }, []>("SELECT count(*) AS n FROM events WHERE unparsed_reason IS NULL").get()!.n).toBe(3);
    expect(() => log.sqlite.run("DELETE FROM events")).toThrow("events is append-only");
    expect(() => log.sqlite.run("UPDATE events SET event = NULL")).toThrow("events is append-only");
    const append = batchAppender(log);
    append([
      acceptedDelivery('{"event":"suspended"}', { event: "suspended" }),
      acceptedDelivery("not json", { event: null, unparsedReason: "not_json", rawBody: '{"signedData":"bm90IGpzb24="}' }),
    ]);
    expect(verifyChain(log.sqlite, "events")).toEqual({ ok: true, table: "events", rows: 5 });
    expect(verifyChain(log.sqlite, "deliveries")).toEqual({ ok: true, table: "deliveries", rows: 6 });
    const report = runChecks(path, log);
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.checks.find((c) => c.name === "counts")!.data).toMatchObject({ events: 5, unparsed: 1 });
    closeDatabase(log);
  });

  test("the unparsed reason is under the chain: changing it breaks the chain at that row", () => {
    const path = join(tempDir(), "log.db");
    const log = openDatabase(path);
    batchAppender(log)([
      acceptedDelivery("[1]", { event: null, unparsedReason: "not_an_object", rawBody: "{}" }),
      acceptedDelivery("[2]", { event: null, unparsedReason: "not_an_object", rawBody: "{}" }),
    ]);
    expect(verifyChain(log.sqlite, "events").ok).toBe(true);
    log.sqlite.run("DROP TRIGGER events_no_update");
    log.sqlite.run("UPDATE events SET unparsed_reason = 'not_json' WHERE id = 2");
    expect(verifyChain(log.sqlite, "events")).toEqual({ ok: false, table: "events", rows: 2, firstBadId: 2 });
    log.sqlite.run("UPDATE events SET unparsed_reason = NULL, event = 'installed' WHERE id = 1");
    expect(verifyChain(log.sqlite, "events")).toMatchObject({ ok: false, firstBadId: 1 });
    closeDatabase(log);
  });
});

describe("durability settings", () => {
  test("WAL journal and synchronous=FULL on the connection that writes", () => {
    const log = openDatabase(join(tempDir(), "log.db"));
    expect(log.sqlite.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()!.journal_mode).toBe("wal");
    expect(log.sqlite.query<{ synchronous: number }, []>("PRAGMA synchronous").get()!.synchronous).toBe(2);
    closeDatabase(log);
  });
});

describe("checkpoints", () => {
  test("the checkpointer thread folds the WAL back into the file without the writer's backstop", async () => {
    server = await startServer();
    const path = server.config.databasePath;
    const before = statSync(path).size;
    const deliveries = Array.from({ length: 100 }, () => signedDelivery({ padding: "x".repeat(2000) }));
    await Promise.all(deliveries.map((d) => server!.post(d.body, d.headers)));
    // 100 deliveries are a few hundred pages: far below the writer's 4,000-page backstop.
    expect(statSync(`${path}-wal`).size).toBeLessThan(4000 * 4096);
    let after = before;
    for (let i = 0; i < 50 && after < before + 100 * 4000; i++) {
      await Bun.sleep(20);
      after = statSync(path).size;
    }
    expect(after).toBeGreaterThan(before + 100 * 4000);
  });
});

describe("append-only, enforced by the database", () => {
  test("UPDATE and DELETE abort on both tables, from the receiver's connection and from sqlite3", async () => {
    server = await startServer();
    const d = signedDelivery();
    expect((await server.post(d.body, d.headers)).status).toBe(202);
    const { sqlite } = server.database;
    for (const sql of [
      "UPDATE events SET event = 'forged'",
      "DELETE FROM events",
      "UPDATE deliveries SET raw_body = '{}'",
      "DELETE FROM deliveries",
    ]) {
      expect(() => sqlite.run(sql)).toThrow("append-only");
      const cli = Bun.spawnSync(["sqlite3", server.config.databasePath, sql]);
      expect(cli.exitCode).not.toBe(0);
      expect(cli.stderr.toString()).toContain("append-only");
    }
    expect(sqlite.query<{ n: number }, []>("SELECT count(*) AS n FROM events WHERE event = 'warehouseTransaction'").get()!.n).toBe(1);
  });
});

describe("inspection with sqlite3 -readonly while the server writes", () => {
  test("the README's recipes work on Debian's sqlite3", async () => {
    server = await startServer();
    const version = Bun.spawnSync(["sqlite3", "--version"]).stdout.toString();
    expect(version).toMatch(/^3\.\d+/);
    for (const [event, org] of [["installed", "org-a"], ["warehouseTransaction", "org-a"], ["warehouseTransaction", "org-b"]] as const) {
      const d = signedDelivery({ event, installation: { id: "i", organization: { id: org } } });
      expect((await server.post(d.body, d.headers)).status).toBe(202);
    }
    // And one authentic delivery whose signed data is not JSON: stored unparsed.
    const notJson = signDelivery("this is not json", FIXTURE_SECRET, { envelope: {} });
    expect((await server.post(notJson.body, notJson.headers)).status).toBe(202);
    const path = server.config.databasePath;
    // A reader holding a read transaction does not block the writer (WAL).
    const reader = Bun.spawn(["sqlite3", "-readonly", path], { stdin: "pipe", stdout: "pipe" });
    reader.stdin.write("BEGIN; SELECT count(*) FROM events;\n");
    reader.stdin.flush();
    await Bun.sleep(100);
    const during = signedDelivery({ event: "suspended" });
    expect((await server.post(during.body, during.headers)).status).toBe(202);
    reader.stdin.write("COMMIT;\n.quit\n");
    reader.stdin.end();
    expect((await new Response(reader.stdout).text()).trim()).toBe("4");

    expect(inspect(path, "SELECT id, received_at, event, organization_id FROM events ORDER BY id DESC LIMIT 10").split("\n")).toHaveLength(5);
    expect(inspect(path, "SELECT event, count(*) FROM events GROUP BY event ORDER BY event")).toBe(
      "|1\ninstalled|1\nsuspended|1\nwarehouseTransaction|2",
    );
    // json_extract over every payload stops at the unparsed one; the README's guard avoids it.
    expect(() => inspect(path, "SELECT id, json_extract(payload, '$.installation.id') FROM events")).toThrow();
    expect(inspect(path, "SELECT id, json_extract(payload, '$.installation.id') FROM events WHERE event IS NOT NULL").split("\n")).toHaveLength(4);
    expect(inspect(path, "SELECT id, received_at, unparsed_reason FROM events WHERE event IS NULL ORDER BY id DESC")).toMatch(/^4\|[\d-]+T[\d:.]+Z\|not_json$/);
    // Forwarding's tables are in every log; empty without a destination.
    expect(inspect(path, "SELECT name, discovered_through, delivered FROM forward_destinations")).toBe("");
    expect(inspect(path, "SELECT destination, event_id, attempts, last_error FROM forward_dead_letters ORDER BY event_id")).toBe("");
    expect(
      inspect(path, "SELECT json_extract(payload, '$.installation.organization.id') AS org, sum(json_extract(payload, '$.transaction.amount')) FROM events WHERE event = 'warehouseTransaction' GROUP BY org"),
    ).toBe("org-a|3\norg-b|3");
    const viaKeys = "SELECT e.id, e.received_at FROM event_keys k JOIN events e ON e.id = k.event_id WHERE k.organization_id = 'org-a' AND k.event = 'warehouseTransaction' ORDER BY k.event_id DESC LIMIT 10";
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && inspect(path, viaKeys) === "") await Bun.sleep(20); // copied behind the log
    expect(inspect(path, viaKeys)).toMatch(/^2\|\d{4}-\d\d-\d\dT[\d:.]+Z$/);
    expect(inspect(path, "SELECT json_extract(headers, '$.\"x-icr-signature-256\"') LIKE 'sha256=%' FROM deliveries LIMIT 1")).toBe("1");
    // These bodies were all in ICR's canonical form (kept as NULL, the payload rebuilds them) but
    // the unparsed one's, kept verbatim.
    expect(inspect(path, "SELECT count(*) FROM deliveries WHERE raw_body IS NOT NULL")).toBe("1");
    expect(inspect(path, "SELECT json_valid(payload) FROM deliveries JOIN events ON events.id = event_id LIMIT 1")).toBe("1");
  });
});
