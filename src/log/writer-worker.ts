// The log's writer thread: it owns the connection that appends, so the event loop that answers
// HTTP never waits on an fsync. Deliveries arrive a message per turn of that loop; everything that
// arrived while a commit ran is the next batch, one transaction and one message back.
import { batchAppender, type AcceptedDelivery, type Appended, type Rejection } from "./append.ts";
import { unpackBatch, type PackedBatch } from "./batch-message.ts";
import type { CheckpointRequest } from "./checkpoint-worker.ts";
import { closeDatabase, openDatabase, type Checkpoints, type EventLogDatabase } from "./database.ts";
import { copyDigestBacklog, DIGESTS_PER_BATCH, DIGESTS_QUIET_MS, eventDigestsCopier } from "./event-digests.ts";
import { eventKeysCopier, KEYS_DELAY_MS, KEYS_PER_STEP } from "./event-keys.ts";
import { Follower } from "./follower.ts";

export interface WriterOptions {
  path: string;
  busyTimeoutMs: number;
  /** "litestream": no checkpointer thread, no automatic checkpoint, no TRUNCATE at close. */
  checkpoints?: Checkpoints;
}

export type WriterRequest =
  | { type: "open"; options: WriterOptions }
  /** To be committed, in order, with whatever else is waiting: never a transaction of its own. */
  | { type: "append"; batch: PackedBatch; rejections: Rejection[] }
  | { type: "close" };
export type WriterReply =
  | { type: "ready" }
  /** About the oldest deliveries not yet answered: as many as there are results. */
  | { type: "committed"; results: Appended[]; seconds: number }
  /** The oldest `deliveries` not yet answered were not stored (or, for "open", the log did not open). */
  | { type: "failed"; message: string; deliveries: number }
  | { type: "closed" };

declare const self: Worker;
const reply = (message: WriterReply) => self.postMessage(message);
let log: EventLogDatabase;
let checkpointer: Worker | undefined;
let append: ReturnType<typeof batchAppender>;
let keys: Follower;
let digests: Follower;
let waiting: AcceptedDelivery[] = [];
let waitingRejections: Rejection[] = [];
let commitScheduled = false;

const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** Commits every delivery (and refusal) that has arrived since the last commit, as one batch. */
function commitWaiting(): void {
  // Already done: "close" commits what is waiting before it closes the log.
  if (!commitScheduled) return;
  commitScheduled = false;
  const batch = waiting;
  const rejections = waitingRejections;
  waiting = [];
  waitingRejections = [];
  const started = performance.now();
  let results: Appended[];
  try {
    results = append(batch, rejections);
  } catch (error) {
    reply({ type: "failed", message: errorMessage(error), deliveries: batch.length });
    return;
  }
  // One reply per batch, whatever follows: a second would settle deliveries of the next.
  reply({ type: "committed", results, seconds: (performance.now() - started) / 1000 });
  const appended = results.reduce((count, result) => (result.duplicate ? count : count + 1), 0);
  keys.appended(appended);
  digests.appended(appended);
}

self.onmessage = ({ data: request }: MessageEvent<WriterRequest>) => {
  if (request.type === "open") {
    try {
      // Migrated already, by the thread that started this one.
      const { path, busyTimeoutMs, checkpoints = "receiver" } = request.options;
      log = openDatabase(path, { busyTimeoutMs, migrate: false, checkpoints });
      append = batchAppender(log);
      const copyKeys = eventKeysCopier(log);
      keys = new Follower(() => copyKeys() >= KEYS_PER_STEP, { eagerAt: KEYS_PER_STEP, delayMs: KEYS_DELAY_MS, quiet: false });
      const digestsCopier = eventDigestsCopier(log);
      digests = new Follower(digestsCopier.step, {
        eagerAt: DIGESTS_PER_BATCH,
        delayMs: DIGESTS_QUIET_MS,
        quiet: true,
        backlog: () => append.digests.held,
      });
      // Checkpoints belong to the checkpointer thread; the writer's own automatic checkpoint stays
      // as a backstop at 16 MB of WAL, should the checkpointer fall behind.
      // Under Litestream, neither: it checkpoints, after copying the WAL (openDatabase set 0).
      if (checkpoints === "receiver") {
        log.sqlite.run("PRAGMA wal_autocheckpoint = 4000");
        checkpointer = new Worker(new URL("./checkpoint-worker.ts", import.meta.url).href);
        checkpointer.postMessage({ type: "start", path, intervalMs: 25 } satisfies CheckpointRequest);
      }
      // The events event_digests does not hold yet: a batch or two, whatever the log's size.
      copyDigestBacklog(digestsCopier);
      append.warm();
      reply({ type: "ready" });
      // What a crashed receiver had not copied yet.
      keys.step();
      digests.appended(digestsCopier.behind());
    } catch (error) {
      reply({ type: "failed", message: errorMessage(error), deliveries: 0 });
    }
    return;
  }
  if (request.type === "close") {
    // Refusals ride along with no delivery waiting on them, so they may still be here.
    commitWaiting();
    const stopped = checkpointer ? new Promise((resolve) => (checkpointer!.onmessage = resolve)) : Promise.resolve();
    checkpointer?.postMessage({ type: "stop" } satisfies CheckpointRequest);
    void stopped.then(() => {
      checkpointer?.terminate();
      keys?.finish();
      digests?.finish();
      closeDatabase(log);
      reply({ type: "closed" });
    });
    return;
  }
  for (const delivery of unpackBatch(request.batch)) waiting.push(delivery);
  for (const rejection of request.rejections) waitingRejections.push(rejection);
  // setImmediate: the messages that queued up during the last commit are all read before it runs.
  if (!commitScheduled) {
    commitScheduled = true;
    setImmediate(commitWaiting);
  }
};
