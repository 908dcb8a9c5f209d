// Which payload digests the log already holds, and under which event id: how the writer tells a
// repeated delivery from a new event, over the whole log, with memory and start-up that do not
// grow with it. The copied part of the log is found through event_keys' digest index (its first
// 8 bytes, written behind the log by the keys copier), each match confirmed against the event's
// full payload_sha256; the events above the copied part, a few steps' worth, are held in memory.
import { sql } from "drizzle-orm";
import type { EventLogDatabase } from "./database.ts";
import { eventKeys, events } from "./schema.ts";

/**
 * The last event whose digest is in event_keys with every one before it: a row copied without
 * one (by a 0.4.0 receiver during the hand-over) stops it until the copier fills it in.
 */
export const COPIED_DIGESTS_THROUGH = `coalesce(
  (SELECT min(event_id) - 1 FROM event_keys WHERE digest IS NULL),
  (SELECT max(event_id) FROM event_keys),
  0)`;

/** The first 8 bytes of a hex digest, in SQL: what event_keys.digest holds. */
export const digestPrefix = (hex: unknown) => sql`unhex(substr(${hex}, 1, 16))`;

/** The copied event with this prefix and this full digest. */
export const COPIED_EVENT =
  "SELECT e.id FROM event_keys k JOIN events e ON e.id = k.event_id WHERE k.digest = ? AND e.payload_sha256 = ? LIMIT 1";

export function eventDigests({ db, sqlite }: EventLogDatabase) {
  const p = (name: string) => sql.placeholder(name);
  const copiedThrough = sqlite.prepare<{ id: number }, []>(`SELECT ${COPIED_DIGESTS_THROUGH} AS id`);
  // The commit path's one query per new delivery: a plain statement, without Drizzle's mapping of
  // every call, and the prefix cut in JS rather than by SQL functions.
  const copiedEvent = sqlite.prepare<{ id: number }, [Uint8Array, string]>(COPIED_EVENT);
  const eventsAfter = db
    .select({ id: events.id, payloadSha256: events.payloadSha256 })
    .from(events)
    .where(sql`${events.id} > ${p("after")}`)
    .orderBy(events.id)
    .prepare();

  /** Digest → event id of the events above `copied` up to `last`, in id order (a Map keeps it). */
  const tail = new Map<string, number>();
  let copied = 0;
  let last = 0;
  let stale = true;

  return {
    /**
     * Brings the tail up to the log: drops what the copier has copied since, reads what other
     * writers appended (under the write lock, so nothing comes in between). Bounded by how far the
     * copier is behind, never by the log's size. `lastEventId`, when the caller has read it under
     * the lock, spares the read of newer events when there are none.
     */
    sync(lastEventId = Infinity): void {
      const through = copiedThrough.get()!.id;
      if (stale || through < copied) {
        // After a rollback, or an event_keys emptied to be rebuilt: read the tail again.
        tail.clear();
        last = through;
        stale = false;
      } else {
        for (const [digest, id] of tail) {
          if (id > through) break;
          tail.delete(digest);
        }
      }
      copied = through;
      if (last < copied) last = copied;
      if (last >= lastEventId) return;
      for (const row of eventsAfter.all({ after: last })) {
        tail.set(row.payloadSha256, row.id);
        last = row.id;
      }
    },
    /** The event holding this digest, if any. */
    find(digest: string): number | null {
      return tail.get(digest) ?? copiedEvent.get(Buffer.from(digest.slice(0, 16), "hex"), digest)?.id ?? null;
    },
    /** Records that the event just inserted, `id`, holds `digest`. */
    add(digest: string, id: number): void {
      tail.set(digest, id);
      last = id;
    },
    /** The tail may hold digests of rows that were rolled back: read it again at the next sync. */
    forget(): void {
      stale = true;
    },
    /** How many events the tail holds (for tests). */
    get held(): number {
      return tail.size;
    },
  };
}

export type EventDigests = ReturnType<typeof eventDigests>;
