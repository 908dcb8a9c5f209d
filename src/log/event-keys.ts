// Keeps event_keys (see the schema) behind `events`: the writer thread copies the keys of new
// events across in bulk, so each (organization, event) index page is written once per few hundred
// events instead of once per commit.
import { asc, gt, sql } from "drizzle-orm";
import type { EventLogDatabase } from "./database.ts";
import { eventKeys, events } from "./schema.ts";

/** Events per copying transaction: a short hold of the write lock, even on a large backlog. */
export const KEYS_PER_STEP = 4096;
/** Keys are copied at once when a step's worth waits, and otherwise within this delay. */
export const KEYS_DELAY_MS = 100;

/**
 * The last event event_keys holds (0 when empty), as an SQL expression: it is copied in id order,
 * so every event before it is there too. Past it, read `events` itself.
 */
export const KEYS_COPIED_THROUGH = "coalesce((SELECT max(event_id) FROM event_keys), 0)";

/**
 * Copies the keys of up to KEYS_PER_STEP events past the last one copied, in one IMMEDIATE
 * transaction (another receiver may be doing the same during a hand-over: the last row is read
 * under the lock, so neither copies a row twice). Returns how many rows it wrote: KEYS_PER_STEP
 * when there may be more.
 */
export function eventKeysCopier({ db, sqlite }: EventLogDatabase) {
  const copy = db
    .insert(eventKeys)
    .select(
      db
        .select({
          eventId: events.id,
          event: events.event,
          organizationId: events.organizationId,
          installationId: events.installationId,
          // Left for a 0.5.0 receiver to fill in (see the schema); this release reads event_digests.
          digest: sql<null>`NULL`.as("digest"),
          receivedAt: events.receivedAt,
        })
        .from(events)
        .where(gt(events.id, sql.raw(KEYS_COPIED_THROUGH)))
        .orderBy(asc(events.id))
        .limit(KEYS_PER_STEP),
    )
    .prepare();
  const changes = sqlite.prepare<{ n: number }, []>("SELECT changes() AS n");
  const step = sqlite.transaction(() => {
    copy.run();
    return changes.get()!.n;
  });
  return (): number => step.immediate();
}
