// The write side of the log. Concurrent deliveries share one durable commit (group commit): each
// caller's promise settles only after the transaction holding its rows has been committed with
// synchronous=FULL, so the HTTP layer can answer 202 knowing the delivery is on disk.
import { eq, sql } from "drizzle-orm";
import type { EventLogDatabase } from "./database.ts";
import { deliveries, events } from "./schema.ts";
import type { EventFacts } from "../verify/delivery.ts";

/** Everything the log keeps about one accepted delivery. */
export interface AcceptedDelivery extends EventFacts {
  receivedAt: string;
  remoteAddress: string | null;
  /** JSON object text of the request headers. */
  headers: string;
  rawBody: string;
  payload: string;
  payloadSha256: string;
  secretLabel: string;
  envelopeMismatch: boolean;
}

export interface Appended {
  id: number;
  duplicate: boolean;
}

interface Pending {
  delivery: AcceptedDelivery;
  resolve: (appended: Appended) => void;
  reject: (error: unknown) => void;
}

export interface CommitStats {
  rows: number;
  seconds: number;
}

export class EventAppender {
  private pending: Pending[] = [];
  private readonly insertEvent;
  private readonly findEvent;
  private readonly insertDelivery;
  private readonly commitBatch;
  private idle: Promise<void> = Promise.resolve();
  private settleIdle: (() => void) | null = null;

  constructor(
    private readonly log: EventLogDatabase,
    private readonly onCommit: (stats: CommitStats) => void = () => {},
  ) {
    const { db, sqlite } = log;
    const p = (name: string) => sql.placeholder(name);
    this.insertEvent = db
      .insert(events)
      .values({
        receivedAt: p("receivedAt"),
        event: p("event"),
        installationId: p("installationId"),
        organizationId: p("organizationId"),
        appId: p("appId"),
        transactionId: p("transactionId"),
        transactionStatus: p("transactionStatus"),
        transactionType: p("transactionType"),
        transactionAmount: p("transactionAmount"),
        payload: p("payload"),
        payloadSha256: p("payloadSha256"),
        secretLabel: p("secretLabel"),
        envelopeMismatch: p("envelopeMismatch"),
      })
      .onConflictDoNothing({ target: events.payloadSha256 })
      .returning({ id: events.id })
      .prepare();
    this.findEvent = db
      .select({ id: events.id })
      .from(events)
      .where(eq(events.payloadSha256, p("payloadSha256")))
      .prepare();
    this.insertDelivery = db
      .insert(deliveries)
      .values({
        eventId: p("eventId"),
        receivedAt: p("receivedAt"),
        remoteAddress: p("remoteAddress"),
        headers: p("headers"),
        rawBody: p("rawBody"),
        secretLabel: p("secretLabel"),
        envelopeMismatch: p("envelopeMismatch"),
        duplicate: p("duplicate"),
      })
      .prepare();
    // bun:sqlite transactions are synchronous: the whole batch commits (or rolls back) here.
    this.commitBatch = sqlite.transaction((batch: Pending[]) =>
      batch.map(({ delivery }): Appended => {
        const params = { ...delivery, envelopeMismatch: delivery.envelopeMismatch ? 1 : 0 };
        const inserted = this.insertEvent.get(params);
        const id = inserted?.id ?? this.findEvent.get({ payloadSha256: delivery.payloadSha256 })!.id;
        const duplicate = inserted === undefined;
        this.insertDelivery.run({ ...params, eventId: id, duplicate: duplicate ? 1 : 0 });
        return { id, duplicate };
      }),
    );
  }

  /** Resolves once the delivery is committed; rejects if the commit failed (nothing was stored). */
  append(delivery: AcceptedDelivery): Promise<Appended> {
    return new Promise((resolve, reject) => {
      // setImmediate, not a microtask: requests that arrive while a commit runs join the next one.
      if (this.pending.push({ delivery, resolve, reject }) === 1) {
        this.idle = new Promise((settle) => (this.settleIdle = settle));
        setImmediate(() => this.flush());
      }
    });
  }

  /** Settles when every delivery handed in so far has been committed or refused. */
  drained(): Promise<void> {
    return this.idle;
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    const started = performance.now();
    try {
      const results = this.commitBatch.immediate(batch);
      this.onCommit({ rows: batch.length, seconds: (performance.now() - started) / 1000 });
      batch.forEach((entry, i) => entry.resolve(results[i]!));
    } catch (error) {
      for (const entry of batch) entry.reject(error);
    } finally {
      this.settleIdle?.();
      this.settleIdle = null;
    }
  }
}
