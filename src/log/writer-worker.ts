// The log's writer thread: it owns the connection that appends, so the event loop that answers
// HTTP never waits on an fsync. One message in, one batch committed, one message out.
import { batchAppender, type Appended, type Rejection } from "./append.ts";
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
  | { type: "commit"; batch: PackedBatch; rejections: Rejection[] }
  | { type: "close" };
export type WriterReply =
  | { type: "ready" }
  | { type: "committed"; results: Appended[]; seconds: number }
  | { type: "failed"; message: string }
  | { type: "closed" };

declare const self: Worker;
const reply = (message: WriterReply) => self.postMessage(message);
let log: EventLogDatabase;
let checkpointer: Worker | undefined;
let append: ReturnType<typeof batchAppender>;
let keys: Follower;
let digests: Follower;

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
      reply({ type: "failed", message: error instanceof Error ? error.message : String(error) });
    }
    return;
  }
  if (request.type === "close") {
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
  const started = performance.now();
  try {
    const results = append(unpackBatch(request.batch), request.rejections);
    reply({ type: "committed", results, seconds: (performance.now() - started) / 1000 });
    const appended = results.reduce((count, result) => (result.duplicate ? count : count + 1), 0);
    keys.appended(appended);
    digests.appended(appended);
  } catch (error) {
    reply({ type: "failed", message: error instanceof Error ? error.message : String(error) });
  }
};
