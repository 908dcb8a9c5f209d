// How the writer tells a repeat from a new event without a unique index: the in-memory DigestIndex
// on its own, then the appender that keeps it in step with the log (another writer's rows, a
// batch that rolled back, a restart).
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { batchAppender } from "../src/log/append.ts";
import { closeDatabase, openDatabase } from "../src/log/database.ts";
import { DigestIndex } from "../src/log/digest-index.ts";
import { acceptedDelivery } from "./support/accepted-delivery.ts";
import { tempDir } from "./support/server.ts";

const sha256 = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");

describe("DigestIndex", () => {
  test("finds what was added, under its id, and nothing else; grows past its first size", () => {
    const index = new DigestIndex(16);
    const stored = new Map<string, number>();
    for (let id = 1; id <= 5000; id++) {
      const digest = sha256(`payload ${id}`);
      index.add(digest, id);
      stored.set(digest, id);
    }
    const digestOf = (id: number) => sha256(`payload ${id}`);
    expect(index.size).toBe(5000);
    expect(index.lastId).toBe(5000);
    for (const [digest, id] of stored) expect(index.find(digest, digestOf)).toBe(id);
    for (let n = 0; n < 5000; n++) expect(index.find(sha256(`absent ${n}`), digestOf)).toBeNull();
  });

  test("digests sharing their first 32 bits are told apart by the log's own row", () => {
    const index = new DigestIndex(16);
    const a = `deadbeef${"0".repeat(56)}`;
    const b = `deadbeef${"1".repeat(56)}`;
    const c = `deadbeef${"2".repeat(56)}`;
    const log = new Map([
      [1, a],
      [2, b],
    ]);
    index.add(a, 1);
    index.add(b, 2);
    const reads: number[] = [];
    const digestOf = (id: number) => (reads.push(id), log.get(id) ?? null);
    expect(index.find(b, digestOf)).toBe(2);
    expect(reads).toEqual([1, 2]);
    expect(index.find(a, digestOf)).toBe(1);
    expect(index.find(c, digestOf)).toBeNull();
    // An entry whose row is not in the log (a rolled-back insert) never matches.
    expect(index.find(a, () => null)).toBeNull();
  });

  test("refuses what it cannot hold", () => {
    const index = new DigestIndex();
    expect(() => index.add("not hex at all", 1)).toThrow(TypeError);
    expect(() => index.add(sha256("x"), 0)).toThrow(RangeError);
    expect(() => index.add(sha256("x"), 2 ** 32)).toThrow(RangeError);
  });
});

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
