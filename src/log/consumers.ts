// Named consumers: apps that pull events and acknowledge how far they got. Their positions live in
// a table of their own (not the append-only log), each acknowledgement committed before it is
// answered.
import { asc, count, eq, max, sql } from "drizzle-orm";
import type { Drizzle } from "./database.ts";
import { consumers, events } from "./schema.ts";

/** A short name: letters, digits, `.`, `_` and `-`, starting with a letter or digit, up to 64. */
export const CONSUMER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface ConsumerView {
  name: string;
  /** The last event it acknowledged (0: none yet). */
  position: number;
  /** Events in the log after its position. */
  lag: number;
  createdAt: string;
  updatedAt: string;
}

/** Why an acknowledgement or a reset was refused. */
export class ConsumerError extends Error {
  constructor(
    readonly reason: "invalid_name" | "past_the_end" | "backwards",
    message: string,
  ) {
    super(message);
  }
}

export class Consumers {
  constructor(private readonly db: Drizzle) {}

  private newestId(): number {
    return this.db.select({ id: max(events.id) }).from(events).get()?.id ?? 0;
  }

  private check(name: string): void {
    if (!CONSUMER_NAME.test(name)) throw new ConsumerError("invalid_name", "a consumer's name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
  }

  /** Every consumer with its position and lag, by name. Event ids have no gaps: the lag is a difference. */
  list(): ConsumerView[] {
    const newest = this.newestId();
    return this.db
      .select()
      .from(consumers)
      .orderBy(asc(consumers.name))
      .all()
      .map((row) => ({ ...row, lag: Math.max(0, newest - row.position) }));
  }

  /**
   * The consumer's position, creating it on first use: at the oldest event, or with `fromLatest`
   * at the newest (it then receives only what comes after).
   */
  open(name: string, fromLatest: boolean): number {
    this.check(name);
    const now = new Date().toISOString();
    this.db
      .insert(consumers)
      .values({ name, position: fromLatest ? this.newestId() : 0, createdAt: now, updatedAt: now })
      .onConflictDoNothing()
      .run();
    return this.db.select({ position: consumers.position }).from(consumers).where(eq(consumers.name, name)).get()!.position;
  }

  /**
   * Moves the position to `through` (never backwards, unless `reset`), durably; an id past the
   * newest event is refused. Returns the position now.
   */
  ack(name: string, through: number, reset = false): number {
    this.check(name);
    const newest = this.newestId();
    if (through > newest) throw new ConsumerError("past_the_end", `event ${through} is past the newest event (${newest})`);
    const current = this.db.select({ position: consumers.position }).from(consumers).where(eq(consumers.name, name)).get();
    const now = new Date().toISOString();
    if (current === undefined) {
      this.db.insert(consumers).values({ name, position: through, createdAt: now, updatedAt: now }).run();
      return through;
    }
    if (through < current.position && !reset) {
      throw new ConsumerError("backwards", `the position is ${current.position}: moving it back to ${through} needs "reset": true`);
    }
    const position = reset ? through : Math.max(current.position, through);
    this.db.update(consumers).set({ position, updatedAt: now }).where(eq(consumers.name, name)).run();
    return position;
  }

  /** Removes a consumer; false when there was none of that name. */
  remove(name: string): boolean {
    this.check(name);
    const existed = this.db.select({ n: count() }).from(consumers).where(eq(consumers.name, name)).get()!.n > 0;
    this.db.delete(consumers).where(eq(consumers.name, name)).run();
    return existed;
  }
}

/** The check of `icr-receiver check`: no consumer is past the log's end. */
export function consumersPastTheEnd(db: Drizzle): { name: string; position: number }[] {
  return db
    .select({ name: consumers.name, position: consumers.position })
    .from(consumers)
    .where(sql`${consumers.position} > (SELECT coalesce(max(${events.id}), 0) FROM ${events})`)
    .all();
}
