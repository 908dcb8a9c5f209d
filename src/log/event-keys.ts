// Keeps event_keys (see the schema) behind `events`: the writer thread copies the keys and digest
// prefixes of new events across in bulk, so each (organization, event) index page is written once
// per few hundred events instead of once per commit, and the random digest index never by a commit.
import { asc, eq, gt, inArray, isNull, sql } from "drizzle-orm";
import type { EventLogDatabase } from "./database.ts";
import { COPIED_DIGESTS_THROUGH, digestPrefix } from "./event-digests.ts";
import { eventKeys, events } from "./schema.ts";

/** Events per copying transaction: a short hold of the write lock, even on a large backlog. */
export const KEYS_PER_STEP = 4096;

/**
 * Copies the keys of up to KEYS_PER_STEP events past the last one copied, in one IMMEDIATE
 * transaction (another receiver may be doing the same during a hand-over: the last row is read
 * under the lock, so neither copies a row twice), and fills in the digests of up to as many rows
 * copied without one. Returns how many rows it wrote: KEYS_PER_STEP or more when there is more.
 */
export function eventKeysCopier({ db, sqlite }: EventLogDatabase) {
  const watermark = sql`(SELECT coalesce(max(${eventKeys.eventId}), 0) FROM ${eventKeys})`;
  const copy = db
    .insert(eventKeys)
    .select(
      db
        .select({
          eventId: events.id,
          event: events.event,
          organizationId: events.organizationId,
          installationId: events.installationId,
          digest: digestPrefix(events.payloadSha256).as("digest"),
        })
        .from(events)
        .where(gt(events.id, watermark))
        .orderBy(asc(events.id))
        .limit(KEYS_PER_STEP),
    )
    .prepare();
  // Rows a 0.4.0 receiver copied during the hand-over, without a digest (found through the
  // digest index, where they sort first).
  const fillDigests = db
    .update(eventKeys)
    .set({ digest: sql`(SELECT ${digestPrefix(events.payloadSha256)} FROM ${events} WHERE ${eq(events.id, eventKeys.eventId)})` })
    .where(inArray(eventKeys.eventId, db.select({ id: eventKeys.eventId }).from(eventKeys).where(isNull(eventKeys.digest)).limit(KEYS_PER_STEP)))
    .prepare();
  const changes = sqlite.prepare<{ n: number }, []>("SELECT changes() AS n");
  const step = sqlite.transaction(() => {
    fillDigests.run();
    const filled = changes.get()!.n;
    copy.run();
    return filled + changes.get()!.n;
  });
  return (): number => step.immediate();
}

/** The most events a writer holds in memory when it starts (see EventDigests). */
export const MAX_TAIL_AT_START = 4 * KEYS_PER_STEP;

/**
 * Before a writer's first batch: copies steps until what is left for EventDigests to hold in memory
 * is small. Only a log far behind takes a step here (event_keys emptied to be rebuilt, a copier
 * that could not write for long): bounded by how far behind, not by the log's size.
 */
export function copyBacklog({ sqlite }: EventLogDatabase, copy: () => number): void {
  const behind = sqlite.prepare<{ n: number }, []>(`SELECT (SELECT coalesce(max(id), 0) FROM events) - ${COPIED_DIGESTS_THROUGH} AS n`);
  while (behind.get()!.n > MAX_TAIL_AT_START && copy() > 0);
}

/**
 * Keys are copied at once when this many events wait, and otherwise within KEYS_DELAY_MS. A whole
 * step: the random digest index dirties about one page per copied event in a small step, and a
 * page is shared by more of them the more a step copies.
 */
export const KEYS_EAGER = KEYS_PER_STEP;
export const KEYS_DELAY_MS = 100;

/**
 * When the writer copies keys: soon after a quiet moment, at once after a burst, step by step
 * through a backlog (one step per turn of the writer's event loop, so batches of deliveries
 * waiting in its queue go between steps). A failed step is tried again after the delay.
 */
export class KeysFollower {
  private waiting = 0;
  private timer: Timer | undefined;

  constructor(private readonly copy: () => number) {}

  /** After a commit that appended `count` events. */
  appended(count: number): void {
    this.waiting += count;
    if (this.waiting >= KEYS_EAGER) this.step();
    else if (this.waiting > 0) this.timer ??= setTimeout(() => this.step(), KEYS_DELAY_MS);
  }

  /** Copies one step now, and schedules the next while there is a backlog. */
  step(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    let copied: number;
    try {
      copied = this.copy();
    } catch {
      // The log is busy or full: the rows stay visible through `events`, and the copy waits.
      this.timer = setTimeout(() => this.step(), KEYS_DELAY_MS);
      return;
    }
    if (copied >= KEYS_PER_STEP) this.timer = setTimeout(() => this.step(), 0);
    else this.waiting = 0;
  }

  /** Copies everything still waiting (a stopping receiver leaves no lag behind it). */
  finish(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    try {
      while (this.copy() >= KEYS_PER_STEP);
    } catch {
      // The next receiver to open the log copies them.
    }
  }
}
