// The one place the HTTP concerns are composed. Tests build their own instance from a config and
// an open database; main.ts builds the production one the same way.
import { Elysia } from "elysia";
import pkg from "../package.json";
import type { Config } from "./config.ts";
import type { EventLogDatabase } from "./log/database.ts";
import { GroupCommit } from "./log/group-commit.ts";
import { EventQueries } from "./log/query.ts";
import { errorHandling } from "./http/errors.ts";
import { eventsApi } from "./http/events.ts";
import { health } from "./http/health.ts";
import { metricsEndpoint, ReceiverMetrics } from "./http/metrics.ts";
import { webhook, type DeliveryOutcome } from "./http/webhook.ts";
import { silentLogger, type Logger } from "./logger.ts";

// Resolved here, beside main.ts: in the compiled binary every module is bundled into one file at
// the root of src/, and the writer is embedded as its own entry point at log/writer-worker.
const WRITER_WORKER_URL = new URL("./log/writer-worker.ts", import.meta.url).href;

export interface AppOptions {
  logger?: Logger;
  /**
   * Seconds Bun gives a request body before it closes the connection: a trickle (under about
   * 16 KB/s) does not restart the timer, so a client that sends its body byte by byte is cut off.
   * Headers are cut off by Bun's own fixed timer (about 10 s), whatever this says. Bun's default,
   * stated here so that it is a decision; tests lower it.
   */
  idleTimeoutSeconds?: number;
}

/** The receiver over an open log; it starts the log's writer thread, which `stopApp` ends. */
export async function createApp(config: Config, database: EventLogDatabase, { logger = silentLogger, idleTimeoutSeconds = 10 }: AppOptions = {}) {
  const metrics = new ReceiverMetrics(database.path, pkg.version);
  const writer = await GroupCommit.start(
    { workerUrl: WRITER_WORKER_URL, path: database.path, busyTimeoutMs: database.busyTimeoutMs },
    ({ rows, seconds }) => metrics.commit(rows, seconds),
  );
  const queries = new EventQueries(database.db);
  const pathOf = (request: Request) => new URL(request.url).pathname;

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

  return new Elysia({
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
      }),
    )
    .use(health({ sqlite: database.sqlite, busyTimeoutMs: database.busyTimeoutMs, commitsFailing: () => writer.failing }))
    .decorate("logWriter", writer)
    .use(
      webhook({
        path: config.webhookPath,
        secrets: config.secrets,
        bodyLimit: config.bodyLimit,
        rejectionLimit: config.rejectionLimit,
        redact: [config.queryToken],
        writer,
        onOutcome,
      }),
    )
    .use(
      eventsApi({
        queries,
        queryToken: config.queryToken,
        onServed: (request) => logger("info", "request", { method: request.method, path: pathOf(request), status: 200 }),
      }),
    )
    .use(metricsEndpoint({ metrics, queryToken: config.queryToken }));
}

export type App = Awaited<ReturnType<typeof createApp>>;

/** Stops accepting, answers every request in flight (each 202 after its commit), ends the writer. */
export async function stopApp(app: App): Promise<void> {
  await app.stop();
  await app.decorator.logWriter.close();
}
