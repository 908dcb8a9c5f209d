// Prometheus text exposition of what an operator watches: deliveries by outcome and secret label,
// request and commit latency, commit batch sizes, database size, the last accepted delivery.
// Hand-written (a few counters and histograms) rather than a client library: nothing here needs
// more, and the hot path only increments numbers.
import { Elysia } from "elysia";
import { MinuteSeries } from "./activity.ts";
import { bearerAuth } from "./auth.ts";

const NEEDS_ESCAPE = /[\\"\n]/;
const escape = (value: string) =>
  NEEDS_ESCAPE.test(value) ? value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") : value;
/** A counter's key, computed for every delivery counted: one pass, no intermediate arrays. */
const labelText = (labels: Record<string, string>) => {
  let text = "";
  for (const key in labels) text += `${text === "" ? "{" : ","}${key}="${escape(labels[key]!)}"`;
  return text === "" ? "" : `${text}}`;
};

class Counter {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Record<string, string> = {}, by = 1): void {
    const key = labelText(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  render(): string {
    const lines = [...this.values].map(([labels, value]) => `${this.name}${labels} ${value}`);
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n${lines.join("\n")}${lines.length ? "\n" : ""}`;
  }
}

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, private readonly buckets: number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) this.counts[i]!++;
  }
  render(): string {
    const lines = this.buckets.map((le, i) => `${this.name}_bucket{le="${le}"} ${this.counts[i]}`);
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.count}`);
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n${lines.join("\n")}\n`;
  }
}

const gauge = (name: string, help: string, value: number) => `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${value}\n`;

const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const FORWARD_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What the metrics read from the log and from forwarding at each scrape. */
export interface ScrapedState {
  databaseBytes: number;
  commitFailing: boolean;
  /** Events the copies behind the log have yet to take (see EventLog.copiesBehind). */
  copiesBehind: { eventKeys: number; eventDigests: number };
  forwarding: readonly { name: string; pending: number; deadLetters: number; oldestUndeliveredAgeSeconds: number | null }[];
  consumers: readonly { name: string; lag: number }[];
}

const labelledGauge = (name: string, help: string, values: [Record<string, string>, number][]) =>
  `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${values.map(([labels, value]) => `${name}${labelText(labels)} ${value}\n`).join("")}`;

export class ReceiverMetrics {
  readonly accepted = new Counter("icr_receiver_deliveries_accepted_total", "Deliveries answered 202 (stored), by the label of the secret that verified them.");
  readonly duplicates = new Counter("icr_receiver_deliveries_duplicate_total", "Accepted deliveries whose signed payload was already in the log.");
  readonly unparsed = new Counter("icr_receiver_deliveries_unparsed_total", "Accepted deliveries whose signed data is not a readable event (stored unparsed), by reason.");
  readonly mismatches = new Counter("icr_receiver_envelope_mismatch_total", "Accepted deliveries whose unsigned top-level fields disagreed with the signed payload.");
  readonly rejected = new Counter("icr_receiver_deliveries_rejected_total", "Deliveries not stored, by reason and HTTP status.");
  readonly requestSeconds = new Histogram("icr_receiver_delivery_duration_seconds", "Time from a delivery's arrival to its answer.", LATENCY_BUCKETS);
  readonly commitSeconds = new Histogram("icr_receiver_commit_duration_seconds", "Time the writer thread spent on one durable commit.", LATENCY_BUCKETS);
  readonly batchRows = new Histogram("icr_receiver_commit_batch_size", "Deliveries stored by one commit.", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]);
  readonly forwardAttempts = new Counter("icr_receiver_forward_attempts_total", "Requests to a forwarding destination, by outcome (dead: the attempt after which the event became a dead letter).");
  readonly forwardDelivered = new Counter("icr_receiver_forward_delivered_total", "Events a destination answered with a 2xx, replays included.");
  readonly forwardSeconds = new Histogram("icr_receiver_forward_request_duration_seconds", "Time of one forwarding request, to its answer or its failure.", FORWARD_BUCKETS);
  readonly reconcileRuns = new Counter("icr_receiver_reconcile_runs_total", "Scheduled reconciliations with ICR's API, by outcome (ok, failed).");
  /** Scheduled reconciliation: null while off (then none of its metrics is exposed). */
  private reconcile: { intervalSeconds: number; lastSuccess: number; gaps: Record<string, number> | null } | null = null;
  private lastAccepted = 0;
  readonly startedAt = Date.now() / 1000;
  /** Event streams open now (GET /events/stream). */
  openStreams = 0;
  /** The same deliveries and commits, per minute over the last hours (the console's health chart). */
  readonly perMinute = new MinuteSeries();

  constructor(private readonly version: string) {}

  forwardAttempt({ destination, outcome, seconds }: { destination: string; outcome: string; seconds: number }): void {
    this.forwardAttempts.inc({ destination, outcome });
    if (outcome === "delivered") this.forwardDelivered.inc({ destination });
    this.forwardSeconds.observe(seconds);
  }

  delivery(
    outcome:
      | { accepted: true; secretLabel: string; duplicate: boolean; envelopeMismatch: boolean; unparsedReason: string | null }
      | { accepted: false; status: number; reason: string },
    seconds: number,
  ): void {
    this.requestSeconds.observe(seconds);
    this.perMinute.delivery(outcome.accepted);
    if (!outcome.accepted) return this.rejected.inc({ reason: outcome.reason, status: String(outcome.status) });
    this.accepted.inc({ secret_label: outcome.secretLabel });
    if (outcome.duplicate) this.duplicates.inc();
    if (outcome.envelopeMismatch) this.mismatches.inc();
    if (outcome.unparsedReason !== null) this.unparsed.inc({ reason: outcome.unparsedReason });
    this.lastAccepted = Date.now() / 1000;
  }

  /** Turns the reconciliation metrics on, for a schedule of one run every `intervalSeconds`. */
  reconcileScheduled(intervalSeconds: number): void {
    this.reconcile = { intervalSeconds, lastSuccess: 0, gaps: null };
  }

  /** A scheduled run that finished: its gaps by kind, or null for a failed run (the last gaps stand). */
  reconcileRun(gaps: Record<string, number> | null): void {
    if (this.reconcile === null) return;
    this.reconcileRuns.inc({ outcome: gaps === null ? "failed" : "ok" });
    if (gaps === null) return;
    this.reconcile.gaps = gaps;
    this.reconcile.lastSuccess = Date.now() / 1000;
  }

  commit({ rows, seconds }: { rows: number; seconds: number }): void {
    this.batchRows.observe(rows);
    this.commitSeconds.observe(seconds);
    this.perMinute.commit(seconds);
  }

  render({ databaseBytes, commitFailing, copiesBehind, forwarding, consumers }: ScrapedState): string {
    return [
      `# HELP icr_receiver_build_info The running version.\n# TYPE icr_receiver_build_info gauge\nicr_receiver_build_info{version="${escape(this.version)}"} 1\n`,
      this.accepted.render(),
      this.duplicates.render(),
      this.unparsed.render(),
      this.mismatches.render(),
      this.rejected.render(),
      this.requestSeconds.render(),
      this.commitSeconds.render(),
      this.batchRows.render(),
      gauge("icr_receiver_database_size_bytes", "Size of the event log file and its write-ahead log.", databaseBytes),
      gauge("icr_receiver_last_accepted_delivery_timestamp_seconds", "Unix time of the last accepted delivery (0: none since start).", this.lastAccepted),
      gauge("icr_receiver_start_time_seconds", "Unix time the receiver started.", this.startedAt),
      gauge("icr_receiver_streams_open", "Event streams (GET /events/stream) open now.", this.openStreams),
      gauge("icr_receiver_log_commit_failing", "1 while the last commit of the event log failed (disk full, lock held), else 0.", commitFailing ? 1 : 0),
      gauge("icr_receiver_event_keys_behind_events", "Newest events not yet copied into event_keys (queries read them from events meanwhile).", copiesBehind.eventKeys),
      gauge("icr_receiver_event_digests_behind_events", "Newest events not yet copied into event_digests (the writer holds their digests in memory meanwhile).", copiesBehind.eventDigests),
      gauge("icr_receiver_resident_memory_bytes", "Resident set size of the process.", process.memoryUsage().rss),
      ...(this.reconcile === null
        ? []
        : [
            this.reconcileRuns.render(),
            gauge("icr_receiver_reconcile_interval_seconds", "How often the log is reconciled with ICR's API (--reconcile-every).", this.reconcile.intervalSeconds),
            gauge("icr_receiver_reconcile_last_success_timestamp_seconds", "Unix time the last successful reconciliation ended (0: none since start).", this.reconcile.lastSuccess),
            ...(this.reconcile.gaps === null
              ? []
              : [labelledGauge("icr_receiver_reconcile_gaps", "Gaps the last successful reconciliation found, by kind (missed_installation, missed_uninstallation, missed_transaction).", Object.entries(this.reconcile.gaps).map(([kind, n]) => [{ kind }, n]))]),
          ]),
      labelledGauge("icr_receiver_consumer_lag_events", "Events in the log after a named consumer's acknowledged position.", consumers.map((c) => [{ consumer: c.name }, c.lag])),
      ...(forwarding.length === 0
        ? []
        : [
            this.forwardAttempts.render(),
            this.forwardDelivered.render(),
            this.forwardSeconds.render(),
            labelledGauge("icr_receiver_forward_lag_events", "Events in the log not yet delivered (or dead-lettered) to a destination.", forwarding.map((d) => [{ destination: d.name }, d.pending])),
            labelledGauge("icr_receiver_forward_dead_letters", "Dead letters of a destination, not yet replayed.", forwarding.map((d) => [{ destination: d.name }, d.deadLetters])),
            labelledGauge("icr_receiver_forward_oldest_undelivered_age_seconds", "Age of the oldest event not yet delivered to a destination (0: none).", forwarding.map((d) => [{ destination: d.name }, Math.round(d.oldestUndeliveredAgeSeconds ?? 0)])),
          ]),
    ].join("");
  }
}

interface MetricsOptions {
  metrics: ReceiverMetrics;
  scrape: () => ScrapedState;
  queryToken: string;
}

export const metricsEndpoint = ({ metrics, scrape, queryToken }: MetricsOptions) =>
  new Elysia({ name: "metrics" })
    .use(bearerAuth(queryToken))
    .get("/metrics", () => new Response(metrics.render(scrape()), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } }));
