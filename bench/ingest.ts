// The ingest measurements: one fresh server per measurement, a warm-up, then the measured wrk run;
// for the receiver also the durability check, the fixed-rate run and the sustained run.
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { postDelivery, signedDelivery, threadSpec, type DeliveryPool } from "./deliveries.ts";
import { checkLog, type LogCheck } from "./log-check.ts";
import { memoryOf, RssSampler, stop } from "./processes.ts";
import { SERVER_LABELS, serverLogTail, startServer, type Paths, type RunningServer, type Secrets, type ServerKind } from "./servers.ts";
import { cpuSplit, sampleThreads, type CpuSplit } from "./threads.ts";
import { runWrk, socketErrorCount, type WrkResult } from "./wrk.ts";

export interface IngestContext {
  paths: Paths;
  secrets: Secrets;
  pool: DeliveryPool;
  threads: number;
  /** Parent of the per-run data directories (each removed once its run is checked). */
  runsDir: string;
  log: (line: string) => void;
  /** Problems that make the run invalid (a receiver failure, an exhausted pool...). */
  problems: string[];
}

export interface IngestResult {
  kind: ServerKind;
  connections: number;
  wrk: WrkResult;
  peakRssBytes: number;
  exit: number | string;
  logCheck: LogCheck | null;
  /** The receiver's CPU by thread over the measured run, per delivery acknowledged (null for the peers). */
  cpu: CpuSplit | null;
}

/** The roles of the receiver's "Worker" threads in the order src/ creates them (see threads.ts). */
const RECEIVER_WORKERS = ["writer", "checkpointer", "forwarder"] as const;

/** What a caller can change about one receiver measurement (forward.ts runs the same rows with
 * forwarding on). */
export interface RunOptions {
  /** More ICR_RECEIVER_* settings for the receiver. */
  receiverEnv?: Record<string, string>;
  /** Added to the row's name (in problems) and to its data directory's. */
  variant?: string;
  /** Runs once the receiver is up, before the load. */
  beforeLoad?: (server: RunningServer) => Promise<void>;
  /** Runs after the measured load, before the receiver is stopped (and before its peak RSS is taken). */
  afterLoad?: (server: RunningServer) => Promise<void>;
}

/** Head room over the rate seen so far when sizing the pools for the next run (a warm-up can be
 * slower than the run it warms up, more so on a machine that others are using). */
const POOL_MARGIN = 1.75;

/** Per-thread pool size that lets each thread go on at its own pace for `seconds` more. */
function poolNeed(after: WrkResult, seconds: number): number {
  const perThread = after.threads.map((t) => {
    const rate = t.generated / after.seconds;
    return t.generated + rate * seconds * POOL_MARGIN;
  });
  return Math.ceil(Math.max(...perThread)) + 1000;
}

export function dataDirFor(ctx: IngestContext, name: string): string {
  const dir = join(ctx.runsDir, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function flagWrk(ctx: IngestContext, what: string, result: WrkResult, strict: boolean): void {
  if (result.exhausted) {
    ctx.problems.push(`${what}: a wrk thread ran out of precomputed deliveries (the pool was sized too small)`);
  }
  if (strict && result.non2xx > 0) ctx.problems.push(`${what}: ${result.non2xx} responses with status >= 400`);
  if (strict && socketErrorCount(result) > 0) ctx.problems.push(`${what}: socket errors ${JSON.stringify(result.socketErrors)}`);
}

/** Wrk thread id of the diagnostic deliveries: no pool file has it, so they never collide. */
const PROBE_THREAD = 99;
let probes = 0;

/**
 * wrk only counts answers >= 400; when the receiver gave any, one more fresh delivery (outside the
 * pools) shows what they were. Returns whether it was acknowledged, for the log check's counts.
 */
async function probeFailures(ctx: IngestContext, server: RunningServer, what: string, runs: WrkResult[]): Promise<boolean> {
  if (runs.every((r) => r.non2xx === 0)) return false;
  const delivery = signedDelivery(threadSpec(PROBE_THREAD, probes++), ctx.secrets.webhookSecret);
  try {
    const response = await postDelivery(server.port, delivery);
    ctx.problems.push(`${what}: a delivery sent after the run was answered ${response.status} ${(await response.text()).slice(0, 300)}`);
    return response.status < 400;
  } catch (error) {
    ctx.problems.push(`${what}: a delivery sent after the run failed: ${(error as Error).message}`);
    return false;
  }
}

/** Stops the server; for the receiver, checks that it exited 0 and that its log holds every 2xx. */
export async function finish(ctx: IngestContext, server: RunningServer, what: string, runs: WrkResult[]) {
  const probeAcknowledged = server.kind === "receiver" ? await probeFailures(ctx, server, what, runs) : false;
  const exit = await stop(server.child);
  let logCheck: LogCheck | null = null;
  if (server.kind === "receiver") {
    if (exit !== 0) ctx.problems.push(`${what}: the receiver exited ${exit} on SIGTERM (expected 0)\n${await serverLogTail(server)}`);
    const probed = runs.some((r) => r.non2xx > 0) ? 1 : 0;
    const acknowledged = runs.reduce((sum, r) => sum + r.ok, 0) + Number(probeAcknowledged);
    const generated = runs.reduce((sum, r) => sum + r.generated, 0) + probed;
    logCheck = checkLog(server.receiverDb!, acknowledged, generated);
    for (const problem of logCheck.problems) ctx.problems.push(`${what}: ${problem}`);
    ctx.log(
      `  log check: ${logCheck.acknowledged} acknowledged, ${logCheck.deliveries} deliveries / ${logCheck.events} events in the log, ` +
        `${logCheck.duplicates} duplicates, ${logCheck.missing} missing -> ${logCheck.problems.length === 0 ? "OK" : "FAIL"}`,
    );
  }
  rmSync(server.dataDir, { recursive: true, force: true });
  return { exit, logCheck };
}

/** Warm-up then a measured run at full speed against a fresh server. */
export async function measureIngest(
  ctx: IngestContext,
  kind: ServerKind,
  connections: number,
  warmupSeconds: number,
  seconds: number,
  { receiverEnv, variant, afterLoad }: RunOptions = {},
): Promise<IngestResult> {
  const what = `${SERVER_LABELS[kind]}${variant ? ` (${variant})` : ""}, ${connections} connections`;
  const dataDir = dataDirFor(ctx, `${kind}-c${connections}${variant ? `-${variant}` : ""}`);
  const server = await startServer(kind, ctx.paths, ctx.secrets, dataDir, receiverEnv);
  const sampler = new RssSampler(server.child.pid);
  try {
    const load = {
      url: `http://127.0.0.1:${server.port}/webhook`,
      threads: ctx.threads,
      connections,
      poolDir: ctx.pool.dir,
      serverPid: server.child.pid,
    };
    const warm = await runWrk({ ...load, seconds: warmupSeconds, offsets: ctx.pool.threadsStart() });
    flagWrk(ctx, `${what} (warm-up)`, warm, kind === "receiver");
    const added = ctx.pool.ensure(poolNeed(warm, seconds));
    if (added > 0) ctx.log(`  (pool grown by ${added} deliveries for the measured run)`);
    const threadsBefore = kind === "receiver" ? sampleThreads(server.child.pid) : null;
    const measured = await runWrk({ ...load, seconds, offsets: warm.threads.map((t) => t.pos) });
    const cpu = threadsBefore === null ? null : cpuSplit(threadsBefore, sampleThreads(server.child.pid), server.child.pid, measured.ok, RECEIVER_WORKERS);
    flagWrk(ctx, what, measured, kind === "receiver");
    await afterLoad?.(server);
    const peakRssBytes = sampler.finish();
    const { exit, logCheck } = await finish(ctx, server, what, [warm, measured]);
    return { kind, connections, wrk: measured, peakRssBytes, exit, logCheck, cpu };
  } finally {
    sampler.finish();
    await stop(server.child);
  }
}

export interface FixedRateResult {
  rate: number;
  connections: number;
  wrk: WrkResult;
  peakRssBytes: number;
  logCheck: LogCheck | null;
}

/** The receiver at a fixed request rate (wrk's delay()): latency when not saturated. */
export async function measureFixedRate(
  ctx: IngestContext,
  { rate, connections, warmupSeconds, seconds }: { rate: number; connections: number; warmupSeconds: number; seconds: number },
  { receiverEnv, variant, beforeLoad, afterLoad }: RunOptions = {},
): Promise<FixedRateResult> {
  const what = `${SERVER_LABELS.receiver}${variant ? ` (${variant})` : ""}, fixed ${rate} req/s`;
  ctx.pool.ensure(Math.ceil((rate * (warmupSeconds + seconds) * POOL_MARGIN) / ctx.threads) + 1000);
  const dataDir = dataDirFor(ctx, `receiver-fixed-rate${variant ? `-${variant}` : ""}`);
  const server = await startServer("receiver", ctx.paths, ctx.secrets, dataDir, receiverEnv);
  const sampler = new RssSampler(server.child.pid);
  try {
    await beforeLoad?.(server);
    const load = {
      url: `http://127.0.0.1:${server.port}/webhook`,
      threads: ctx.threads,
      connections,
      poolDir: ctx.pool.dir,
      serverPid: server.child.pid,
      rate,
    };
    const warm = await runWrk({ ...load, seconds: warmupSeconds, offsets: ctx.pool.threadsStart() });
    flagWrk(ctx, `${what} (warm-up)`, warm, true);
    const measured = await runWrk({ ...load, seconds, offsets: warm.threads.map((t) => t.pos) });
    flagWrk(ctx, what, measured, true);
    await afterLoad?.(server);
    const peakRssBytes = sampler.finish();
    const { logCheck } = await finish(ctx, server, what, [warm, measured]);
    return { rate, connections, wrk: measured, peakRssBytes, logCheck };
  } finally {
    sampler.finish();
    await stop(server.child);
  }
}

export interface SustainedResult {
  seconds: number;
  connections: number;
  wrk: WrkResult;
  /** RSS sampled every second from the start of the load: [second, bytes]. */
  rssBySecond: [number, number][];
  rssEarly: { at: number; bytes: number };
  rssEnd: { at: number; bytes: number };
  peakRssBytes: number;
  logCheck: LogCheck | null;
}

/** The receiver under full load for a long run, RSS sampled each second: does memory grow? */
export async function measureSustained(
  ctx: IngestContext,
  { seconds, connections, rssEarlyAt, expectedRate }: { seconds: number; connections: number; rssEarlyAt: number; expectedRate: number },
  { receiverEnv, variant, beforeLoad, afterLoad }: RunOptions = {},
): Promise<SustainedResult> {
  const what = `${SERVER_LABELS.receiver}${variant ? ` (${variant})` : ""}, sustained ${seconds} s`;
  const added = ctx.pool.ensure(Math.ceil((expectedRate * seconds * POOL_MARGIN) / ctx.threads) + 1000);
  if (added > 0) ctx.log(`  (pool grown by ${added} deliveries for the sustained run)`);
  const dataDir = dataDirFor(ctx, `receiver-sustained${variant ? `-${variant.replaceAll(" ", "-")}` : ""}`);
  const server = await startServer("receiver", ctx.paths, ctx.secrets, dataDir, receiverEnv);
  const peak = new RssSampler(server.child.pid);
  const rssBySecond: [number, number][] = [];
  try {
    await beforeLoad?.(server);
    const started = performance.now();
    const perSecond = setInterval(() => {
      const memory = memoryOf(server.child.pid);
      if (memory !== null) rssBySecond.push([Math.round((performance.now() - started) / 1000), memory.rss]);
    }, 1000);
    let result: WrkResult;
    try {
      result = await runWrk({
        url: `http://127.0.0.1:${server.port}/webhook`,
        threads: ctx.threads,
        connections,
        seconds,
        poolDir: ctx.pool.dir,
        offsets: ctx.pool.threadsStart(),
        serverPid: server.child.pid,
      });
    } finally {
      clearInterval(perSecond);
    }
    flagWrk(ctx, what, result, true);
    await afterLoad?.(server);
    const peakRssBytes = peak.finish();
    const { logCheck } = await finish(ctx, server, what, [result]);
    const at = (second: number) => rssBySecond.reduce((best, s) => (Math.abs(s[0] - second) < Math.abs(best[0] - second) ? s : best));
    const early = at(rssEarlyAt);
    const end = rssBySecond[rssBySecond.length - 1]!;
    return {
      seconds,
      connections,
      wrk: result,
      rssBySecond,
      rssEarly: { at: early[0], bytes: early[1] },
      rssEnd: { at: end[0], bytes: end[1] },
      peakRssBytes,
      logCheck,
    };
  } finally {
    peak.finish();
    await stop(server.child);
  }
}
