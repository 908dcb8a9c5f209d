// event_keys, the filter index written behind the log: queries that cross its last row, the copy
// step on its own (two writers, a backlog), and the receiver keeping it up.
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { runChecks } from "../src/log/check.ts";
import { batchAppender, type AcceptedDelivery } from "../src/log/append.ts";
import { closeDatabase, openDatabase, openDatabaseReadOnly, type EventLogDatabase } from "../src/log/database.ts";
import { eventKeysCopier, KEYS_PER_STEP } from "../src/log/event-keys.ts";
import { bundledMigrations, migrate } from "../src/log/migrations.ts";
import { EventQueries, type EventFilter } from "../src/log/query.ts";
import { requestReplay } from "../src/forward/progress.ts";
import { acceptedDelivery } from "./support/accepted-delivery.ts";
import { indexesOf } from "./support/indexes.ts";
import { logAfterQuickStop, signedDelivery, startServer, tempDir } from "./support/server.ts";
import { sqlite3 } from "./support/sqlite-shell.ts";

const EVENTS = ["installed", "warehouseTransaction", "suspended"];
const ORGANIZATIONS = ["org-a", "org-b", null];

function delivery(n: number): AcceptedDelivery {
  return acceptedDelivery(JSON.stringify({ event: EVENTS[n % 3], n }), {
    event: EVENTS[n % 3]!,
    installationId: n % 5 === 0 ? null : `inst-${n % 4}`,
    organizationId: ORGANIZATIONS[Math.floor(n / 3) % 3]!,
    receivedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
  });
}

function logWith(count: number): EventLogDatabase {
  const log = openDatabase(join(tempDir(), "log.db"));
  const append = batchAppender(log);
  for (let n = 0; n < count; n += 500) append(Array.from({ length: Math.min(500, count - n) }, (_, i) => delivery(n + i)));
  return log;
}

/** Copies the keys of the events up to `lastId` only, as if the writer were behind. */
const copyKeysUpTo = (log: EventLogDatabase, lastId: number) =>
  log.sqlite.run(
    "INSERT INTO event_keys (event_id, event, organization_id, installation_id, received_at) SELECT id, event, organization_id, installation_id, received_at FROM events WHERE id <= ?",
    [lastId],
  );

/** Copies the keys of the events up to `lastId` as a receiver older than 0.8.0 does: without their time. */
const copyKeysWithoutTimeUpTo = (log: EventLogDatabase, lastId: number) =>
  log.sqlite.run(
    "INSERT INTO event_keys (event_id, event, organization_id, installation_id) SELECT id, event, organization_id, installation_id FROM events WHERE id <= ?",
    [lastId],
  );

const eventKeysCheck = (log: EventLogDatabase) => runChecks(log.path, log).checks.find((c) => c.name === "event-keys")!;

const keyRows = (log: EventLogDatabase) => log.sqlite.query<{ n: number; last: number | null }, []>("SELECT count(*) AS n, max(event_id) AS last FROM event_keys").get()!;

/** Every id a filter lists, page by page, following `next`. */
function allPages(queries: EventQueries, filter: Omit<EventFilter, "limit" | "after">, limit: number): number[] {
  const ids: number[] = [];
  let after: number | undefined;
  for (;;) {
    const page = queries.list({ ...filter, limit, after });
    ids.push(...page.events.map((e) => e.id));
    if (page.next === null) return ids;
    after = Number(page.next);
  }
}

/**
 * The statements on event_keys that EventQueries.list really prepares for each filter in each order,
 * planned as SQLite would run them.
 */
function keyedListPlans(log: EventLogDatabase, filters: Omit<EventFilter, "limit" | "after" | "order">[]): string[] {
  const prepared: string[] = [];
  const prepare = log.sqlite.prepare.bind(log.sqlite);
  log.sqlite.prepare = ((text: string, ...rest: never[]) => (prepared.push(text), prepare(text, ...rest))) as typeof log.sqlite.prepare;
  const queries = new EventQueries(log.db);
  for (const filter of filters) for (const order of ["asc", "desc"] as const) queries.list({ ...filter, order, limit: 2 });
  log.sqlite.prepare = prepare;
  return prepared
    .filter((text) => text.includes('from "event_keys" inner join'))
    .map((text) => log.sqlite.query<{ detail: string }, []>(`EXPLAIN QUERY PLAN ${text}`).all().map((r) => r.detail).join(" | "));
}

describe("filtered queries across the last copied row", () => {
  test("list every match once, in order, whether its keys are copied or not", () => {
    const log = logWith(60);
    // On both sides of the last copied row: unparsed events, and imported ones with older times.
    const append = batchAppender(log);
    const mixed = (from: number) =>
      Array.from({ length: 6 }, (_, i) =>
        i % 2 === 0
          ? acceptedDelivery(`not json ${from + i}`, { event: null, unparsedReason: "not_json", receivedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, from + i)).toISOString() })
          : acceptedDelivery(JSON.stringify({ event: "installed", imported: from + i }), { receivedAt: new Date(Date.UTC(2025, 11, 31, 23, 59, from + i)).toISOString() }),
      );
    append(mixed(0));
    copyKeysUpTo(log, 63);
    append(mixed(6));
    const queries = new EventQueries(log.db);
    const filters: Omit<EventFilter, "limit" | "after" | "order">[] = [
      { event: "installed" },
      { organization: "org-b" },
      { event: "suspended", organization: "org-a" },
      { installation: "inst-1" },
      { installation: "inst-3", event: "warehouseTransaction" },
      { event: "suspended", since: "2026-01-01T00:00:10.000Z", until: "2026-01-01T00:00:40.000Z" },
      { since: "2026-01-01T00:00:10.000Z" },
      { until: "2026-01-01T00:00:31.000Z" },
      { since: "2026-01-01T00:00:20.000Z", until: "2026-01-01T00:00:26.000Z" },
      { organization: "org-a", since: "2026-01-01T00:00:30.000Z" },
      { until: "2026-01-01T00:00:00.000Z" },
      { event: "installed", until: "2026-01-01T00:00:05.000Z" },
      { parsed: false, since: "2026-01-01T00:00:02.000Z" },
      { parsed: true, until: "2026-01-01T00:00:04.000Z" },
      { event: "no-such-event" },
    ];
    for (const filter of filters) {
      const where: string[] = [];
      if (filter.event !== undefined) where.push(`event = '${filter.event}'`);
      if (filter.organization !== undefined) where.push(`organization_id = '${filter.organization}'`);
      if (filter.installation !== undefined) where.push(`installation_id = '${filter.installation}'`);
      if (filter.since !== undefined) where.push(`received_at >= '${filter.since}'`);
      if (filter.until !== undefined) where.push(`received_at < '${filter.until}'`);
      if (filter.parsed !== undefined) where.push(filter.parsed ? "event IS NOT NULL" : "event IS NULL");
      const expected = log.sqlite.query<{ id: number }, []>(`SELECT id FROM events WHERE ${where.join(" AND ")} ORDER BY id`).all().map((r) => r.id);
      for (const limit of [1, 3, 100]) {
        expect(allPages(queries, { ...filter, order: "asc" }, limit)).toEqual(expected);
        expect(allPages(queries, { ...filter, order: "desc" }, limit)).toEqual([...expected].reverse());
      }
    }
    closeDatabase(log);
  });

  test("every combination of key filters reads event_keys through an index, with no sort", () => {
    const log = logWith(10);
    copyKeysUpTo(log, 5);
    const keys = { event: "installed", organization: "org-a", installation: "inst-1" };
    const combinations = [["event"], ["organization"], ["installation"], ["event", "organization"], ["event", "installation"], ["organization", "installation"], ["event", "organization", "installation"]] as const;
    const plans = keyedListPlans(log, combinations.map((combination) => Object.fromEntries(combination.map((key) => [key, keys[key]]))));
    expect(plans).toHaveLength(combinations.length * 2);
    for (const plan of plans) {
      expect(plan).toMatch(/^SEARCH event_keys USING (COVERING )?INDEX event_keys_\w+ \(\w+=\?.*rowid[<>]\?\)/);
      expect(plan).toContain("SEARCH events USING INTEGER PRIMARY KEY (rowid=?)");
      expect(plan).not.toContain("TEMP B-TREE");
    }
    // An organization and an event together use the index made for the pair.
    expect(plans[6]).toContain("INDEX event_keys_organization_event (organization_id=? AND event=? AND rowid");
    closeDatabase(log);
  });

  test("a replay by time asks for each matching event once, whether its keys are copied or not", () => {
    const log = logWith(40);
    copyKeysUpTo(log, 23);
    const destinations = [
      { name: "all", url: "http://127.0.0.1:1/", events: null },
      { name: "some", url: "http://127.0.0.1:1/", events: ["installed", "suspended"] },
    ];
    const since = "2026-01-01T00:00:10.000Z";
    const until = "2026-01-01T00:00:35.000Z";
    const asked = requestReplay(log.sqlite, destinations, { since, until, event: "suspended" });
    const replays = log.sqlite.query<{ destination: string; event_id: number }, []>("SELECT destination, event_id FROM forward_replays ORDER BY destination, event_id").all();
    const expected = log.sqlite
      .query<{ id: number }, [string, string]>("SELECT id FROM events WHERE received_at >= ? AND received_at < ? AND event = 'suspended' ORDER BY id")
      .all(since, until)
      .map((r) => r.id);
    expect(expected.some((id) => id <= 23) && expected.some((id) => id > 23)).toBe(true);
    expect(replays).toEqual(["all", "some"].flatMap((destination) => expected.map((event_id) => ({ destination, event_id }))));
    expect(asked).toBe(2 * expected.length);
    closeDatabase(log);
  });

  test("a time filter reads event_keys through its index on received_at, or in id order, then each event by id", () => {
    const log = logWith(10);
    copyKeysUpTo(log, 5);
    const plans = keyedListPlans(log, [{ since: "2026-01-01T00:00:02.000Z" }, { until: "2026-01-01T00:00:04.000Z" }, { since: "2026-01-01T00:00:02.000Z", until: "2026-01-01T00:00:04.000Z" }]);
    // Descending, event_keys is read only when the newest events do not fill the page: not for `since` alone.
    expect(plans).toHaveLength(5);
    for (const plan of plans) {
      expect(plan).toMatch(/^(SEARCH event_keys USING (COVERING )?INDEX event_keys_received_at \(received_at[<>]\?|SEARCH event_keys USING INTEGER PRIMARY KEY \(rowid[<>]\?)/);
      expect(plan).toContain("SEARCH events USING INTEGER PRIMARY KEY (rowid=?)");
    }
    closeDatabase(log);
  });
});

describe("copying keys", () => {
  test("a row a receiver older than 0.8.0 copies without its time (a hand-over) gets it as it is inserted", () => {
    const log = logWith(30);
    // What a 0.7.0 writer's copy step inserts: every column it knows of.
    copyKeysWithoutTimeUpTo(log, 12);
    expect(log.sqlite.query<{ n: number }, []>("SELECT count(*) AS n FROM event_keys WHERE received_at IS NULL").get()!.n).toBe(0);
    expect(eventKeysCheck(log)).toMatchObject({ ok: true, data: { copied: 12, behind: 18, wrong: 0, missing: 0 } });
    // Found by time before any copy step of this release has run, by a page and by a replay.
    const queries = new EventQueries(log.db);
    expect(allPages(queries, { until: "2026-01-01T00:00:03.000Z", order: "asc" }, 2)).toEqual([1, 2, 3]);
    expect(requestReplay(log.sqlite, [{ name: "app", url: "http://127.0.0.1:1/", events: null }], { since: "2026-01-01T00:00:00.000Z", until: "2026-01-01T00:00:03.000Z" })).toBe(3);
    expect(eventKeysCopier(log)()).toBe(18);
    expect(eventKeysCheck(log)).toMatchObject({ ok: true, data: { copied: 30, behind: 0, wrong: 0, missing: 0 } });
    closeDatabase(log);
  });

  test("in id order, at most one step's worth at a time, never a row twice from two connections", () => {
    const log = logWith(KEYS_PER_STEP + 700);
    const other = openDatabase(log.path);
    const copy = eventKeysCopier(log);
    const copyElsewhere = eventKeysCopier(other);
    expect(copy()).toBe(KEYS_PER_STEP);
    expect(keyRows(log)).toEqual({ n: KEYS_PER_STEP, last: KEYS_PER_STEP });
    expect(copyElsewhere()).toBe(700);
    expect(copy()).toBe(0);
    expect(keyRows(log)).toEqual({ n: KEYS_PER_STEP + 700, last: KEYS_PER_STEP + 700 });
    expect(eventKeysCheck(log)).toMatchObject({ ok: true, data: { copied: KEYS_PER_STEP + 700, behind: 0, wrong: 0, missing: 0 } });
    closeDatabase(other);
    closeDatabase(log);
  });
});

describe("the receiver keeps event_keys up", () => {
  test("finds a delivery by its keys as soon as it is answered, and copies them soon after", async () => {
    const server = await startServer();
    const path = server.config.databasePath;
    const ids: number[] = [];
    for (let n = 0; n < 5; n++) {
      const { body, headers } = signedDelivery({ event: "installed", installation: { id: `inst-keys-${n}`, organization: { id: "org-keys" } } });
      const response = await server.post(body, headers);
      expect(response.status).toBe(202);
      const { id } = (await response.json()) as { id: number };
      ids.push(id);
      // Answered before the writer has copied its keys: found through events itself.
      const listed = await server.query(`/events?installation=inst-keys-${n}`);
      expect(((await listed.json()) as { events: { id: number }[] }).events.map((e) => e.id)).toEqual([id]);
    }
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && Number(sqlite3(path, "SELECT count(*) FROM event_keys", ["-readonly"]).trim()) < 5) await Bun.sleep(20);
    expect(sqlite3(path, "SELECT event_id, organization_id FROM event_keys ORDER BY event_id", ["-readonly"]).trim().split("\n")).toEqual(
      ids.map((id) => `${id}|org-keys`),
    );

    await server.stop();
  });

  test("a receiver stopping before the delay is up copies what is left on the way out", async () => {
    const database = openDatabaseReadOnly(await logAfterQuickStop(4));
    expect(keyRows(database)).toEqual({ n: 4, last: 4 });
    database.sqlite.close();
  });
});

describe("check: event-keys", () => {
  test("passes behind the log, fails on a key row that disagrees with its event or a gap", () => {
    const log = logWith(30);
    copyKeysUpTo(log, 20);
    expect(eventKeysCheck(log)).toMatchObject({ ok: true, data: { copied: 20, behind: 10, wrong: 0, missing: 0 } });

    // event_keys has no triggers (it can be rebuilt): sqlite3 can change it, and check notices.
    sqlite3(log.path, "UPDATE event_keys SET organization_id = 'forged' WHERE event_id = 7; DELETE FROM event_keys WHERE event_id = 12;");
    const broken = eventKeysCheck(log);
    expect(broken).toMatchObject({ ok: false, data: { copied: 19, behind: 10, wrong: 1, missing: 1 } });
    expect(broken.problems).toEqual([
      "1 row of event_keys disagree with their event (rebuild: see the README)",
      "1 event up to id 20 have no row in event_keys",
    ]);

    // A time is a key like the others.
    sqlite3(log.path, "UPDATE event_keys SET organization_id = (SELECT organization_id FROM events WHERE id = 7) WHERE event_id = 7; UPDATE event_keys SET received_at = '2020-01-01T00:00:00.000Z' WHERE event_id = 3;");
    expect(eventKeysCheck(log)).toMatchObject({ ok: false, data: { wrong: 1, missing: 1 } });

    // The README's rebuild: empty it; the receiver copies every event again.
    sqlite3(log.path, "DELETE FROM event_keys;");
    while (eventKeysCopier(log)() > 0);
    expect(eventKeysCheck(log)).toMatchObject({ ok: true, data: { copied: 30, behind: 0 } });
    closeDatabase(log);
  });
});

describe("upgrading a log written before 0003", () => {
  test("copies the keys of every event already in it", () => {
    const path = join(tempDir(), "old.db");
    const old = new Database(path, { strict: true });
    migrate(old, bundledMigrations().slice(0, 3));
    // Rows in that release's columns (the keys are all this test reads of them).
    const insert = old.prepare(
      "INSERT INTO events (id, received_at, event, installation_id, organization_id, payload, payload_sha256, secret_label, envelope_mismatch, chain_hash) VALUES (?, ?, ?, ?, ?, ?, ?, 'default', 0, '')",
    );
    for (let n = 0; n < 40; n++) {
      const d = delivery(n);
      insert.run(n + 1, d.receivedAt, d.event, d.installationId, d.organizationId, d.payload, d.payloadSha256);
    }
    old.close();

    const log = openDatabase(path); // applies 0003 (and every later one)
    expect(keyRows(log)).toEqual({ n: 40, last: 40 });
    expect(eventKeysCheck(log)).toMatchObject({ ok: true, data: { copied: 40, behind: 0, wrong: 0, missing: 0 } });
    // From 0011 on, the commit writes no index of events but the one of unparsed events.
    expect(indexesOf(log.sqlite, "events")).toEqual(["events_unparsed"]);
    closeDatabase(log);
  });
});

describe("upgrading a log written before 0011", () => {
  test("every copied event's time moves into event_keys, and events keeps only the index of unparsed events", () => {
    const path = join(tempDir(), "old.db");
    const old = openDatabase(path, { migrate: false });
    migrate(old.sqlite, bundledMigrations().slice(0, 11));
    const append = batchAppender(old);
    append(Array.from({ length: 30 }, (_, n) => delivery(n)));
    copyKeysWithoutTimeUpTo(old, 20);
    closeDatabase(old);

    const log = openDatabase(path); // applies 0011
    const times = log.sqlite.query<{ same: number; copied: number }, []>(
      "SELECT sum(k.received_at = e.received_at) AS same, count(*) AS copied FROM event_keys k JOIN events e ON e.id = k.event_id",
    );
    expect(times.get()).toEqual({ same: 20, copied: 20 });
    expect(eventKeysCheck(log)).toMatchObject({ ok: true, data: { copied: 20, behind: 10, wrong: 0 } });
    expect(indexesOf(log.sqlite, "events")).toEqual(["events_unparsed"]);
    expect(indexesOf(log.sqlite, "event_keys")).toContain("event_keys_received_at");
    const queries = new EventQueries(log.db);
    expect(allPages(queries, { since: "2026-01-01T00:00:15.000Z", until: "2026-01-01T00:00:25.000Z", order: "asc" }, 3)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    closeDatabase(log);
  });
});
