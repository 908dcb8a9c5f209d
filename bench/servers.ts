// The four servers the benchmark compares, each started fresh (new port, new data directory) for
// every measurement, on 127.0.0.1 only.
import type { Subprocess } from "bun";
import { join } from "node:path";
import { freePort, spawnTracked, stop, waitForHttp200, waitForTcp } from "./processes.ts";

export type ServerKind = "ceiling" | "floor" | "express" | "receiver";
export const SERVER_KINDS: readonly ServerKind[] = ["ceiling", "floor", "express", "receiver"];

export const SERVER_LABELS: Record<ServerKind, string> = {
  ceiling: "HTTP ceiling (bun-ceiling.ts)",
  floor: "durable floor (bun-durable-floor.ts)",
  express: "Express peer (better-sqlite3)",
  receiver: "icr-receiver (compiled)",
};

export interface Paths {
  peersDir: string;
  expressDir: string;
  receiverBinary: string;
}

export interface Secrets {
  webhookSecret: string;
  queryToken: string;
}

export interface RunningServer {
  kind: ServerKind;
  child: Subprocess;
  port: number;
  dataDir: string;
  /** The receiver's SQLite log (null for the peers, whose tables differ). */
  receiverDb: string | null;
  /** performance.now() just before spawn and when it first accepted / answered. */
  spawnedAt: number;
  readyAt: number;
}

/** The environment without anything that would change a server's behaviour behind our back. */
function cleanEnv(extra: Record<string, string>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("ICR_RECEIVER_") && !["PORT", "DB", "SECRET", "SYNC", "NODE_ENV"].includes(key)) env[key] = value;
  }
  return { ...env, ...extra };
}

function command(
  kind: ServerKind,
  paths: Paths,
  secrets: Secrets,
  port: number,
  dataDir: string,
  extraEnv: Record<string, string>,
): { cmd: string[]; env: Record<string, string | undefined>; cwd: string } {
  switch (kind) {
    case "ceiling":
      return { cmd: [process.execPath, join(paths.peersDir, "bun-ceiling.ts")], env: cleanEnv({ PORT: String(port) }), cwd: dataDir };
    case "floor":
      return {
        cmd: [process.execPath, join(paths.peersDir, "bun-durable-floor.ts")],
        env: cleanEnv({ PORT: String(port), DB: join(dataDir, "durable-floor.db") }),
        cwd: dataDir,
      };
    case "express":
      return {
        cmd: ["node", join(paths.expressDir, "server.mjs")],
        env: cleanEnv({ PORT: String(port), DB: join(dataDir, "peer.db"), SECRET: secrets.webhookSecret }),
        cwd: paths.expressDir,
      };
    case "receiver":
      return {
        cmd: [paths.receiverBinary],
        env: cleanEnv({
          ICR_RECEIVER_HOST: "127.0.0.1",
          ICR_RECEIVER_PORT: String(port),
          ICR_RECEIVER_DATA_DIR: dataDir,
          ICR_RECEIVER_SECRET: secrets.webhookSecret,
          ICR_RECEIVER_QUERY_TOKEN: secrets.queryToken,
          ...extraEnv,
        }),
        cwd: dataDir,
      };
  }
}

/**
 * Starts a server on a free port with `dataDir` as its data directory and waits until it is
 * ready: the receiver when GET /healthz answers 200, the peers when they accept connections.
 * `receiverEnv`: more ICR_RECEIVER_* settings for the receiver (forwarding, see forward.ts; a log
 * outside the data directory, see query.ts).
 */
export async function startServer(
  kind: ServerKind,
  paths: Paths,
  secrets: Secrets,
  dataDir: string,
  receiverEnv: Record<string, string> = {},
): Promise<RunningServer> {
  const port = freePort();
  const { cmd, env, cwd } = command(kind, paths, secrets, port, dataDir, receiverEnv);
  const spawnedAt = performance.now();
  const child = spawnTracked(cmd, { env, cwd, logFile: join(dataDir, `${kind}.log`) });
  const receiverDb = kind === "receiver" ? (receiverEnv.ICR_RECEIVER_DB ?? join(dataDir, "icr-receiver.db")) : null;
  const server: RunningServer = { kind, child, port, dataDir, receiverDb, spawnedAt, readyAt: NaN };
  try {
    if (kind === "receiver") {
      server.readyAt = await waitForHttp200(child, `http://127.0.0.1:${port}/healthz`, SERVER_LABELS[kind]);
    } else {
      await waitForTcp(child, port, SERVER_LABELS[kind]);
      server.readyAt = performance.now();
    }
  } catch (error) {
    await stop(child);
    throw new Error(`${(error as Error).message}; its output:\n${await serverLogTail(server)}`);
  }
  return server;
}

/** The last lines a server wrote, for error messages. */
export async function serverLogTail(server: RunningServer, lines = 20): Promise<string> {
  const file = Bun.file(join(server.dataDir, `${server.kind}.log`));
  if (!(await file.exists())) return "";
  return (await file.text()).split("\n").slice(-lines).join("\n");
}
