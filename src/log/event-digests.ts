// Which payload digests the log already holds, and under which event id: how the writer tells a
// repeated delivery from a new event, over the whole log, with memory and start-up that do not
// grow with it. Most of the log is found through event_digests (the first 8 bytes of each digest,
// indexed), each match confirmed against the event's full payload_sha256; the newest events, at
// most a batch or two of them, are held in memory until they are copied there.
//
// The copy is what keeps a commit cheap on a log of millions: a batch of digests is sorted before
// it is written, so each index page it touches is written once for all of the batch's digests that
// fall on it. Written in id order, a random key dirties about one index page per event.
import { sql } from "drizzle-orm";
import type { EventLogDatabase } from "./database.ts";
import { events } from "./schema.ts";

/** How many uncopied events start a batch, and the most one batch copies. */
export const DIGESTS_PER_BATCH = 32_768;
/** Rows read or written per step of a batch: one short hold of the write lock each. */
export const DIGESTS_PER_STEP = 4096;
/** A quiet log copies what waits after this long without a commit, however little. */
export const DIGESTS_QUIET_MS = 1000;
/** Further behind than this when a writer starts, and it copies batches before its first commit. */
export const MAX_TAIL_AT_START = 2 * DIGESTS_PER_BATCH;

/** The last event that event_digests holds with every one before it. */
export const COPIED_DIGESTS_THROUGH = "coalesce((SELECT through FROM event_digests_progress WHERE id = 1), 0)";

/** The copied event with this prefix and this full digest. */
export const COPIED_EVENT =
  "SELECT e.id FROM event_digests d JOIN events e ON e.id = d.event_id WHERE d.digest = ? AND e.payload_sha256 = ? LIMIT 1";

/** The tail's key: the digest's first 52 bits, as a number. */
const tailKey = (digest: string) => Number.parseInt(digest.slice(0, 13), 16);

/**
 * Tail key → event id, as an open-addressing hash table in two typed arrays: 16 bytes a slot at
 * most half full, where a Map of numbers costs over a hundred bytes an entry in RSS, and the tail
 * holds a batch's worth of events at a time. One event per key (a second one with the same key is
 * the caller's to keep elsewhere); id 0 marks a free slot, event ids start at 1.
 */
class TailIndex {
  private keys = new Float64Array(1024);
  private ids = new Float64Array(1024);
  size = 0;

  get(key: number): number | undefined {
    const mask = this.keys.length - 1;
    for (let slot = (key >>> 0) & mask; this.ids[slot] !== 0; slot = (slot + 1) & mask) {
      if (this.keys[slot] === key) return this.ids[slot];
    }
    return undefined;
  }

  /** Whether it took the key (false: another event has it). */
  add(key: number, id: number): boolean {
    if (this.get(key) !== undefined) return false;
    if (2 * (this.size + 1) > this.keys.length) this.rebuild(this.keys.length * 2, 0);
    this.place(key, id);
    return true;
  }

  /** Drops the events up to `through`. */
  dropThrough(through: number): void {
    this.rebuild(this.keys.length, through);
  }

  clear(): void {
    this.ids.fill(0);
    this.size = 0;
  }

  private place(key: number, id: number): void {
    const mask = this.keys.length - 1;
    let slot = (key >>> 0) & mask;
    while (this.ids[slot] !== 0) slot = (slot + 1) & mask;
    this.keys[slot] = key;
    this.ids[slot] = id;
    this.size++;
  }

  private rebuild(capacity: number, through: number): void {
    const { keys, ids } = this;
    this.keys = new Float64Array(capacity);
    this.ids = new Float64Array(capacity);
    this.size = 0;
    for (let slot = 0; slot < ids.length; slot++) if (ids[slot]! > through) this.place(keys[slot]!, ids[slot]!);
  }
}

export function eventDigests({ db, sqlite }: EventLogDatabase) {
  const p = (name: string) => sql.placeholder(name);
  const copiedThrough = sqlite.prepare<{ id: number }, []>(`SELECT ${COPIED_DIGESTS_THROUGH} AS id`);
  // The commit path's one query per new delivery: a plain statement, without Drizzle's mapping of
  // every call, and the prefix cut in JS rather than by SQL functions.
  const copiedEvent = sqlite.prepare<{ id: number }, [Uint8Array, string]>(COPIED_EVENT);
  const tailEvent = sqlite.prepare<{ id: number }, [number, string]>("SELECT id FROM events WHERE id = ? AND payload_sha256 = ?");
  const eventsAfter = db
    .select({ id: events.id, payloadSha256: events.payloadSha256 })
    .from(events)
    .where(sql`${events.id} > ${p("after")}`)
    .orderBy(events.id)
    .prepare();

  /** The events above `copied` up to `last`, by tail key. */
  const tail = new TailIndex();
  /** The rare event whose tail key another tail event already has, by its full digest. */
  const collided = new Map<string, number>();
  let copied = 0;
  let last = 0;
  let stale = true;

  const hold = (digest: string, id: number) => {
    if (!tail.add(tailKey(digest), id)) collided.set(digest, id);
    last = id;
  };

  return {
    /**
     * Brings the tail up to the log: drops what has been copied since, reads what other writers
     * appended (under the write lock, so nothing comes in between). Bounded by how far the copy is
     * behind, never by the log's size. `lastEventId`, when the caller has read it under the lock,
     * spares the read of newer events when there are none.
     */
    sync(lastEventId = Infinity): void {
      const through = copiedThrough.get()!.id;
      if (stale || through < copied) {
        // After a rollback, or an event_digests emptied to be rebuilt: read the tail again.
        tail.clear();
        collided.clear();
        last = through;
        stale = false;
      } else if (through > copied) {
        tail.dropThrough(through);
        for (const [digest, id] of collided) if (id <= through) collided.delete(digest);
      }
      copied = through;
      if (last < copied) last = copied;
      if (last >= lastEventId) return;
      for (const row of eventsAfter.all({ after: last })) hold(row.payloadSha256, row.id);
    },
    /** The event holding this digest, if any. */
    find(digest: string): number | null {
      const held = tail.get(tailKey(digest));
      if (held !== undefined && tailEvent.get(held, digest) !== null) return held;
      return collided.get(digest) ?? copiedEvent.get(Buffer.from(digest.slice(0, 16), "hex"), digest)?.id ?? null;
    },
    /** Records that the event just inserted, `id`, holds `digest`. */
    add: hold,
    /** The tail may hold digests of rows that were rolled back: read it again at the next sync. */
    forget(): void {
      stale = true;
    },
    /** How many events the tail holds (for tests). */
    get held(): number {
      return tail.size + collided.size;
    },
  };
}

export type EventDigests = ReturnType<typeof eventDigests>;

/** A row of a batch, where its steps end. */
interface BatchKey {
  digest: Uint8Array;
  event_id: number;
}

/**
 * Copies the digests of new events into event_digests, a batch at a time and a step at a time:
 * `step()` gathers or writes up to DIGESTS_PER_STEP rows and returns whether the batch has more to
 * do, or another batch's worth waits (with `all`, anything at all). A batch is sorted in a
 * temporary table of this connection, in memory; each write is one IMMEDIATE transaction, and the
 * last one records the batch as copied. Another writer copying the same events meanwhile (a
 * hand-over) adds nothing: rows are unique.
 */
export function eventDigestsCopier({ sqlite }: EventLogDatabase) {
  sqlite.run("PRAGMA temp_store = MEMORY");
  sqlite.run(
    "CREATE TEMP TABLE IF NOT EXISTS digest_batch (digest BLOB NOT NULL, event_id INTEGER NOT NULL, PRIMARY KEY (digest, event_id)) WITHOUT ROWID",
  );
  sqlite.run("INSERT OR IGNORE INTO event_digests_progress (id, through) VALUES (1, 0)");
  const progress = sqlite.prepare<{ through: number; generation: number; last: number }, []>(
    "SELECT through, generation, (SELECT coalesce(max(id), 0) FROM events) AS last FROM event_digests_progress WHERE id = 1",
  );
  // From the rows themselves, a step's run of them in rowid order: no index on the digests is
  // written with each commit for the sake of this read, done once per event.
  const gather = sqlite.prepare<never, [number, number]>(
    "INSERT OR IGNORE INTO temp.digest_batch SELECT unhex(substr(payload_sha256, 1, 16)), id FROM events WHERE id > ? AND id <= ?",
  );
  const stepEnd = sqlite.prepare<BatchKey, [Uint8Array, number]>(
    `SELECT digest, event_id FROM temp.digest_batch WHERE (digest, event_id) > (?, ?) ORDER BY digest, event_id LIMIT 1 OFFSET ${DIGESTS_PER_STEP - 1}`,
  );
  const write = sqlite.prepare<never, [Uint8Array, number, Uint8Array, number]>(
    "INSERT OR IGNORE INTO event_digests (digest, event_id) SELECT digest, event_id FROM temp.digest_batch WHERE (digest, event_id) > (?, ?) AND (digest, event_id) <= (?, ?) ORDER BY digest, event_id",
  );
  // Not if event_digests was emptied since the batch began: rows it had written may be gone.
  const recordCopied = sqlite.prepare<never, [number, number]>(
    "UPDATE event_digests_progress SET through = max(through, ?) WHERE id = 1 AND generation = ?",
  );
  const clearBatch = sqlite.prepare("DELETE FROM temp.digest_batch");
  // Sorts before every digest, and after every one: the ends of a batch.
  const FIRST: BatchKey = { digest: new Uint8Array(0), event_id: 0 };
  const LAST: BatchKey = { digest: new Uint8Array(9).fill(0xff), event_id: Number.MAX_SAFE_INTEGER };

  /**
   * The batch being copied: events up to `through`, gathered up to `gathered`, written up to
   * `after`, begun in event_digests' `generation`.
   */
  let batch: { through: number; generation: number; gathered: number; after: BatchKey } | null = null;

  /**
   * Writes the step after `after`; returns where it ended: LAST when the batch's last step recorded
   * it as copied, null when it could not (event_digests was emptied meanwhile: begin again).
   */
  const writeStep = sqlite.transaction((current: NonNullable<typeof batch>): BatchKey | null => {
    const end = stepEnd.get(current.after.digest, current.after.event_id) ?? LAST;
    write.run(current.after.digest, current.after.event_id, end.digest, end.event_id);
    if (end !== LAST) return end;
    const recorded = recordCopied.run(current.through, current.generation).changes === 1;
    clearBatch.run();
    return recorded ? LAST : null;
  });

  const step = (all = false): boolean => {
    if (batch === null) {
      const { through, generation, last } = progress.get()!;
      if (last <= through) return false;
      clearBatch.run();
      batch = { through: Math.min(last, through + DIGESTS_PER_BATCH), generation, gathered: through, after: FIRST };
    }
    if (batch.gathered < batch.through) {
      const to = Math.min(batch.through, batch.gathered + DIGESTS_PER_STEP);
      gather.run(batch.gathered, to);
      batch.gathered = to;
      return true;
    }
    // Moved on only once the step has committed: a step that failed is written again.
    const end = writeStep.immediate(batch);
    if (end === null) {
      batch = null;
      return true;
    }
    if (end !== LAST) {
      batch.after = end;
      return true;
    }
    batch = null;
    const { through, last } = progress.get()!;
    return last - through >= (all ? 1 : DIGESTS_PER_BATCH);
  };

  return {
    step,
    /** How many events event_digests does not hold yet, with every one before them. */
    behind(): number {
      const { through, last } = progress.get()!;
      return last - through;
    },
  };
}

export type EventDigestsCopier = ReturnType<typeof eventDigestsCopier>;

/**
 * Before a writer's first batch: copies batches until what is left for EventDigests to hold in
 * memory is small. Only a log far behind takes a step here (event_digests emptied to be rebuilt, a
 * writer that could not copy for long): bounded by how far behind, not by the log's size.
 */
export function copyDigestBacklog(copier: EventDigestsCopier): void {
  while (copier.behind() > MAX_TAIL_AT_START) copier.step(true);
}
