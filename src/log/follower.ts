// When the writer thread does the work it keeps behind its commits (copying event_keys and
// event_digests): between batches of deliveries, never inside the commit that answers them.

export interface FollowerOptions {
  /** Work starts at once when this many new events wait. */
  eagerAt: number;
  /** Otherwise this long after the first of them waits or, when `quiet`, after the last commit. */
  delayMs: number;
  quiet: boolean;
  /**
   * How many events wait, when the work can tell (other writers' events included); otherwise the
   * events of this writer's commits since the work last caught up.
   */
  backlog?: () => number;
}

/**
 * Runs one kind of work behind the log: `work(all)` does one step of it and returns whether there
 * is more to do now (with `all`, whether anything at all is left). While there is, a step per turn
 * of the writer's event loop, so batches waiting in its queue go between steps. A failed step is
 * tried again after the delay.
 */
export class Follower {
  private waiting = 0;
  private running = false;
  /** After a failed step, until its retry: no step sooner, however much waits. */
  private backingOff = false;
  private timer: Timer | undefined;

  constructor(
    private readonly work: (all: boolean) => boolean,
    private readonly options: FollowerOptions,
  ) {}

  /** After a commit that appended `count` events. */
  appended(count: number): void {
    this.waiting = this.options.backlog?.() ?? this.waiting + count;
    // A run of steps under way reads the log as it goes: it takes these events too.
    if (this.running || this.backingOff || this.waiting === 0) return;
    if (this.waiting >= this.options.eagerAt) return this.step();
    if (this.timer === undefined) this.timer = setTimeout(() => this.step(), this.options.delayMs);
    else if (this.options.quiet) this.timer.refresh();
  }

  /** Does one step now, and schedules the next while there is more. */
  step(): void {
    this.cancel();
    this.backingOff = false;
    let more: boolean;
    try {
      more = this.work(false);
    } catch {
      // The log is busy or full: what waits is still read from `events` meanwhile, and a retry at
      // every commit would hold each of them up by the busy timeout.
      this.running = false;
      this.backingOff = true;
      this.timer = setTimeout(() => this.step(), this.options.delayMs);
      return;
    }
    this.running = more;
    if (more) this.timer = setTimeout(() => this.step(), 0);
    else this.waiting = 0;
  }

  /** Does everything still waiting (a stopping receiver leaves no lag behind it). */
  finish(): void {
    this.cancel();
    try {
      while (this.work(true));
    } catch {
      // The next receiver to open the log does it.
    }
  }

  private cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
