// The one place the HTTP concerns are composed. Tests build their own instance from a config and
// an open event log; main.ts builds the production one the same way.
import { Elysia } from "elysia";
import pkg from "../package.json";
import type { Config } from "./config.ts";
import { openEventLog, openLogInspection, type EventLog } from "./log/event-log.ts";
import { startForwarding, type Forwarding } from "./forward/forwarding.ts";
import { openForwardProgress, type ForwardProgress } from "./forward/progress.ts";
import { errorHandling } from "./http/errors.ts";
import { consumersApi } from "./http/consumers.ts";
import { forwardApi } from "./http/forward.ts";
import { streamApi } from "./http/stream.ts";
import { eventsApi } from "./http/events.ts";
import { health } from "./http/health.ts";
import { metricsEndpoint, ReceiverMetrics } from "./http/metrics.ts";
import { RejectionLimiter } from "./http/rejection-limit.ts";
import { webhook, type DeliveryOutcome } from "./http/webhook.ts";
import { consoleErrorPages, operatorConsole } from "./console/console.ts";
import type { Sessions } from "./console/sessions.ts";
import { silentLogger, type Logger } from "./logger.ts";
import { startReconcileSchedule, type ScheduleOptions } from "./reconcile/schedule.ts";

export interface AppOptions {
  logger?: Logger;
  /** Where the deliveries are counted; give the same instance the log reports its commits to. */
  metrics?: ReceiverMetrics;
  /** Forwarding's progress, when destinations are configured: its API and metrics. */
  forwardProgress?: ForwardProgress;
  /** Tells a listener of every commit of the log (event streams follow them); returns how to stop. */
  onCommit?: (listener: () => void) => () => void;
  /** How often an idle event stream gets a comment line, and what it may buffer; tests shrink them. */
  streamHeartbeatMs?: number;
  streamBufferBytes?: number;
  /**
   * Seconds Bun gives a request body before it closes the connection: a trickle (under about
   * 16 KB/s) does not restart the timer, so a client that sends its body byte by byte is cut off.
   * Headers are cut off by Bun's own fixed timer (about 10 s), whatever this says. Bun's default,
   * stated here so that it is a decision; tests lower it.
   */
  idleTimeoutSeconds?: number;
  /** The console's sessions, and how often its live streams check theirs; tests give their own. */
  console?: { sessions?: Sessions; sessionCheckMs?: number };
}

/**
 * The receiver over an open event log, and `close`: stop accepting, then answer every request in
 * flight (each 202 after its commit). The log stays open: its owner closes it after `close`.
 */
export function createApp(
  config: Config,
  log: EventLog,
  {
    logger = silentLogger,
    metrics = new ReceiverMetrics(pkg.version),
    forwardProgress,
    onCommit = () => () => {},
    streamHeartbeatMs,
    streamBufferBytes,
    idleTimeoutSeconds = 10,
    console: consoleOptions = {},
  }: AppOptions = {},
) {
  const streams = streamApi({
    events: log,
    queryToken: config.queryToken,
    onCommit,
    maxStreams: config.streamLimit,
    heartbeatMs: streamHeartbeatMs,
    bufferBytes: streamBufferBytes,
    onOpenStreams: (open) => (metrics.openStreams = open),
  });
  const pathOf = (request: Request) => new URL(request.url).pathname;
  // One allowance per client for every refusal: forged deliveries and wrong console logins alike.
  const limiter = new RejectionLimiter(config.rejectionLimit);
  const consoleUi = config.console
    ? operatorConsole({
        queryToken: config.queryToken,
        events: log,
        consumers: log.consumers,
        inspection: () => openLogInspection(log.path),
        limiter,
        openStream: streams.open,
        forwardProgress,
        health: {
          databasePath: log.path,
          version: pkg.version,
          startedAt: metrics.startedAt,
          writable: () => log.writable(),
          commitFailing: () => log.commitFailing,
          openStreams: () => metrics.openStreams,
          perMinute: metrics.perMinute,
        },
        ...consoleOptions,
        logger,
      })
    : undefined;

  // One log line and one count per delivery; never its body, never a secret (only its label).
  const onOutcome = (outcome: DeliveryOutcome, remoteAddress: string | null, seconds: number) => {
    const ms = Math.round(seconds * 10_000) / 10;
    if (outcome.accepted) {
      const { appended, secretLabel, envelopeMismatch, event, unparsedReason } = outcome;
      metrics.delivery({ accepted: true, secretLabel, duplicate: appended.duplicate, envelopeMismatch, unparsedReason }, seconds);
      // Authentic but unreadable: stored, and worth a look (ICR may have changed its payloads).
      if (unparsedReason !== null) {
        logger("warn", "delivery", { status: 202, id: appended.id, duplicate: appended.duplicate, unparsedReason, secretLabel, envelopeMismatch, remoteAddress, ms });
      } else {
        logger("info", "delivery", { status: 202, id: appended.id, duplicate: appended.duplicate, event, secretLabel, envelopeMismatch, remoteAddress, ms });
      }
    } else {
      metrics.delivery(outcome, seconds);
      const { status, reason, detail } = outcome;
      logger(status >= 500 ? "error" : "warn", "delivery", { status, reason, ...(detail && { detail }), remoteAddress, ms });
    }
  };

  const app = new Elysia({
    name: "icr-receiver",
    serve: {
      // Bun's own 413 has no JSON body, so its cap is lifted: the webhook route refuses anything
      // over the limit itself, reading at most the limit (declared or chunked), and no other
      // route reads a body at all.
      maxRequestBodySize: 2 ** 40,
      // A second receiver on the same port must fail, not silently share the traffic, unless the
      // operator asks for it to hand over without a gap (see the README's upgrade steps).
      reusePort: config.reusePort,
      idleTimeout: idleTimeoutSeconds,
    },
  })
    .use(
      errorHandling({
        onUnexpected: (error) => logger("error", "unexpected error", { error: String(error) }),
        onAnswer: (request, status, reason) => logger("warn", "request", { method: request.method, path: pathOf(request), status, reason }),
        ...(consoleUi !== undefined && { pages: consoleErrorPages }),
      }),
    )
    .use(health({ writable: () => log.writable() }))
    .use(
      webhook({
        path: config.webhookPath,
        secrets: config.secrets,
        bodyLimit: config.bodyLimit,
        limiter,
        log,
        onOutcome,
      }),
    )
    // Before /events/:id, so that "stream" is not taken for an id.
    .use(streams.plugin)
    .use(
      eventsApi({
        events: log,
        queryToken: config.queryToken,
        onServed: (request) => logger("info", "request", { method: request.method, path: pathOf(request), status: 200 }),
      }),
    )
    .use(consumersApi({ consumers: log.consumers, events: log, queryToken: config.queryToken }))
    .use(
      metricsEndpoint({
        metrics,
        scrape: () => ({
          databaseBytes: log.sizeBytes(),
          commitFailing: log.commitFailing,
          copiesBehind: log.copiesBehind(),
          forwarding: forwardProgress?.status() ?? [],
          consumers: log.consumers.list(),
        }),
        queryToken: config.queryToken,
      }),
    );
  if (forwardProgress !== undefined) app.use(forwardApi({ progress: forwardProgress, queryToken: config.queryToken }));
  if (consoleUi !== undefined) app.use(consoleUi.plugin);
  return {
    app,
    async close() {
      // Streams never end by themselves: end them, so that stopping waits only for real requests.
      streams.closeAll();
      await app.stop();
      consoleUi?.close();
    },
  };
}

export interface ReceiverOptions extends AppOptions {
  /** How long a write waits for a lock another process holds before it fails (ms). */
  busyTimeoutMs?: number;
  /** Tests shorten the scheduled reconciliation's backoff and settle time. */
  reconcile?: Pick<ScheduleOptions, "api" | "reconcile">;
}

/**
 * The whole receiver over `config`: its event log, forwarding when destinations are configured,
 * and the app (not yet listening). `close` stops it in order: no new requests, every one in flight
 * answered, forwarding's requests settled, the log closed.
 */
export async function startReceiver(config: Config, { logger = silentLogger, busyTimeoutMs, reconcile, ...options }: ReceiverOptions = {}) {
  const metrics = options.metrics ?? new ReceiverMetrics(pkg.version);
  let forwarding: Forwarding | undefined;
  const commitListeners = new Set<() => void>();
  const log = await openEventLog(config.databasePath, {
    busyTimeoutMs,
    checkpoints: config.checkpoints,
    redact: [config.queryToken],
    onCommit: (stats) => {
      metrics.commit(stats);
      forwarding?.poke();
      for (const listener of commitListeners) listener();
    },
  });
  const forwardProgress = config.forwarding === null ? undefined : openForwardProgress(config.databasePath, config.forwarding.destinations);
  try {
    if (config.forwarding !== null) {
      forwarding = await startForwarding(config.databasePath, config.forwarding, {
        busyTimeoutMs,
        checkpoints: config.checkpoints,
        userAgent: `icr-receiver/${pkg.version}`,
        onAttempt: (attempt) => {
          metrics.forwardAttempt(attempt);
          if (attempt.outcome === "delivered") return;
          // One line per failed attempt: the destination, the event, what went wrong; never a body or a secret.
          const { destination, eventId, attempt: n, status, error, replay } = attempt;
          const dead = attempt.outcome === "dead";
          logger(dead ? "error" : "warn", dead ? "forward dead letter" : "forward attempt failed", {
            destination,
            eventId,
            attempt: n,
            ...(status !== null && { status }),
            error,
            ...(replay && { replay }),
          });
        },
      });
    }
  } catch (error) {
    forwardProgress?.close();
    await log.close();
    throw error;
  }
  const onCommit = (listener: () => void) => (commitListeners.add(listener), () => void commitListeners.delete(listener));
  const { app, close } = createApp(config, log, { ...options, logger, metrics, forwardProgress, onCommit });
  if (config.reconcile) metrics.reconcileScheduled(config.reconcile.everyMs / 1000);
  // Off the request path: a run only reads ICR and the log, and writes its one row when done.
  const reconciling = config.reconcile
    ? startReconcileSchedule(config.reconcile, {
        log,
        logger,
        userAgent: `icr-receiver/${pkg.version}`,
        onRun: (outcome) => metrics.reconcileRun("result" in outcome ? outcome.result.counts : null),
        ...reconcile,
      })
    : undefined;
  return {
    app,
    log,
    async close() {
      await reconciling?.stop();
      await close();
      await forwarding?.stop();
      forwardProgress?.close();
      await log.close();
    },
  };
}
