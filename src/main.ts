// The executable: `icr-receiver [serve] [options]`. Exports nothing (a compiled entry must not).
import pkg from "../package.json";
import { createApp } from "./app.ts";
import { ConfigError, loadConfig, OPTIONS_HELP } from "./config.ts";
import { closeEventLog, openEventLog } from "./log/database.ts";
import { jsonLogger } from "./logger.ts";

const USAGE = `icr-receiver ${pkg.version}: verified ICR webhook deliveries into a durable SQLite event log

Usage: icr-receiver [serve] [options]     receive deliveries (the default command)
       icr-receiver --help | --version

${OPTIONS_HELP}`;

/** Exit status for configuration errors (sysexits EX_CONFIG), so systemd can refuse to loop on it. */
const EXIT_CONFIG = 78;

function fail(message: string, status = 1): never {
  process.stderr.write(`icr-receiver: ${message}\n`);
  process.exit(status);
}

async function serve(argv: string[]): Promise<void> {
  const logger = jsonLogger();
  const { config, notices } = loadConfig(argv, process.env);
  for (const notice of notices) logger("warn", notice);

  let database;
  try {
    database = openEventLog(config.databasePath);
  } catch (error) {
    fail(`cannot open the event log ${config.databasePath}: ${(error as Error).message}`);
  }
  const app = createApp(config, database, { logger });
  try {
    app.listen({ hostname: config.host, port: config.port });
  } catch (error) {
    closeEventLog(database);
    fail(`cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`);
  }
  const port = app.server!.port;
  logger("info", "listening", {
    host: config.host,
    port,
    webhookPath: config.webhookPath,
    database: config.databasePath,
    secretLabels: config.secrets.map((s) => s.label),
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger("info", "stopping", { signal });
    // Stops accepting, then waits for every request in flight: each 202 is committed before it is sent.
    await app.stop();
    closeEventLog(database);
    logger("info", "stopped", { signal });
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) return void process.stdout.write(`${USAGE}\n`);
  if (argv.includes("--version")) return void process.stdout.write(`${pkg.version}\n`);
  const [command, ...rest] = argv[0] !== undefined && !argv[0].startsWith("-") ? argv : ["serve", ...argv];
  if (command !== "serve") fail(`unknown command "${command}" (see --help)`, 2);
  await serve(rest);
}

main(Bun.argv.slice(2)).catch((error) => {
  if (error instanceof ConfigError) fail(error.message, EXIT_CONFIG);
  fail(error instanceof Error ? error.message : String(error));
});
