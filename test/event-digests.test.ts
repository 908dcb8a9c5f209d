// How the writer tells a repeat from a new event without a unique index, over the whole log: the
// copied part through event_digests, the tail in memory; kept in step with the log (another
// writer's rows, a batch that rolled back, a restart, a crash, a rebuilt event_digests), and the
// copy itself: sorted batches written in steps, safe to repeat, from two writers at once.
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { batchAppender } from "../src/log/append.ts";
import { runChecks } from "../src/log/check.ts";
import { closeDatabase, openDatabase, type EventLogDatabase } from "../src/log/database.ts";
import {
  COPIED_EVENT,
  copyDigestBacklog,
  DIGESTS_PER_BATCH,
  DIGESTS_PER_STEP,
  DIGESTS_QUIET_MS,
  eventDigestsCopier,
  MAX_TAIL_AT_START,
} from "../src/log/event-digests.ts";
import { deliveryImporter } from "../src/log/import.ts";
import { bundledMigrations, migrate } from "../src/log/migrations.ts";
import { acceptedDelivery } from "./support/accepted-delivery.ts";
import { logAfterQuickStop, signedDelivery, startServer, tempDir } from "./support/server.ts";
import { sqlite3 } from "./support/sqlite-shell.ts";

const delivery = (payload: string, remoteAddress = "127.0.0.1") => acceptedDelivery(payload, { remoteAddress });

describe("the appender's duplicate detection", () => {
  test("sees the rows another writer appended, and the log's rows after a restart", () => {
    const path = join(tempDir(), "two-writers.db");
    const first = openDatabase(path);
    const second = openDatabase(path);
    const appendFirst = batchAppender(first);
    const appendSecond = batchAppender(second);
    appendSecond.warm(); // as the writer thread does on start-up: the index is built from an empty log
    expect(appendFirst([delivery('{"n":1}'), delivery('{"n":2}')])).toEqual([
      { id: 1, duplicate: false },
      { id: 2, duplicate: false },
    ]);
    // As during a hand-over: the second receiver's index was built before these rows existed.
    expect(appendSecond([delivery('{"n":2}'), delivery('{"n":3}'), delivery('{"n":3}')])).toEqual([
      { id: 2, duplicate: true },
      { id: 3, duplicate: false },
      { id: 3, duplicate: true },
    ]);
    expect(appendFirst([delivery('{"n":3}')])).toEqual([{ id: 3, duplicate: true }]);
    closeDatabase(second);
    closeDatabase(first);

    const reopened = openDatabase(path);
    expect(batchAppender(reopened)([delivery('{"n":1}'), delivery('{"n":4}')])).toEqual([
      { id: 1, duplicate: true },
      { id: 4, duplicate: false },
    ]);
    closeDatabase(reopened);
  });

  test("forgets the digests of a batch that rolled back, and sees what another writer stored since", () => {
    const path = join(tempDir(), "rollback.db");
    const log = openDatabase(path);
    // A stand-in for a failure halfway through a batch (a full disk, say).
    log.sqlite.run(
      "CREATE TRIGGER fail_on_request BEFORE INSERT ON deliveries WHEN NEW.remote_address = 'fail' BEGIN SELECT RAISE(ABORT, 'injected'); END",
    );
    const append = batchAppender(log);
    expect(append([delivery('{"n":1}')])).toEqual([{ id: 1, duplicate: false }]);
    expect(() => append([delivery('{"n":2}'), delivery('{"n":3}', "fail")])).toThrow("injected");
    // Another receiver then stores rows under the very ids the failed batch had used.
    const other = openDatabase(path);
    expect(batchAppender(other)([delivery('{"n":5}'), delivery('{"n":6}'), delivery('{"n":7}')])).toEqual([
      { id: 2, duplicate: false },
      { id: 3, duplicate: false },
      { id: 4, duplicate: false },
    ]);
    closeDatabase(other);
    // {"n":2} was never stored: a new event now. The other receiver's rows and {"n":1} are repeats.
    expect(append([delivery('{"n":2}'), delivery('{"n":5}'), delivery('{"n":6}'), delivery('{"n":1}')])).toEqual([
      { id: 5, duplicate: false },
      { id: 2, duplicate: true },
      { id: 3, duplicate: true },
      { id: 1, duplicate: true },
    ]);
    closeDatabase(log);
  });
});

/** Copies every digest still behind, as the writer does when it stops. Returns the steps taken. */
const copyAll = (log: EventLogDatabase) => {
  const copier = eventDigestsCopier(log);
  let steps = 1;
  while (copier.step(true)) steps++;
  return steps;
};

const numbered = (from: number, count: number) => Array.from({ length: count }, (_, i) => delivery(`{"n":${from + i}}`));

/** Appends `count` new events in batches of 5,000. */
const appendNumbered = (append: ReturnType<typeof batchAppender>, from: number, count: number) => {
  for (let n = from; n < from + count; n += 5000) append(numbered(n, Math.min(5000, from + count - n)));
};

const digestsCheck = (log: EventLogDatabase) => runChecks(log.path, log).checks.find((c) => c.name === "digests")!;

const copiedThrough = (log: EventLogDatabase) =>
  log.sqlite.query<{ through: number }, []>("SELECT through FROM event_digests_progress").get()?.through ?? 0;
const digestRows = (log: EventLogDatabase) => log.sqlite.query<{ n: number }, []>("SELECT count(*) AS n FROM event_digests").get()!.n;

describe("duplicates across the whole log", () => {
  test("in the copied part, in the tail and across both, after a batch and a restart", () => {
    const path = join(tempDir(), "whole-log.db");
    const log = openDatabase(path);
    const append = batchAppender(log);
    const total = DIGESTS_PER_BATCH + 100;
    appendNumbered(append, 1, total);
    copyAll(log);
    expect(copiedThrough(log)).toBe(total);
    // The tail holds what was appended since the last copy, not the log.
    append(numbered(total + 1, 10));
    expect(append.digests.held).toBe(10);
    expect(append([delivery('{"n":1}'), delivery(`{"n":${total + 5}}`), delivery(`{"n":${total - 3}}`), delivery('{"n":"new"}')])).toEqual([
      { id: 1, duplicate: true },
      { id: total + 5, duplicate: true },
      { id: total - 3, duplicate: true },
      { id: total + 11, duplicate: false },
    ]);
    expect(append.digests.held).toBe(11);
    closeDatabase(log);

    const reopened = openDatabase(path);
    const again = batchAppender(reopened);
    again.warm();
    expect(again.digests.held).toBe(11);
    expect(again([delivery('{"n":1}'), delivery('{"n":"new"}'), delivery(`{"n":${DIGESTS_PER_STEP * 3}}`)])).toEqual([
      { id: 1, duplicate: true },
      { id: total + 11, duplicate: true },
      { id: DIGESTS_PER_STEP * 3, duplicate: true },
    ]);
    copyAll(reopened);
    expect(again([delivery('{"n":"new"}')])).toEqual([{ id: total + 11, duplicate: true }]);
    expect(again.digests.held).toBe(0);
    expect(digestsCheck(reopened)).toMatchObject({ ok: true, data: { copied: total + 11, behind: 0, missing: 0, wrong: 0 } });
    closeDatabase(reopened);
  });

  test("a digest whose first 8 bytes another event shares is a new event: the full digest decides", () => {
    const log = openDatabase(join(tempDir(), "prefix.db"));
    const append = batchAppender(log);
    const a = delivery('{"n":"a"}');
    const twin = { ...delivery('{"n":"twin"}'), payloadSha256: `${a.payloadSha256.slice(0, 16)}${"0".repeat(48)}` };
    append([a]);
    copyAll(log);
    expect(append([twin, a])).toEqual([
      { id: 2, duplicate: false },
      { id: 1, duplicate: true },
    ]);
    copyAll(log);
    expect(append([twin, a])).toEqual([
      { id: 2, duplicate: true },
      { id: 1, duplicate: true },
    ]);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 2, missing: 0, wrong: 0, repeatedPayloads: 0 } });
    closeDatabase(log);
  });

  test("two events of the tail under one key of its map (the first 52 bits) are both found", () => {
    const log = openDatabase(join(tempDir(), "tail-key.db"));
    const append = batchAppender(log);
    const a = delivery('{"n":"a"}');
    const b = { ...delivery('{"n":"b"}'), payloadSha256: `${a.payloadSha256.slice(0, 13)}${"f".repeat(51)}` };
    const c = { ...delivery('{"n":"c"}'), payloadSha256: `${a.payloadSha256.slice(0, 13)}${"e".repeat(51)}` };
    expect(append([a, b])).toEqual([
      { id: 1, duplicate: false },
      { id: 2, duplicate: false },
    ]);
    expect(append([b, a, c, c])).toEqual([
      { id: 2, duplicate: true },
      { id: 1, duplicate: true },
      { id: 3, duplicate: false },
      { id: 3, duplicate: true },
    ]);
    expect(append.digests.held).toBe(3);
    // Read back from the log (a restart), then copied away.
    append.digests.forget();
    expect(append([c, b])).toEqual([
      { id: 3, duplicate: true },
      { id: 2, duplicate: true },
    ]);
    copyAll(log);
    expect(append([a, b, c])).toEqual([
      { id: 1, duplicate: true },
      { id: 2, duplicate: true },
      { id: 3, duplicate: true },
    ]);
    expect(append.digests.held).toBe(0);
    closeDatabase(log);
  });

  test("a crash with an uncopied tail: the next writer reads the tail back, and repeats are found in it", () => {
    const path = join(tempDir(), "crash.db");
    const log = openDatabase(path);
    const append = batchAppender(log);
    append(numbered(1, 3000));
    copyAll(log);
    append(numbered(3001, 2000));
    // No copy, no checkpoint: the process dies with the WAL as it is.
    log.sqlite.close();

    const after = openDatabase(path);
    const next = batchAppender(after);
    next.warm();
    expect(next.digests.held).toBe(2000);
    expect(next([delivery('{"n":4999}'), delivery('{"n":2}'), delivery('{"n":5001}')])).toEqual([
      { id: 4999, duplicate: true },
      { id: 2, duplicate: true },
      { id: 5001, duplicate: false },
    ]);
    copyAll(after);
    expect(copiedThrough(after)).toBe(5001);
    expect(digestsCheck(after)).toMatchObject({ ok: true });
    closeDatabase(after);
  });

  test("event_digests emptied to be rebuilt while a writer runs: the writer reads its tail again", () => {
    const log = openDatabase(join(tempDir(), "rebuild.db"));
    const append = batchAppender(log);
    append(numbered(1, 50));
    copyAll(log);
    append(numbered(51, 1));
    expect(append.digests.held).toBe(1);
    // Emptied by hand, its progress row left as it was: the delete itself sets it back.
    log.sqlite.run("DELETE FROM event_digests");
    expect(copiedThrough(log)).toBe(0);
    expect(append([delivery('{"n":7}')])).toEqual([{ id: 7, duplicate: true }]);
    expect(append.digests.held).toBe(51);
    copyAll(log);
    expect(digestRows(log)).toBe(51);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 51 } });
    closeDatabase(log);
  });

  test("a log far behind (event_digests emptied to be rebuilt) is copied, a batch at a time, before the first commit", () => {
    const log = openDatabase(join(tempDir(), "far-behind.db"));
    const total = MAX_TAIL_AT_START + DIGESTS_PER_BATCH + 5;
    appendNumbered(batchAppender(log), 1, total);
    copyAll(log);
    log.sqlite.run("DELETE FROM event_digests WHERE event_id > 100");
    log.sqlite.run("UPDATE event_digests_progress SET through = 100");
    copyDigestBacklog(eventDigestsCopier(log));
    expect(copiedThrough(log)).toBe(100 + DIGESTS_PER_BATCH);
    const writer = batchAppender(log);
    writer.warm();
    expect(writer.digests.held).toBe(total - 100 - DIGESTS_PER_BATCH);
    expect(writer.digests.held).toBeLessThanOrEqual(MAX_TAIL_AT_START);
    expect(writer([delivery('{"n":1}'), delivery(`{"n":${total}}`), delivery('{"n":200}')])).toEqual([
      { id: 1, duplicate: true },
      { id: total, duplicate: true },
      { id: 200, duplicate: true },
    ]);
    copyAll(log);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: total, behind: 0, missing: 0, wrong: 0 } });
    closeDatabase(log);
  });

  test("a repeat is found through the digest index and confirmed through the event's row, never by a scan", () => {
    const log = openDatabase(join(tempDir(), "plan.db"));
    const plan = log.sqlite
      .query<{ detail: string }, []>(`EXPLAIN QUERY PLAN ${COPIED_EVENT}`)
      .all()
      .map((row) => row.detail);
    expect(plan).toEqual([
      "SEARCH d USING COVERING INDEX event_digests_digest_event (digest=?)",
      "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)",
    ]);
    closeDatabase(log);
  });
});

describe("copying digests", () => {
  /** What each write step added, and the transactions it took, traced from the connection. */
  function traced(log: EventLogDatabase) {
    const copier = eventDigestsCopier(log);
    const rowsAfterEachStep: number[] = [];
    const throughAfterEachStep: number[] = [];
    return {
      copier,
      rowsAfterEachStep,
      throughAfterEachStep,
      step(all = false) {
        const more = copier.step(all);
        rowsAfterEachStep.push(digestRows(log));
        throughAfterEachStep.push(copiedThrough(log));
        return more;
      },
    };
  }

  test("a batch is gathered and written in steps of at most DIGESTS_PER_STEP rows, sorted, and counts as copied only at its end", () => {
    const log = openDatabase(join(tempDir(), "steps.db"));
    const count = 3 * DIGESTS_PER_STEP + 17;
    appendNumbered(batchAppender(log), 1, count);
    const { step, rowsAfterEachStep, throughAfterEachStep } = traced(log);
    while (step());
    // Four steps gather (nothing written yet), four write; the last one records the batch.
    expect(rowsAfterEachStep).toEqual([0, 0, 0, 0, DIGESTS_PER_STEP, 2 * DIGESTS_PER_STEP, 3 * DIGESTS_PER_STEP, count]);
    expect(throughAfterEachStep).toEqual([0, 0, 0, 0, 0, 0, 0, count]);
    // Written in digest order: the table's rows (rowid order) come out sorted.
    const digests = log.sqlite.query<{ d: string }, []>("SELECT hex(digest) AS d FROM event_digests ORDER BY rowid").all().map((r) => r.d);
    expect(digests).toEqual([...digests].sort());
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: count, behind: 0 } });
    closeDatabase(log);
  });

  test("a batch is at most DIGESTS_PER_BATCH events; the next follows only when a batch's worth waits, or when asked for all", () => {
    const log = openDatabase(join(tempDir(), "batches.db"));
    const append = batchAppender(log);
    appendNumbered(append, 1, 2 * DIGESTS_PER_BATCH + 10);
    const copier = eventDigestsCopier(log);
    while (copier.step());
    // Two whole batches, and then not the 10 left: they wait for a quiet moment (all = true).
    expect(copiedThrough(log)).toBe(2 * DIGESTS_PER_BATCH);
    expect(copier.behind()).toBe(10);
    while (copier.step(true));
    expect(copier.behind()).toBe(0);
    expect(copier.step(true)).toBe(false);
    closeDatabase(log);
  });

  test("a batch cut short by a crash is copied again whole by the next writer, without a row twice", () => {
    const path = join(tempDir(), "halfway.db");
    const log = openDatabase(path);
    appendNumbered(batchAppender(log), 1, 3 * DIGESTS_PER_STEP);
    const copier = eventDigestsCopier(log);
    for (let i = 0; i < 5; i++) copier.step(); // three gathered, two written
    expect(digestRows(log)).toBe(2 * DIGESTS_PER_STEP);
    log.sqlite.close();

    const after = openDatabase(path);
    expect(copiedThrough(after)).toBe(0);
    const writer = batchAppender(after);
    writer.warm();
    expect(writer.digests.held).toBe(3 * DIGESTS_PER_STEP);
    expect(writer([delivery('{"n":1}')])).toEqual([{ id: 1, duplicate: true }]);
    expect(digestsCheck(after)).toMatchObject({ ok: true, data: { copied: 0, behind: 3 * DIGESTS_PER_STEP } });
    copyAll(after);
    expect(digestRows(after)).toBe(3 * DIGESTS_PER_STEP);
    expect(digestsCheck(after)).toMatchObject({ ok: true, data: { copied: 3 * DIGESTS_PER_STEP, missing: 0, wrong: 0 } });
    closeDatabase(after);
  });

  test("a failed write step is written again from where it was", () => {
    const log = openDatabase(join(tempDir(), "failed-step.db"));
    appendNumbered(batchAppender(log), 1, 2 * DIGESTS_PER_STEP);
    const copier = eventDigestsCopier(log);
    copier.step();
    copier.step();
    const blocker = new Database(log.path);
    blocker.run("PRAGMA busy_timeout = 0");
    blocker.run("BEGIN IMMEDIATE");
    log.sqlite.run("PRAGMA busy_timeout = 0");
    expect(() => copier.step()).toThrow(/locked|busy/);
    blocker.run("ROLLBACK");
    blocker.close();
    while (copier.step());
    expect(digestRows(log)).toBe(2 * DIGESTS_PER_STEP);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 2 * DIGESTS_PER_STEP } });
    closeDatabase(log);
  });

  test("a batch under way when event_digests is emptied is not recorded: the copy begins again, and repeats are found", () => {
    const log = openDatabase(join(tempDir(), "emptied-midway.db"));
    const append = batchAppender(log);
    appendNumbered(append, 1, 100);
    copyAll(log);
    appendNumbered(append, 101, 2 * DIGESTS_PER_STEP);
    const copier = eventDigestsCopier(log);
    for (let i = 0; i < 3; i++) copier.step(true); // gathered, one step written
    log.sqlite.run("DELETE FROM event_digests");
    while (copier.step(true));
    expect(copiedThrough(log)).toBe(100 + 2 * DIGESTS_PER_STEP);
    expect(digestRows(log)).toBe(100 + 2 * DIGESTS_PER_STEP);
    expect(append([delivery('{"n":5}'), delivery('{"n":150}')])).toEqual([
      { id: 5, duplicate: true },
      { id: 150, duplicate: true },
    ]);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { missing: 0, wrong: 0 } });
    closeDatabase(log);
  });

  test("a batch's last step that fails after its writes is rolled back whole and written again", () => {
    const log = openDatabase(join(tempDir(), "last-step.db"));
    appendNumbered(batchAppender(log), 1, DIGESTS_PER_STEP + 10);
    // After the copier: it sets temp_store, which drops the connection's temporary objects.
    const copier = eventDigestsCopier(log);
    log.sqlite.run("CREATE TEMP TABLE failures (n INTEGER)");
    log.sqlite.run(
      "CREATE TEMP TRIGGER fail_once BEFORE UPDATE ON main.event_digests_progress WHEN (SELECT count(*) FROM temp.failures) = 0 BEGIN SELECT RAISE(ABORT, 'injected'); END",
    );
    copier.step();
    copier.step();
    copier.step(); // the first write step
    expect(() => copier.step()).toThrow("injected");
    expect(copiedThrough(log)).toBe(0);
    log.sqlite.run("INSERT INTO temp.failures VALUES (1)");
    while (copier.step());
    expect(copiedThrough(log)).toBe(DIGESTS_PER_STEP + 10);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: DIGESTS_PER_STEP + 10, missing: 0, wrong: 0 } });
    closeDatabase(log);
  });

  test("two writers copying the same events step by step, interleaved (a hand-over), add each row once", () => {
    const log = openDatabase(join(tempDir(), "two-copiers.db"));
    const other = openDatabase(log.path);
    const append = batchAppender(log);
    appendNumbered(append, 1, 2 * DIGESTS_PER_STEP + 5);
    const first = eventDigestsCopier(log);
    const second = eventDigestsCopier(other);
    first.step();
    second.step();
    first.step();
    append(numbered(100_000, 7)); // the second copier's batch will take these, the first's not
    let more = true;
    while (more) more = [second.step(true), first.step(true)].some(Boolean);
    expect(digestRows(log)).toBe(2 * DIGESTS_PER_STEP + 12);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 2 * DIGESTS_PER_STEP + 12, missing: 0, wrong: 0 } });
    closeDatabase(other);
    closeDatabase(log);
  });
});

describe("check: digests", () => {
  test("passes behind the log; reports a missing row, a wrong one, and payloads stored twice, copied or not", () => {
    const log = openDatabase(join(tempDir(), "check.db"));
    const append = batchAppender(log);
    append(numbered(1, 40));
    copyAll(log);
    append(numbered(41, 5));
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 40, behind: 5, missing: 0, wrong: 0, repeatedPayloads: 0 } });

    log.sqlite.run("UPDATE event_digests SET digest = unhex('00112233445566ff') WHERE event_id = 3");
    expect(digestsCheck(log)).toMatchObject({
      ok: false,
      data: { missing: 1, wrong: 1 },
      problems: ["1 event up to id 40 has no row in event_digests", "1 row of event_digests does not match an event's digest"],
    });
    log.sqlite.run("UPDATE event_digests SET digest = (SELECT unhex(substr(payload_sha256, 1, 16)) FROM events WHERE id = 3) WHERE event_id = 3");
    expect(digestsCheck(log)).toMatchObject({ ok: true });
    log.sqlite.run("INSERT INTO event_digests (digest, event_id) VALUES (unhex('00112233445566ff'), 999)");
    expect(digestsCheck(log)).toMatchObject({ ok: false, data: { missing: 0, wrong: 1 } });
    log.sqlite.run("DELETE FROM event_digests WHERE event_id = 999");

    // Payloads stored twice (the writer never does this): a copied one again in the tail, two in
    // the tail, and two copied ones.
    log.sqlite.run("DROP TRIGGER events_no_update");
    const sameAs = (id: number, other: number) =>
      log.sqlite.run("UPDATE events SET payload_sha256 = (SELECT payload_sha256 FROM events WHERE id = ?) WHERE id = ?", [other, id]);
    sameAs(44, 12);
    expect(digestsCheck(log)).toMatchObject({ ok: false, data: { repeatedPayloads: 1 }, problems: ["1 payload stored as more than one event"] });
    sameAs(45, 43);
    sameAs(20, 21);
    log.sqlite.run("UPDATE event_digests SET digest = (SELECT digest FROM event_digests WHERE event_id = 21) WHERE event_id = 20");
    expect(digestsCheck(log)).toMatchObject({ ok: false, data: { repeatedPayloads: 3, missing: 0, wrong: 0 } });
    closeDatabase(log);
  });
});

describe("upgrading", () => {
  /** A log at `migrations` with 60 events, the keys of the first 50 copied as that release did. */
  function oldLog(path: string, migrations: number, copyKeys: string) {
    const old = new Database(path, { strict: true });
    migrate(old, bundledMigrations().slice(0, migrations));
    const insert = old.prepare(
      "INSERT INTO events (id, received_at, event, payload, payload_sha256, secret_label, envelope_mismatch, chain_hash) VALUES (?, ?, 'installed', ?, ?, 'default', 0, '')",
    );
    for (let n = 1; n <= 60; n++) {
      const d = delivery(`{"n":${n}}`);
      insert.run(n, d.receivedAt, d.payload, d.payloadSha256);
    }
    old.run(copyKeys);
    old.close();
  }

  test("a log written before 0009: every copied event's digest reaches event_digests; the tail is copied afterwards", () => {
    const path = join(tempDir(), "old.db");
    oldLog(path, 9, "INSERT INTO event_keys SELECT id, event, organization_id, installation_id FROM events WHERE id <= 50");
    const log = openDatabase(path); // applies 0009 and 0010
    expect(digestRows(log)).toBe(50);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 50, behind: 10 } });
    const append = batchAppender(log);
    expect(append([delivery('{"n":1}'), delivery('{"n":55}')])).toEqual([
      { id: 1, duplicate: true },
      { id: 55, duplicate: true },
    ]);
    copyAll(log);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 60, behind: 0 } });
    closeDatabase(log);
  });

  test("a 0.5.0 log (before 0010): event_keys' digests move across up to its first row without one", () => {
    const path = join(tempDir(), "0.5.0.db");
    // 0.5.0 copied 50 with their digests; a 0.4.0 receiver beside it (a hand-over) 5 more without.
    oldLog(
      path,
      10,
      `INSERT INTO event_keys SELECT id, event, organization_id, installation_id, unhex(substr(payload_sha256, 1, 16)) FROM events WHERE id <= 50;
       INSERT INTO event_keys (event_id, event, organization_id, installation_id) SELECT id, event, organization_id, installation_id FROM events WHERE id > 50 AND id <= 55`,
    );
    const log = openDatabase(path);
    expect(copiedThrough(log)).toBe(50);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 50, behind: 10, missing: 0, wrong: 0 } });
    const append = batchAppender(log);
    expect(append([delivery('{"n":2}'), delivery('{"n":53}'), delivery('{"n":60}')])).toEqual([
      { id: 2, duplicate: true },
      { id: 53, duplicate: true },
      { id: 60, duplicate: true },
    ]);
    closeDatabase(log);
  });
});

describe("the receiver copies digests", () => {
  const progress = (path: string) => sqlite3(path, "SELECT coalesce((SELECT through FROM event_digests_progress), 0), (SELECT count(*) FROM event_digests)", ["-readonly"]).trim();

  test("once the log has been quiet for DIGESTS_QUIET_MS, and finds repeats before and after", async () => {
    const server = await startServer();
    const path = server.config.databasePath;
    const sent = Array.from({ length: 3 }, (_, n) => signedDelivery({ event: "installed", installation: { id: `inst-digests-${n}` } }));
    for (const { body, headers } of sent) expect((await server.post(body, headers)).status).toBe(202);
    // The first repeat is found in the writer's tail.
    const repeat = await server.post(sent[0]!.body, sent[0]!.headers);
    expect(await repeat.json()).toMatchObject({ id: 1, duplicate: true });
    expect(progress(path)).toBe("0|0");
    const deadline = Date.now() + DIGESTS_QUIET_MS * 10;
    while (Date.now() < deadline && progress(path) !== "3|3") await Bun.sleep(50);
    expect(progress(path)).toBe("3|3");
    // And now through event_digests.
    const again = await server.post(sent[2]!.body, sent[2]!.headers);
    expect(await again.json()).toMatchObject({ id: 3, duplicate: true });
    await server.stop();
  });

  test("a receiver stopping before the log is quiet copies what is left on the way out", async () => {
    expect(progress(await logAfterQuickStop(4))).toBe("4|4");
  });
});

describe("the importer's digest copy", () => {
  test("a copy that fails after a batch committed leaves the batch stored and reported so; a later one catches up", () => {
    const log = openDatabase(join(tempDir(), "import-copy.db"));
    const importer = deliveryImporter(log);
    importer.append(numbered(1, DIGESTS_PER_BATCH - 1));
    // As a busy log beside a receiver would make it fail.
    log.sqlite.run("CREATE TEMP TRIGGER fail_copy BEFORE INSERT ON main.event_digests BEGIN SELECT RAISE(ABORT, 'injected'); END");
    expect(importer.append([delivery('{"n":"last"}')])).toEqual([{ kind: "event", id: DIGESTS_PER_BATCH }]);
    expect(copiedThrough(log)).toBe(0);
    log.sqlite.run("DROP TRIGGER temp.fail_copy");
    importer.copyKeys();
    expect(copiedThrough(log)).toBe(DIGESTS_PER_BATCH);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { missing: 0, wrong: 0 } });
    closeDatabase(log);
  });
});
