// Group commit. Each turn of the event loop hands the deliveries it verified to the writer thread
// at once, without waiting for the commit in progress: the writer commits everything that reached
// it while it was busy as its next batch, so one fsync covers them all and the writer never waits
// for a round trip to this thread before it starts the next. Each caller's promise settles only
// when the writer reports the commit that holds its rows (synchronous=FULL), so a 202 sent after
// it means the delivery is on disk.
import type { AcceptedDelivery, Appended, Rejection } from "./append.ts";
import { packBatch } from "./batch-message.ts";
import type { WriterOptions, WriterReply, WriterRequest } from "./writer-worker.ts";

export interface CommitStats {
  rows: number;
  seconds: number;
}

interface Pending {
  delivery: AcceptedDelivery;
  resolve: (appended: Appended) => void;
  reject: (error: Error) => void;
}

export class LogWriteError extends Error {}

interface GroupCommitOptions extends WriterOptions {
  /** URL of writer-worker.ts, resolved by the caller (see src/app.ts for why). */
  workerUrl: string;
}

function spawnWriter({ workerUrl, ...options }: GroupCommitOptions): Worker {
  const worker = new Worker(workerUrl);
  worker.postMessage({ type: "open", options } satisfies WriterRequest);
  return worker;
}

export class GroupCommit {
  /** Not handed to the writer yet: what this turn of the event loop verified. */
  private queue: Pending[] = [];
  private rejections: Rejection[] = [];
  /** Handed to the writer, in the order it commits them: each reply settles the oldest. */
  private posted: Pending[] = [];
  private scheduled = false;
  private closed = false;
  /** The writer died while closing: nothing more will be committed. */
  private dead = false;
  /** Whether the last commit failed (a full disk, a lock held too long): cleared by the next success. */
  failing = false;

  private constructor(
    private worker: Worker,
    private readonly options: GroupCommitOptions,
    private readonly onCommit: (stats: CommitStats) => void,
  ) {
    this.listen();
  }

  /** Starts the writer thread; resolves once it has opened the log (rejects if it cannot). */
  static async start(options: GroupCommitOptions, onCommit: (stats: CommitStats) => void = () => {}): Promise<GroupCommit> {
    const worker = spawnWriter(options);
    await new Promise<void>((resolve, reject) => {
      worker.addEventListener("message", ({ data }: MessageEvent<WriterReply>) => (data.type === "ready" ? resolve() : reject(new Error(data.type === "failed" ? data.message : data.type))), { once: true });
      worker.addEventListener("error", (event) => reject(new Error(event.message)), { once: true });
    });
    return new GroupCommit(worker, options, onCommit);
  }

  /** Resolves once the delivery is committed; rejects if the commit failed (nothing was stored). */
  append(delivery: AcceptedDelivery): Promise<Appended> {
    if (this.closed) return Promise.reject(new LogWriteError("the log is closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ delivery, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    // setImmediate, not a microtask: the requests already read in this turn go in one message.
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.send());
    }
  }

  /**
   * Notes a refused delivery for the operator. Nobody waits for it: it rides along with the next
   * batch, and is lost (only that) if that commit fails.
   */
  recordRejection(rejection: Rejection): void {
    if (this.closed) return;
    this.rejections.push(rejection);
    this.schedule();
  }

  /** Commits what is queued, then closes the writer's connection and ends the thread. */
  async close(): Promise<void> {
    this.closed = true;
    while (!this.dead && (this.posted.length > 0 || this.queue.length > 0 || this.rejections.length > 0)) {
      await this.writerSays(() => true);
    }
    if (!this.dead) {
      // Only "closed" will do: a reply to refusals handed over last may still be on its way.
      const closed = this.writerSays((reply) => reply.type === "closed");
      this.post({ type: "close" });
      await closed;
    }
    this.worker.terminate();
  }

  /** Resolves once the writer sends a reply that `wanted`, or dies. */
  private writerSays(wanted: (reply: WriterReply) => boolean): Promise<void> {
    const worker = this.worker;
    return new Promise((resolve) => {
      const done = () => {
        worker.removeEventListener("message", onMessage);
        worker.removeEventListener("error", done);
        setImmediate(resolve);
      };
      const onMessage = ({ data }: MessageEvent<WriterReply>) => {
        if (wanted(data)) done();
      };
      worker.addEventListener("message", onMessage);
      worker.addEventListener("error", done);
    });
  }

  private post(request: WriterRequest): void {
    this.worker.postMessage(request);
  }

  private send(): void {
    this.scheduled = false;
    if (this.queue.length === 0 && this.rejections.length === 0) return;
    const queued = this.queue;
    this.queue = [];
    const rejections = this.rejections;
    this.rejections = [];
    for (const pending of queued) this.posted.push(pending);
    this.post({ type: "append", batch: packBatch(queued.map((p) => p.delivery)), rejections });
  }

  /** The oldest `count` deliveries handed to the writer: the ones its reply is about. */
  private settle(count: number, settleOne: (pending: Pending, index: number) => void): number {
    const batch = this.posted.splice(0, count);
    batch.forEach(settleOne);
    return batch.length;
  }

  private listen(): void {
    const worker = this.worker;
    worker.addEventListener("message", ({ data: reply }: MessageEvent<WriterReply>) => {
      // A writer replaced after dying has nothing left to settle: what it was handed is rejected.
      if (worker !== this.worker) return;
      if (reply.type === "committed") {
        this.failing = false;
        const rows = this.settle(reply.results.length, (pending, i) => pending.resolve(reply.results[i]!));
        this.onCommit({ rows, seconds: reply.seconds });
      } else if (reply.type === "failed") {
        this.failing = true;
        this.settle(reply.deliveries, (pending) => pending.reject(new LogWriteError(reply.message)));
      }
    });
    // A writer that dies takes what it was handed with it (answered 503); a new one takes over
    // what this thread still holds, unless the log is closing: then that fails too.
    worker.addEventListener("error", (error) => {
      const failed = (pending: Pending) => pending.reject(new LogWriteError(error.message));
      this.settle(this.posted.length, failed);
      if (this.closed) {
        this.dead = true;
        this.queue.splice(0).forEach(failed);
        this.rejections = [];
        return;
      }
      this.worker = spawnWriter(this.options);
      this.listen();
      this.schedule();
    });
  }
}
