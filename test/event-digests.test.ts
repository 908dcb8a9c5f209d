// How the writer tells a repeat from a new event without a unique index, over the whole log: the
// copied part through event_keys' digest index, the tail in memory; kept in step with the log
// (another writer's rows, a batch that rolled back, a restart, a crash, a rebuilt event_keys).
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { batchAppender } from "../src/log/append.ts";
import { runChecks } from "../src/log/check.ts";
import { closeDatabase, openDatabase, type EventLogDatabase } from "../src/log/database.ts";
import { COPIED_EVENT } from "../src/log/event-digests.ts";
import { copyBacklog, eventKeysCopier, KEYS_PER_STEP, MAX_TAIL_AT_START } from "../src/log/event-keys.ts";
import { bundledMigrations, migrate } from "../src/log/migrations.ts";
import { acceptedDelivery } from "./support/accepted-delivery.ts";
import { tempDir } from "./support/server.ts";

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

/** Copies every key and digest still behind, as the writer's KeysFollower does. */
const copyAll = (log: EventLogDatabase) => {
  const copy = eventKeysCopier(log);
  let total = 0;
  for (let copied = KEYS_PER_STEP; copied >= KEYS_PER_STEP; total += copied) copied = copy();
  return total;
};

const numbered = (from: number, count: number) => Array.from({ length: count }, (_, i) => delivery(`{"n":${from + i}}`));

const digestsCheck = (log: EventLogDatabase) => runChecks(log.path, log).checks.find((c) => c.name === "digests")!;

describe("duplicates across the whole log", () => {
  test("in the copied part, in the tail and across both, after many copy steps and a restart", () => {
    const path = join(tempDir(), "whole-log.db");
    const log = openDatabase(path);
    const append = batchAppender(log);
    const total = 5 * KEYS_PER_STEP + 100;
    for (let n = 1; n <= total; n += 1000) append(numbered(n, Math.min(1000, total - n + 1)));
    expect(copyAll(log)).toBe(total);
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
    expect(again([delivery('{"n":1}'), delivery('{"n":"new"}'), delivery(`{"n":${KEYS_PER_STEP * 3}}`)])).toEqual([
      { id: 1, duplicate: true },
      { id: total + 11, duplicate: true },
      { id: KEYS_PER_STEP * 3, duplicate: true },
    ]);
    copyAll(reopened);
    expect(again([delivery('{"n":"new"}')])).toEqual([{ id: total + 11, duplicate: true }]);
    expect(again.digests.held).toBe(0);
    expect(digestsCheck(reopened)).toMatchObject({ ok: true });
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
    expect(copyAll(after)).toBe(2001);
    expect(digestsCheck(after)).toMatchObject({ ok: true });
    closeDatabase(after);
  });

  test("event_keys emptied to be rebuilt while a writer runs: the writer reads its tail again", () => {
    const log = openDatabase(join(tempDir(), "rebuild.db"));
    const append = batchAppender(log);
    append(numbered(1, 50));
    copyAll(log);
    append(numbered(51, 1));
    expect(append.digests.held).toBe(1);
    log.sqlite.run("DELETE FROM event_keys");
    expect(append([delivery('{"n":7}')])).toEqual([{ id: 7, duplicate: true }]);
    expect(append.digests.held).toBe(51);
    closeDatabase(log);
  });

  test("rows a 0.4.0 receiver copied without a digest stay in the tail until the copier fills them in", () => {
    const log = openDatabase(join(tempDir(), "old-copier.db"));
    const append = batchAppender(log);
    append(numbered(1, 20));
    copyAll(log);
    append(numbered(21, 10));
    // As 0.4.0's copier writes them: the keys only.
    log.sqlite.run("INSERT INTO event_keys (event_id, event, organization_id, installation_id) SELECT id, event, organization_id, installation_id FROM events WHERE id > 20");
    expect(append([delivery('{"n":25}')])).toEqual([{ id: 25, duplicate: true }]);
    expect(append.digests.held).toBe(10);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { unfilled: 10, behind: 10 } });
    expect(eventKeysCopier(log)()).toBe(10); // filled in, nothing new to copy
    expect(append([delivery('{"n":26}')])).toEqual([{ id: 26, duplicate: true }]);
    expect(append.digests.held).toBe(0);
    expect(digestsCheck(log)).toMatchObject({ ok: true });
    closeDatabase(log);
  });

  test("a log far behind (event_keys emptied to be rebuilt) is copied, a step at a time, before the first batch", () => {
    const log = openDatabase(join(tempDir(), "far-behind.db"));
    const total = MAX_TAIL_AT_START + 3 * KEYS_PER_STEP + 5;
    const append = batchAppender(log);
    for (let n = 1; n <= total; n += 5000) append(numbered(n, Math.min(5000, total - n + 1)));
    copyAll(log);
    // As 0.4.0's copier or a rebuild by hand would leave it: keys without digests, then nothing.
    log.sqlite.run("UPDATE event_keys SET digest = NULL WHERE event_id > 100");
    log.sqlite.run("DELETE FROM event_keys WHERE event_id > ?", [total - 2 * KEYS_PER_STEP]);
    const steps: number[] = [];
    const copy = eventKeysCopier(log);
    copyBacklog(log, () => {
      const wrote = copy();
      steps.push(wrote);
      return wrote;
    });
    expect(Math.max(...steps)).toBeLessThanOrEqual(2 * KEYS_PER_STEP);
    const writer = batchAppender(log);
    writer.warm();
    expect(writer.digests.held).toBeGreaterThan(0);
    expect(writer.digests.held).toBeLessThanOrEqual(MAX_TAIL_AT_START);
    expect(writer([delivery('{"n":1}'), delivery(`{"n":${total}}`), delivery('{"n":200}')])).toEqual([
      { id: 1, duplicate: true },
      { id: total, duplicate: true },
      { id: 200, duplicate: true },
    ]);
    copyAll(log);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: total, behind: 0, unfilled: 0 } });
    closeDatabase(log);
  });

  test("a repeat is found through the digest index and confirmed through events_id_payload_sha256, never by a scan", () => {
    const log = openDatabase(join(tempDir(), "plan.db"));
    const plan = log.sqlite
      .query<{ detail: string }, []>(
        `EXPLAIN QUERY PLAN ${COPIED_EVENT}`,
      )
      .all()
      .map((row) => row.detail);
    expect(plan).toEqual(["SEARCH k USING COVERING INDEX event_keys_digest (digest=?)", expect.stringMatching(/^SEARCH e USING (COVERING INDEX events_id_payload_sha256|INTEGER PRIMARY KEY)/)]);
    closeDatabase(log);
  });
});

describe("check: digests", () => {
  test("passes behind the log; reports a wrong digest and payloads stored twice, copied or not", () => {
    const log = openDatabase(join(tempDir(), "check.db"));
    const append = batchAppender(log);
    append(numbered(1, 40));
    copyAll(log);
    append(numbered(41, 5));
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 40, behind: 5, wrong: 0, unfilled: 0, repeatedPayloads: 0 } });

    log.sqlite.run("UPDATE event_keys SET digest = unhex('00112233445566ff') WHERE event_id = 3");
    expect(digestsCheck(log)).toMatchObject({ ok: false, problems: ["1 row of event_keys has a digest that is not its event's"] });
    log.sqlite.run("UPDATE event_keys SET digest = (SELECT unhex(substr(payload_sha256, 1, 16)) FROM events WHERE id = 3) WHERE event_id = 3");
    expect(digestsCheck(log)).toMatchObject({ ok: true });

    // Payloads stored twice (the writer never does this): a copied one again in the tail, two in
    // the tail, and two copied ones.
    log.sqlite.run("DROP TRIGGER events_no_update");
    const sameAs = (id: number, other: number) =>
      log.sqlite.run("UPDATE events SET payload_sha256 = (SELECT payload_sha256 FROM events WHERE id = ?) WHERE id = ?", [other, id]);
    sameAs(44, 12);
    expect(digestsCheck(log)).toMatchObject({ ok: false, data: { repeatedPayloads: 1 }, problems: ["1 payload stored as more than one event"] });
    sameAs(45, 43);
    sameAs(20, 21);
    log.sqlite.run("UPDATE event_keys SET digest = (SELECT digest FROM event_keys WHERE event_id = 21) WHERE event_id = 20");
    expect(digestsCheck(log)).toMatchObject({ ok: false, data: { repeatedPayloads: 3, wrong: 0 } });
    closeDatabase(log);
  });
});

describe("upgrading a log written before 0009", () => {
  test("fills in the digest of every copied event; the tail is copied with its digests afterwards", () => {
    const path = join(tempDir(), "old.db");
    const old = new Database(path, { strict: true });
    migrate(old, bundledMigrations().slice(0, 9));
    const insert = old.prepare(
      "INSERT INTO events (id, received_at, event, payload, payload_sha256, secret_label, envelope_mismatch, chain_hash) VALUES (?, ?, 'installed', ?, ?, 'default', 0, '')",
    );
    for (let n = 1; n <= 60; n++) {
      const d = delivery(`{"n":${n}}`);
      insert.run(n, d.receivedAt, d.payload, d.payloadSha256);
    }
    // 0.4.0 had copied the keys of the first 50.
    old.run("INSERT INTO event_keys SELECT id, event, organization_id, installation_id FROM events WHERE id <= 50");
    old.close();

    const log = openDatabase(path); // applies 0009
    const digests = log.sqlite.query<{ n: number }, []>("SELECT count(digest) AS n FROM event_keys").get()!.n;
    expect(digests).toBe(50);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 50, behind: 10 } });
    const append = batchAppender(log);
    expect(append([delivery('{"n":1}'), delivery('{"n":55}')])).toEqual([
      { id: 1, duplicate: true },
      { id: 55, duplicate: true },
    ]);
    expect(copyAll(log)).toBe(10);
    expect(digestsCheck(log)).toMatchObject({ ok: true, data: { copied: 60, behind: 0 } });
    closeDatabase(log);
  });
});
