// A continuous replica with Litestream (0.3, the binary in npm @flydotio/litestream-linux-x64), tested the hard way:
// the receiver (ICR_RECEIVER_CHECKPOINTS=litestream, so Litestream alone checkpoints) and
// `litestream replicate` to a `file` replica, concurrent senders for a few seconds, the replication
// lag sampled meanwhile with `litestream restore`, then SIGKILL to both at a cut-off, a restore
// into a fresh directory, `icr-receiver check` on it, and every delivery acknowledged before the
// cut-off minus the lag bound found in it. Everything under temp directories; every process killed.
import { afterAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { Database } from "bun:sqlite";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { REPO, spawnReceiver, type ReceiverProcess } from "./support/process.ts";
import { signedDelivery, tempDir } from "./support/server.ts";

const LITESTREAM = join(REPO, "node_modules", "@flydotio", `litestream-${process.platform}-${process.arch}`, "litestream");
// Short intervals for the test; deploy/litestream.yml uses 1 s for both.
const MONITOR_MS = 100;
const SYNC_MS = 200;
// What the test promises: an event acknowledged this long before a crash is in the replica.
const LAG_BOUND_MS = MONITOR_MS + SYNC_MS + 1_500;
const SENDERS = 16;
const LOAD_MS = 5_000;

const dataDir = tempDir("icr-litestream-");
const replicaDir = tempDir("icr-litestream-replica-");
const restoreDir = tempDir("icr-litestream-restore-");
const databasePath = join(dataDir, "icr-receiver.db");
const configPath = join(restoreDir, "litestream.yml");
const children: Subprocess[] = [];
let receiver: ReceiverProcess | undefined;

afterAll(async () => {
  if (receiver) children.push(receiver.proc);
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await child.exited;
  }
});

interface Ack {
  id: number;
  payloadText: string;
  /** performance.now() when the 202 arrived. */
  at: number;
}

function load(url: string, workers: number) {
  const acknowledged: Ack[] = [];
  let failures = 0;
  let running = true;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const d = signedDelivery();
      try {
        const response = await fetch(`${url}/webhook`, { method: "POST", headers: d.headers, body: d.body });
        const at = performance.now();
        if (response.status === 202) acknowledged.push({ id: (await response.json()).id, payloadText: d.payloadText, at });
        else failures++;
      } catch {
        // The receiver was killed under this request: not acknowledged.
        if (running) failures++;
      }
    }
  });
  return {
    acknowledged,
    failures: () => failures,
    halt: () => (running = false),
    stop: async () => ((running = false), await Promise.all(loops)),
  };
}

async function run(command: string[], timeoutMs = 20_000) {
  const proc = Bun.spawn(command, { stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH! } });
  children.push(proc);
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

let restores = 0;
/** `litestream restore` of the replica into a new file; the payload of each restored event by id. */
async function restore(): Promise<{ path: string; payloads: Map<number, string> }> {
  const path = join(restoreDir, `restored-${++restores}.db`);
  const result = await run([LITESTREAM, "restore", "-config", configPath, "-o", path, databasePath]);
  if (result.code !== 0) throw new Error(`litestream restore exited ${result.code}: ${result.stderr}`);
  const db = new Database(path, { readonly: true });
  const payloads = new Map(db.query<{ id: number; payload: string }, []>("SELECT id, payload FROM events").all().map((r) => [r.id, r.payload]));
  db.close();
  return { path, payloads };
}

/** How far the replica is behind at `at`: since the oldest acknowledgement it does not hold (0: none missing). */
function lagAt(at: number, acknowledged: Ack[], payloads: Map<number, string>): number {
  const missing = acknowledged.filter((a) => a.at <= at && payloads.get(a.id) !== a.payloadText);
  return missing.length === 0 ? 0 : at - Math.min(...missing.map((a) => a.at));
}

test(
  "Litestream replicates the log under load: after SIGKILL, a restore passes check and holds every event acknowledged before the cut-off minus the lag",
  async () => {
    expect(existsSync(LITESTREAM)).toBe(true);
    expect((await run([LITESTREAM, "version"])).stdout.trim()).toMatch(/^v0\.3\./);
    writeFileSync(
      configPath,
      [
        "dbs:",
        `  - path: ${databasePath}`,
        `    monitor-interval: ${MONITOR_MS}ms`,
        "    replicas:",
        "      - type: file",
        `        path: ${replicaDir}`,
        `        sync-interval: ${SYNC_MS}ms`,
        "",
      ].join("\n"),
    );
    const env = {
      ICR_RECEIVER_DATA_DIR: dataDir,
      ICR_RECEIVER_SECRET: FIXTURE_SECRET,
      ICR_RECEIVER_QUERY_TOKEN: "t",
      ICR_RECEIVER_CHECKPOINTS: "litestream",
    };
    receiver = await spawnReceiver(["bun", join(REPO, "src", "main.ts")], { env });
    const litestream = Bun.spawn([LITESTREAM, "replicate", "-config", configPath], { stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH! } });
    children.push(litestream);
    const litestreamLog = Promise.all([new Response(litestream.stdout).text(), new Response(litestream.stderr).text()]).then((t) => t.join(""));

    // Wait for the first generation (initial snapshot) before the load starts.
    const generations = join(replicaDir, "generations");
    for (let i = 0; i < 100 && !(existsSync(generations) && readdirSync(generations).length > 0); i++) await Bun.sleep(50);
    expect(readdirSync(generations).length).toBe(1);

    const started = performance.now();
    const traffic = load(receiver.url, SENDERS);
    // Lag under load: restore repeatedly while the senders run.
    const samples: number[] = [];
    while (performance.now() - started < LOAD_MS) {
      const at = performance.now();
      const { payloads } = await restore();
      samples.push(lagAt(at, traffic.acknowledged, payloads));
      await Bun.sleep(100);
    }

    // The cut-off: both killed at once, senders still sending.
    const cutoff = performance.now();
    receiver.proc.kill("SIGKILL");
    litestream.kill("SIGKILL");
    await Promise.all([receiver.proc.exited, litestream.exited]);
    await traffic.stop();
    const acknowledged = traffic.acknowledged;

    const restored = await restore();
    const check = await run(["bun", join(REPO, "src", "main.ts"), "check", "--db", restored.path]);
    if (check.code !== 0) console.error(check.stdout, check.stderr);
    expect(check.code).toBe(0);

    const beforeBound = acknowledged.filter((a) => a.at <= cutoff - LAG_BOUND_MS);
    const missingBeforeBound = beforeBound.filter((a) => restored.payloads.get(a.id) !== a.payloadText);
    const missing = acknowledged.filter((a) => restored.payloads.get(a.id) !== a.payloadText);
    const recoveryPointMs = missing.length === 0 ? 0 : cutoff - Math.min(...missing.map((a) => a.at));
    const sorted = [...samples].sort((a, b) => a - b);
    const seconds = (cutoff - started) / 1000;
    const generationCount = readdirSync(generations).length;
    console.log(
      `litestream: ${acknowledged.length} acknowledged in ${seconds.toFixed(1)} s (${Math.round(acknowledged.length / seconds)}/s, ` +
        `${SENDERS} senders, ${traffic.failures()} failures); lag over ${samples.length} restores: ` +
        `median ${Math.round(sorted[Math.floor(sorted.length / 2)]!)} ms, max ${Math.round(sorted.at(-1)!)} ms ` +
        `(monitor ${MONITOR_MS} ms + sync ${SYNC_MS} ms); at SIGKILL: ${missing.length} acknowledged not in the restore, ` +
        `recovery point ${Math.round(recoveryPointMs)} ms (bound ${LAG_BOUND_MS} ms); generations ${generationCount}`,
    );

    expect(acknowledged.length).toBeGreaterThan(1_000);
    expect(beforeBound.length).toBeGreaterThan(500);
    expect(missingBeforeBound.length).toBe(0);
    expect(recoveryPointMs).toBeLessThanOrEqual(LAG_BOUND_MS);
    expect(Math.max(...samples)).toBeLessThanOrEqual(LAG_BOUND_MS);
    // Continuity: one generation throughout, i.e. Litestream never lost its place in the WAL.
    expect(generationCount).toBe(1);
    // The first sync's "new generation" (no generation exists yet) is the only one.
    expect((await litestreamLog).match(/new generation/g)?.length ?? 0).toBe(1);
  },
  120_000,
);

test("with ICR_RECEIVER_CHECKPOINTS=litestream a graceful stop does not wait on Litestream's read lock", async () => {
  // The receiver's default TRUNCATE at close waits busy_timeout (5 s, twice: 10 s measured) for the
  // read transaction Litestream always holds; handed to Litestream, the stop is immediate.
  const dir = tempDir("icr-litestream-stop-");
  const replica = tempDir("icr-litestream-stop-replica-");
  const config = join(dir, "litestream.yml");
  writeFileSync(config, `dbs:\n  - path: ${join(dir, "icr-receiver.db")}\n    monitor-interval: 100ms\n    replicas:\n      - type: file\n        path: ${replica}\n        sync-interval: 200ms\n`);
  const env = { ICR_RECEIVER_DATA_DIR: dir, ICR_RECEIVER_SECRET: FIXTURE_SECRET, ICR_RECEIVER_QUERY_TOKEN: "t", ICR_RECEIVER_CHECKPOINTS: "litestream" };
  const stopping = await spawnReceiver(["bun", join(REPO, "src", "main.ts")], { env });
  children.push(stopping.proc);
  const litestream = Bun.spawn([LITESTREAM, "replicate", "-config", config], { stdout: "ignore", stderr: "ignore", env: { PATH: process.env.PATH! } });
  children.push(litestream);
  for (let i = 0; i < 50 && !existsSync(join(replica, "generations")); i++) await Bun.sleep(50);
  for (let i = 0; i < 100; i++) {
    const d = signedDelivery();
    expect((await fetch(`${stopping.url}/webhook`, { method: "POST", headers: d.headers, body: d.body })).status).toBe(202);
  }
  await Bun.sleep(300);
  const started = performance.now();
  expect(await stopping.stop()).toBe(0);
  expect(performance.now() - started).toBeLessThan(2_000);
  litestream.kill("SIGTERM");
  expect(await litestream.exited).toBe(0);
}, 30_000);
