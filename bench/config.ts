// What one benchmark run does, in full and in quick mode, and the targets of issues 3 and 17.

export interface Settings {
  mode: "full" | "quick";
  /** wrk threads (each with its own Lua state and its own share of the deliveries). */
  threads: number;
  /** Keep-alive connection counts of the ingest runs; the first one is the one the targets use. */
  connections: number[];
  warmupSeconds: number;
  seconds: number;
  /**
   * Connections are many and mostly idle on purpose: wrk corrects its percentiles for coordinated
   * omission by adding samples for every response slower than twice connections/rate, and here a
   * slow response delays no other request (each one claims the next slot of the thread's schedule),
   * so that correction must stay far above the 5 ms target (64 connections at 1,000 req/s: 128 ms).
   */
  fixedRate: { rate: number; connections: number; warmupSeconds: number; seconds: number };
  sustained: { seconds: number; rssEarlyAt: number };
  /** The long-lived app's log (big-log.ts, cached) and the queries on it (query.ts). */
  query: {
    events: number;
    /** Of every 10 events, how many are the (event, organization) pair the benchmark pages through. */
    matchingPerTen: number;
    pages: number;
    repeats: number;
  };
  /** Forwarding (forward.ts): the ingest rows again with the receiver forwarding to bench/sink.ts,
   * then an outage of the sink. */
  forward: {
    /** Deliveries ingested while the sink is down: the backlog the drain then sends. */
    outageEvents: number;
    /** Before the outage: ingest with the sink up for this long, then forwarding catches up. */
    warmupSeconds: number;
    /** After a load with the sink up: the longest wait for pending 0 before the lag is reported as it is. */
    catchUpTimeoutSeconds: number;
    /** After the outage: the longest wait for pending 0 from sink-up (longer is a failed run). */
    drainTimeoutSeconds: number;
  };
  /** The whole run is aborted (and cleaned up) past this; building the log (once per cache key) comes on top. */
  watchdogSeconds: number;
}

export const FULL: Settings = {
  mode: "full",
  threads: 2,
  connections: [32, 256],
  warmupSeconds: 2,
  seconds: 10,
  fixedRate: { rate: 1000, connections: 64, warmupSeconds: 2, seconds: 10 },
  sustained: { seconds: 60, rssEarlyAt: 10 },
  // 20% of 10,000,000 = 2,000,000 matching events: 20,000 pages of 100.
  query: { events: 10_000_000, matchingPerTen: 2, pages: 1000, repeats: 200 },
  forward: { outageEvents: 500_000, warmupSeconds: 5, catchUpTimeoutSeconds: 120, drainTimeoutSeconds: 240 },
  watchdogSeconds: 25 * 60,
};

export const QUICK: Settings = {
  mode: "quick",
  threads: 2,
  connections: [32, 256],
  warmupSeconds: 1,
  seconds: 3,
  fixedRate: { rate: 1000, connections: 64, warmupSeconds: 1, seconds: 3 },
  sustained: { seconds: 12, rssEarlyAt: 4 },
  // 60% of 200,000 = 120,000 matching events: still 1,000 full pages to walk.
  query: { events: 200_000, matchingPerTen: 6, pages: 1000, repeats: 50 },
  forward: { outageEvents: 50_000, warmupSeconds: 2, catchUpTimeoutSeconds: 60, drainTimeoutSeconds: 60 },
  watchdogSeconds: 6 * 60,
};

export const TARGETS = {
  /** Receiver req/s at the first connection count, as a multiple of the durable floor's (issue 17;
   * issue 3's 0.6 was retired for this machine). */
  floorRatio: 0.5,
  /** ... and of the Express peer's (issue 17; was 8). */
  expressRatio: 6,
  /** p99 at the fixed rate, ms. */
  fixedRateP99Ms: 5,
  /** p95 of GET /events pages (first page and the 1,000th), ms. */
  queryP95Ms: 10,
  /** "Page 1000 as fast as page 1": its p50 at most this multiple of page 1's p50. */
  lastPageSlowdown: 1.5,
  /** The long-lived app's log: idle RSS at most this much above the same receiver's on an empty log. */
  idleRssOverEmptyBytes: 20e6,
  /** ... spawn to the first 202 at most this (ms), and at most this multiple of the empty log's. */
  firstAcceptMs: 300,
  firstAcceptOverEmpty: 2,
  /** Peak RSS of the receiver during the ingest runs, bytes (MB = 10^6 bytes throughout). */
  peakRssBytes: 150e6,
  /** "No growth": RSS at the end of the sustained run at most this much above RSS early in it
   * (a garbage-collected runtime's RSS wobbles by a few MB; a leak under ~20,000 req/s does not stay
   * that small for a minute). */
  rssGrowthBytes: 10e6,
  /** Forwarding's outage: peak RSS while the backlog builds and drains, at most this much above the
   * peak of the warm-up (which ingested and forwarded the same way with no backlog). The sustained
   * run's 10 MB for a garbage-collected runtime's wobble and nothing more: the 10 MB once allowed for
   * the writer's in-memory digest index, which grew with the log, is gone now that memory must not
   * grow with the log (the long-lived app's idle RSS row). A forwarder that kept 20 B or more per
   * pending event in memory exceeds it at 500,000 events. */
  outageRssGrowthBytes: 10e6,
} as const;
