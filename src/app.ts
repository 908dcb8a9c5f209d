// The one place the HTTP concerns are composed. Tests build their own instance from a config and
// an open database; main.ts builds the production one the same way.
import { Elysia } from "elysia";
import type { Config } from "./config.ts";
import { EventAppender } from "./log/append.ts";
import type { EventLogDatabase } from "./log/database.ts";
import { EventQueries } from "./log/query.ts";
import { errorHandling } from "./http/errors.ts";
import { eventsApi } from "./http/events.ts";
import { health } from "./http/health.ts";
import { webhook } from "./http/webhook.ts";
import { silentLogger, type Logger } from "./logger.ts";

export interface AppOptions {
  logger?: Logger;
}

export function createApp(config: Config, database: EventLogDatabase, { logger = silentLogger }: AppOptions = {}) {
  const appender = new EventAppender(database);
  const queries = new EventQueries(database.db);
  return new Elysia({
    name: "icr-receiver",
    serve: {
      // Bun's own 413 has no JSON body, so its cap is lifted: the webhook route refuses anything
      // over the limit itself, reading at most the limit (declared or chunked), and no other
      // route reads a body at all.
      maxRequestBodySize: 2 ** 40,
      // A second receiver on the same port must fail, not silently share the traffic.
      reusePort: false,
    },
  })
    .use(errorHandling({ onUnexpected: (error) => logger("error", "unexpected error", { error: String(error) }) }))
    .use(health({ sqlite: database.sqlite, busyTimeoutMs: database.busyTimeoutMs }))
    .use(webhook({ path: config.webhookPath, secrets: config.secrets, bodyLimit: config.bodyLimit, appender }))
    .use(eventsApi({ queries, queryToken: config.queryToken }));
}

export type App = ReturnType<typeof createApp>;
