// The executable: `icr-receiver [serve] [options]`. Exports nothing (a compiled entry must not).
import { mkdirSync, readFileSync } from "node:fs";
import pkg from "../package.json";
import { startReceiver } from "./app.ts";
import { commands, COMMANDS_HELP } from "./cli/index.ts";
import { ConfigError, loadConfig, OPTIONS_HELP } from "./config.ts";
import { jsonLogger } from "./logger.ts";
import { notifyReady, notifyStopping, startWatchdog } from "./service/systemd.ts";

const USAGE = `icr-receiver ${pkg.version}: verified ICR webhook deliveries into a durable SQLite event log

Usage: icr-receiver [serve] [options]     receive deliveries (the default command)
       icr-receiver COMMAND [options]     operate on the event log (COMMAND --help for each)
       icr-receiver --help | --version

${OPTIONS_HELP}

${COMMANDS_HELP}`;

/** Exit status for configuration errors (sysexits EX_CONFIG), so systemd can refuse to loop on it. */
const EXIT_CONFIG = 78;

const logger = jsonLogger();

/** Whether Linux hands a closing listener's queued connections to the others sharing its port. */
function tcpMigrateReqEnabled(): boolean {
  try {
    return readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim() === "1";
  } catch {
    return false;
  }
}

function fail(message: string, status = 1): never {
  logger.flush();
  process.stderr.write(`icr-receiver: ${message}\n`);
  process.exit(status);
}

async function serve(argv: string[]): Promise<void> {
  const { config, notices, defaultDataDir } = loadConfig(argv, process.env);
  if (defaultDataDir) mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  for (const notice of notices) logger("warn", notice);
  if (config.reusePort && !tcpMigrateReqEnabled()) {
    logger("warn", "port sharing is on but net.ipv4.tcp_migrate_req is not 1: connections queued on a receiver that stops are reset instead of handed over");
  }

  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  try {
    receiver = await startReceiver(config, { logger });
  } catch (error) {
    fail(`cannot open the event log ${config.databasePath}: ${(error as Error).message}`);
  }
  const { app } = receiver;
  try {
    app.listen({ hostname: config.host, port: config.port });
  } catch (error) {
    await receiver.close();
    fail(`cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`);
  }
  const port = app.server!.port;

  // Under systemd a lost notification means a start timeout or a watchdog kill: say why in the log.
  const notifyOptions = { onError: (reason: string) => logger("warn", "sd_notify failed", { reason }) };
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    notifyStopping(undefined, notifyOptions);
    logger("info", "stopping", { signal });
    // Stops accepting, then waits for every request in flight: each 202 is committed before it is sent.
    await receiver.close();
    logger("info", "stopped", { signal });
    logger.flush();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  // Logged once the graceful stop is in place: whoever waits for this line may signal at once.
  logger("info", "listening", {
    host: config.host,
    port,
    webhookPath: config.webhookPath,
    database: config.databasePath,
    secretLabels: config.secrets.map((s) => s.label),
    ...(config.forwarding && { forwardingTo: config.forwarding.destinations.map((d) => d.name) }),
  });
  // Type=notify: ready only now, listening on a migrated log with the graceful stop in place.
  notifyReady(`listening on ${config.host}:${port}`, notifyOptions);
  startWatchdog(notifyOptions);
}

async function main(argv: string[]): Promise<void> {
  const operatorCommand = argv[0] !== undefined && Object.hasOwn(commands, argv[0]) ? commands[argv[0]] : undefined;
  if (operatorCommand !== undefined) {
    // exitCode, not exit(): lets stdout drain into a pipe before the process ends.
    process.exitCode = await operatorCommand.run(argv.slice(1));
    return;
  }
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
