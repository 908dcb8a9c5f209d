// Deliveries, refusals and commits per minute over the last hours, in memory, for the console's
// health page. Counted where the metrics count them, so both always agree; not read back from the
// log, whose deliveries have no time index: counting hours of them would be a scan on the thread
// that answers deliveries. A restart starts the series afresh.

export interface MinuteCounts {
  /** Start of the minute, Unix ms. */
  start: number;
  accepted: number;
  refused: number;
  commits: number;
  /** Time spent committing in this minute, summed (seconds). */
  commitSeconds: number;
}

export const ACTIVITY_MINUTES = 6 * 60;

export class MinuteSeries {
  private readonly buckets: MinuteCounts[];

  constructor(
    private readonly minutes = ACTIVITY_MINUTES,
    private readonly now: () => number = Date.now,
  ) {
    this.buckets = Array.from({ length: minutes }, () => ({ start: -1, accepted: 0, refused: 0, commits: 0, commitSeconds: 0 }));
  }

  private current(): MinuteCounts {
    const minute = Math.floor(this.now() / 60_000);
    const bucket = this.buckets[minute % this.minutes]!;
    if (bucket.start !== minute * 60_000) Object.assign(bucket, { start: minute * 60_000, accepted: 0, refused: 0, commits: 0, commitSeconds: 0 });
    return bucket;
  }

  delivery(accepted: boolean): void {
    this.current()[accepted ? "accepted" : "refused"]++;
  }

  commit(seconds: number): void {
    const bucket = this.current();
    bucket.commits++;
    bucket.commitSeconds += seconds;
  }

  /** The last `count` minutes up to this one, oldest first; minutes without activity count zero. */
  last(count = this.minutes): MinuteCounts[] {
    const minute = Math.floor(this.now() / 60_000);
    const series: MinuteCounts[] = [];
    for (let m = minute - Math.min(count, this.minutes) + 1; m <= minute; m++) {
      const bucket = this.buckets[((m % this.minutes) + this.minutes) % this.minutes]!;
      series.push(bucket.start === m * 60_000 ? { ...bucket } : { start: m * 60_000, accepted: 0, refused: 0, commits: 0, commitSeconds: 0 });
    }
    return series;
  }
}
