// Test servers: a real listening receiver on a loopback port, on its own temporary database.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startReceiver, type ReceiverOptions } from "../../src/app.ts";
import type { Config } from "../../src/config.ts";
import { openDatabase, type EventLogDatabase } from "../../src/log/database.ts";
import type { EventLog } from "../../src/log/event-log.ts";
import { signDelivery } from "../../src/verify/sign-delivery.ts";
import { FIXTURE_SECRET } from "./fixtures.ts";

export const QUERY_TOKEN = "test-query-token-0123456789";

const tempDirs: string[] = [];

export function tempDir(prefix = "icr-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** Removes every tempDir made in this process (test/support/cleanup.ts, after the last test). */
export function removeTempDirs(): void {
  for (const dir of tempDirs.splice(0)) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Left behind (a mount still on it, say): the system's temp cleaning has it.
    }
  }
}

export function testConfig(dataDir: string, overrides: Partial<Config> = {}): Config {
  return {
    host: "127.0.0.1",
    port: 0,
    webhookPath: "/webhook",
    dataDir,
    databasePath: join(dataDir, "icr-receiver.db"),
    secrets: [{ label: "default", secret: FIXTURE_SECRET }],
    queryToken: QUERY_TOKEN,
    bodyLimit: 1024 * 1024,
    // Tests send many refused deliveries from one address on purpose; the limiter has its own test.
    rejectionLimit: 0,
    reusePort: false,
    forwarding: null,
    streamLimit: 100,
    console: true,
    ...overrides,
  };
}

export interface TestServer {
  url: string;
  config: Config;
  log: EventLog;
  /** A connection of the test's own to the log's file (the receiver's are its own business). */
  database: EventLogDatabase;
  post(body: string | Uint8Array, headers?: Record<string, string>): Promise<Response>;
  query(path: string, token?: string | null): Promise<Response>;
  stop(): Promise<void>;
}

/** The receiver as main.ts builds it, over its own log in `config`, listening on a free loopback port. */
export async function startApp(config: Config, options: ReceiverOptions = {}) {
  const receiver = await startReceiver(config, options);
  receiver.app.listen({ hostname: "127.0.0.1", port: 0 });
  return { ...receiver, port: receiver.app.server!.port! };
}

export async function startServer(overrides: Partial<Config> = {}, options: ReceiverOptions = {}): Promise<TestServer> {
  const dataDir = tempDir();
  const config = testConfig(dataDir, overrides);
  const { log, port, close } = await startApp(config, options);
  const database = openDatabase(config.databasePath, { migrate: false });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    config,
    log,
    database,
    post: (body, headers = {}) =>
      fetch(url + config.webhookPath, { method: "POST", headers: { "content-type": "application/json", ...headers }, body }),
    query: (path, token = QUERY_TOKEN) =>
      fetch(url + path, { headers: token === null ? {} : { authorization: `Bearer ${token}` } }),
    async stop() {
      await close();
      database.sqlite.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A receiver of its own that takes `count` deliveries and is closed right after (before any
 * delay of the work it does behind its commits is up): the path of its log.
 */
export async function logAfterQuickStop(count: number): Promise<string> {
  const config = testConfig(tempDir());
  const receiver = await startApp(config);
  for (let n = 0; n < count; n++) {
    const { body, headers } = signedDelivery({ event: "suspended" });
    const response = await fetch(`http://127.0.0.1:${receiver.port}${config.webhookPath}`, { method: "POST", headers, body });
    if (response.status !== 202) throw new Error(`delivery ${n + 1} was answered ${response.status}`);
  }
  await receiver.close();
  return config.databasePath;
}

let counter = 0;

/** A distinct, validly signed delivery (payload, body and header), as ICR would send it. */
export function signedDelivery(
  payload: Record<string, unknown> = {},
  { secret = FIXTURE_SECRET, envelope }: { secret?: string; envelope?: Record<string, unknown> } = {},
) {
  const full = {
    event: "warehouseTransaction",
    installation: { id: "inst-1", organization: { id: "org-1", name: "Org 1" }, appId: "app-1" },
    transaction: { id: `tx-${++counter}-${Date.now()}`, status: "processed", type: "retire", amount: 3 },
    ...payload,
  };
  const payloadText = JSON.stringify(full);
  const { signedData, body, headers } = signDelivery(payloadText, secret, { envelope });
  return { payload: full, payloadText, signedData, body, headers };
}
