// `--reconcile-every`: reconciliation inside the server, one run at a time, the next one `everyMs`
// after the previous one ended (a slow ICR never stacks runs up). Runs only read ICR and the log
// and write one row: ingest goes on meanwhile. A failed run is kept and reported, never fatal.
import type { ScheduledReconcile } from "../config.ts";
import type { EventLog } from "../log/event-log.ts";
import type { Logger } from "../logger.ts";
import { IcrApi, IcrApiError } from "./icr-api.ts";
import { reconcile, runRecord, type ReconcileOptions, type ReconcileResult } from "./reconcile.ts";

export interface ScheduleOptions {
  log: EventLog;
  logger: Logger;
  userAgent: string;
  /** Told of every run that finished: its result, or its error. */
  onRun: (outcome: { result: ReconcileResult } | { error: string }) => void;
  /** Tests shorten ICR's backoff and the settle time. */
  api?: ConstructorParameters<typeof IcrApi>[1];
  reconcile?: Omit<ReconcileOptions, "since">;
}

/** Starts the schedule (the first run right away); `stop` aborts a run in flight and waits for it. */
export function startReconcileSchedule({ api: config, everyMs }: ScheduledReconcile, options: ScheduleOptions) {
  const abort = new AbortController();
  const api = new IcrApi(config, { userAgent: options.userAgent, ...options.api, signal: abort.signal });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> | undefined;

  const runOnce = async () => {
    const startedAt = new Date().toISOString();
    const started = performance.now();
    try {
      const result = await reconcile(api, options.log, options.reconcile);
      options.log.reconcileRuns.record(runRecord("schedule", { result }));
      options.onRun({ result });
      const gaps = result.gaps.length;
      options.logger(gaps > 0 ? "warn" : "info", "reconcile", {
        gaps,
        ...result.counts,
        installationsChecked: result.installationsChecked,
        transactionsChecked: result.transactionsChecked,
        ms: Math.round(performance.now() - started),
      });
    } catch (error) {
      if (abort.signal.aborted) return;
      // IcrApiError messages are written to hold no credential; anything else is reduced to its first line.
      const message = error instanceof IcrApiError ? error.message : `${(error as Error).name}: ${(error as Error).message?.split("\n")[0]}`;
      try {
        options.log.reconcileRuns.record(runRecord("schedule", { startedAt, error: message }));
      } catch {
        // The log's file refused the row (full disk, say): the line below still tells the operator.
      }
      options.onRun({ error: message });
      options.logger("error", "reconcile failed", { error: message, ms: Math.round(performance.now() - started) });
    }
  };
  const schedule = (ms: number) => {
    timer = setTimeout(() => {
      running = runOnce().finally(() => {
        running = undefined;
        if (!abort.signal.aborted) schedule(everyMs);
      });
    }, ms);
  };
  schedule(0);
  return {
    async stop() {
      abort.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
