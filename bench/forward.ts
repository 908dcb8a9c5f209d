// Forwarding (the receiver POSTing every stored event to ICR_RECEIVER_FORWARD_URL): the cost to
// ingest at a fixed rate and at full speed, and a long outage of the destination followed by the
// drain. The destination is bench/sink.ts, a process of its own on 127.0.0.1.
import type { Subprocess } from "bun";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Settings } from "./config.ts";
import {
  dataDirFor,
  finish,
  flagWrk,
  measureFixedRate,
  measureIngest,
  measureSustained,
  type FixedRateResult,
  type IngestContext,
  type IngestResult,
  type SustainedResult,
} from "./ingest.ts";
import type { LogCheck } from "./log-check.ts";
import { freePort, memoryOf, sleep, spawnTracked, stop, waitForHttp200 } from "./processes.ts";
import { SERVER_LABELS, startServer, type RunningServer } from "./servers.ts";
import { runWrk, type WrkResult } from "./wrk.ts";

const SINK = join(import.meta.dir, "sink.ts");

interface Sink {
  child: Subprocess;
  port: number;
  url: string;
  counts(): Promise<{ count: number; refused: number; up: boolean }>;
  setUp(up: boolean): Promise<void>;
}

/** Starts bench/sink.ts on a free port (answering 204, or 503 with Retry-After: 1 when `down`). */
async function startSink(dir: string, down: boolean): Promise<Sink> {
  const port = freePort();
  const child = spawnTracked([process.execPath, SINK], {
    env: { ...process.env, SINK_PORT: String(port), SINK_DOWN: down ? "1" : "0" },
    cwd: dir,
    logFile: join(dir, "sink.log"),
  });
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp200(child, `${base}/count`, "forwarding sink (bench/sink.ts)");
  return {
    child,
    port,
    url: `${base}/hook`,
    async counts() {
      return (await (await fetch(`${base}/count`)).json()) as { count: number; refused: number; up: boolean };
    },
    async setUp(up: boolean) {
      const response = await fetch(`${base}/_sink/${up ? "up" : "down"}`, { method: "POST" });
      if (response.status !== 204) throw new Error(`the sink answered ${response.status} to /_sink/${up ? "up" : "down"}`);
    },
  };
}

/** The receiver's settings for forwarding to `url`. */
function forwardEnv(url: string, backoff: string): Record<string, string> {
  return {
    ICR_RECEIVER_FORWARD_URL: url,
    ICR_RECEIVER_FORWARD_SECRET: `whsec_${randomBytes(32).toString("base64")}`,
    ICR_RECEIVER_FORWARD_BACKOFF: backoff,
  };
}

export interface ForwardStatus {
  delivered: number;
  pending: number;
  retrying: number;
  deadLetters: number;
}

async function forwardStatus(server: RunningServer, queryToken: string): Promise<ForwardStatus> {
  const response = await fetch(`http://127.0.0.1:${server.port}/forward/status`, { headers: { authorization: `Bearer ${queryToken}` } });
  if (response.status !== 200) throw new Error(`GET /forward/status answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
  const body = (await response.json()) as { destinations: ForwardStatus[] };
  const d = body.destinations[0];
  if (d === undefined) throw new Error(`GET /forward/status lists no destination: ${JSON.stringify(body)}`);
  return { delivered: d.delivered, pending: d.pending, retrying: d.retrying, deadLetters: d.deadLetters };
}

/**
 * Polls GET /forward/status until pending is 0. The status counts the pending events with SQL (0.5-1 s
 * with 500,000 pending, on the receiver's main thread), so the pause between polls is 9 times the last
 * poll (at least 200 ms): polling takes at most a tenth of a core, and near the end, where a poll is
 * fast, the moment pending reaches 0 is still seen within about 200 ms.
 */
async function waitForDrain(
  server: RunningServer,
  queryToken: string,
  timeoutMs: number,
): Promise<{ status: ForwardStatus; drainedAt: number | null; polls: number }> {
  const deadline = performance.now() + timeoutMs;
  let polls = 0;
  for (;;) {
    const before = performance.now();
    const status = await forwardStatus(server, queryToken);
    polls++;
    const now = performance.now();
    if (status.pending === 0) return { status, drainedAt: now, polls };
    if (now > deadline) return { status, drainedAt: null, polls };
    await sleep(Math.max(200, 9 * (now - before)));
  }
}

const FORWARD_SETTINGS_NOTE = "forwarding to bench/sink.ts";

// ---------------------------------------------------------------------------------------------
// Rows 1 and 2: the ingest rows again, with forwarding on.

export interface ForwardingLoad {
  /** Events the receiver stored (from the log check) and the sink's 2xx count at the end. */
  stored: number;
  sinkCount: number;
  /** Progress when the load stopped. */
  atLoadEnd: ForwardStatus;
  /** Seconds the load lasted (warm-up and measured run) and from its end until pending 0 (null: not within the timeout). */
  loadSeconds: number;
  catchUpSeconds: number | null;
  final: ForwardStatus;
}

export interface FixedRateForwarding {
  result: FixedRateResult;
  forwarding: ForwardingLoad;
}

export interface IngestForwarding {
  result: IngestResult;
  forwarding: ForwardingLoad;
}

/** Runs a measurement with the receiver forwarding to a fresh sink; after the load, waits for the
 * forwarding to catch up (at most `catchUpTimeoutMs`) and reads its progress. */
async function withForwarding<T extends { logCheck: LogCheck | null; wrk: WrkResult }>(
  ctx: IngestContext,
  slug: string,
  name: string,
  catchUpTimeoutMs: number,
  loadSeconds: number,
  measure: (options: { receiverEnv: Record<string, string>; variant: string; afterLoad: (server: RunningServer) => Promise<void> }) => Promise<T>,
): Promise<{ result: T; forwarding: ForwardingLoad }> {
  const dir = dataDirFor(ctx, `sink-${slug}`);
  const sink = await startSink(dir, false);
  try {
    let atLoadEnd: ForwardStatus | undefined;
    let final: ForwardStatus | undefined;
    let catchUpSeconds: number | null = null;
    const result = await measure({
      receiverEnv: forwardEnv(sink.url, "1s"),
      variant: "forwarding",
      afterLoad: async (server) => {
        const loadEnd = performance.now();
        atLoadEnd = await forwardStatus(server, ctx.secrets.queryToken);
        const drain = await waitForDrain(server, ctx.secrets.queryToken, catchUpTimeoutMs);
        final = drain.status;
        catchUpSeconds = drain.drainedAt === null ? null : (drain.drainedAt - loadEnd) / 1000;
      },
    });
    const stored = result.logCheck?.events ?? 0;
    const sinkCount = (await sink.counts()).count;
    if (final!.deadLetters > 0) ctx.problems.push(`${name}: ${final!.deadLetters} dead letters (the sink answers 204 to everything)`);
    if (catchUpSeconds !== null && (final!.delivered !== stored || sinkCount < stored)) {
      ctx.problems.push(`${name}: pending reached 0 but ${final!.delivered} delivered / ${sinkCount} received by the sink for ${stored} events stored`);
    }
    return { result, forwarding: { stored, sinkCount, atLoadEnd: atLoadEnd!, loadSeconds, catchUpSeconds, final: final! } };
  } finally {
    await stop(sink.child);
    rmSync(dir, { recursive: true, force: true });
  }
}

export function measureFixedRateForwarding(ctx: IngestContext, settings: Settings): Promise<FixedRateForwarding> {
  const { fixedRate } = settings;
  return withForwarding(
    ctx,
    "fixed-rate",
    `${SERVER_LABELS.receiver}, fixed ${fixedRate.rate} req/s, ${FORWARD_SETTINGS_NOTE}`,
    60_000,
    fixedRate.warmupSeconds + fixedRate.seconds,
    (options) => measureFixedRate(ctx, fixedRate, options),
  );
}

export function measureIngestForwarding(ctx: IngestContext, settings: Settings, connections: number): Promise<IngestForwarding> {
  return withForwarding(
    ctx,
    `c${connections}`,
    `${SERVER_LABELS.receiver}, ${connections} connections, ${FORWARD_SETTINGS_NOTE}`,
    settings.forward.catchUpTimeoutSeconds * 1000,
    settings.warmupSeconds + settings.seconds,
    (options) => measureIngest(ctx, "receiver", connections, settings.warmupSeconds, settings.seconds, options),
  );
}

export interface SustainedForwarding {
  result: SustainedResult;
  forwarding: ForwardingLoad;
}

/** The sustained run with forwarding on: RSS growth over the minute and peak RSS (the catch-up
 * after the load included, as in the ingest row). */
export function measureSustainedForwarding(
  ctx: IngestContext,
  settings: Settings,
  run: { connections: number; expectedRate: number },
): Promise<SustainedForwarding> {
  const { seconds, rssEarlyAt } = settings.sustained;
  return withForwarding(
    ctx,
    "sustained",
    `${SERVER_LABELS.receiver}, sustained ${seconds} s, ${FORWARD_SETTINGS_NOTE}`,
    settings.forward.catchUpTimeoutSeconds * 1000,
    seconds,
    (options) => measureSustained(ctx, { seconds, rssEarlyAt, ...run }, options),
  );
}

// ---------------------------------------------------------------------------------------------
// Row 3: a long outage of the destination, then the drain.

export interface OutageResult {
  /** Events stored while the sink was down (the backlog), and how fast they came in. */
  backlog: number;
  buildUpSeconds: number;
  buildUpRate: number;
  connections: number;
  /** Events of the warm-up (stored and forwarded, sink up, before the outage). */
  warmupEvents: number;
  /** Requests the sink refused (503) during the outage: the lanes' retries. */
  refused: number;
  /** From sink-up: until the sink got its first request, and until pending was 0 (null: timed out). */
  firstDeliverySeconds: number | null;
  drainSeconds: number | null;
  drainRate: number;
  final: ForwardStatus;
  sinkCount: number;
  rss: {
    /** Peak during the warm-up (ingest, then forwarding catching up): the baseline. */
    warmUpPeak: number;
    buildUpPeak: number;
    drainPeak: number;
    /** When pending reached 0. */
    after: number;
  };
  /** [seconds since the receiver was ready, bytes], one a second. */
  rssBySecond: [number, number][];
  outageAtSecond: number;
  upAtSecond: number;
  logCheck: LogCheck | null;
}

/**
 * Warm-up (sink up): wrk at full speed for `warmupSeconds`, then forwarding catches up (pending 0).
 * Outage: the sink answers 503 with Retry-After: 1 (so each lane retries once a second, whatever its
 * attempt count) while wrk ingests at full speed until `outageEvents` deliveries were acknowledged.
 * Drain: the sink answers 204 again; GET /forward/status is polled until pending is 0. VmRSS is
 * sampled every 100 ms from the receiver's start to the end of the drain.
 */
export async function measureOutage(ctx: IngestContext, settings: Settings): Promise<OutageResult> {
  const { outageEvents: target, warmupSeconds, catchUpTimeoutSeconds, drainTimeoutSeconds } = settings.forward;
  const connections = settings.connections[0]!;
  const what = `${SERVER_LABELS.receiver}, sink outage of ${target.toLocaleString("en-US")} events`;
  ctx.pool.ensure(Math.ceil((150_000 * warmupSeconds) / ctx.threads)); // before the receiver starts: it blocks this thread
  const sinkDir = dataDirFor(ctx, "sink-outage");
  const sink = await startSink(sinkDir, false);
  const runs: WrkResult[] = [];
  let server: RunningServer | undefined;
  let sampling: Timer | undefined;
  try {
    server = await startServer("receiver", ctx.paths, ctx.secrets, dataDirFor(ctx, "receiver-outage"), forwardEnv(sink.url, "1s"));
    const pid = server.child.pid;
    const token = ctx.secrets.queryToken;
    const startedAt = performance.now();
    const samples: { at: number; rss: number }[] = [];
    const sample = () => {
      const memory = memoryOf(pid);
      if (memory !== null) samples.push({ at: performance.now(), rss: memory.rss });
    };
    sample();
    sampling = setInterval(sample, 100);
    const peak = (from: number, to: number) => Math.max(0, ...samples.filter((s) => s.at >= from && s.at <= to).map((s) => s.rss));

    const load = { url: `http://127.0.0.1:${server.port}/webhook`, threads: ctx.threads, connections, poolDir: ctx.pool.dir, serverPid: pid };
    const warm = await runWrk({ ...load, seconds: warmupSeconds, offsets: ctx.pool.threadsStart() });
    flagWrk(ctx, `${what} (warm-up)`, warm, true);
    runs.push(warm);
    const warmDrain = await waitForDrain(server, token, catchUpTimeoutSeconds * 1000);
    if (warmDrain.drainedAt === null) throw new Error(`${what}: forwarding did not catch up after the warm-up (${warmDrain.status.pending} pending)`);
    const warmupEvents = warmDrain.status.delivered;
    // Room for the backlog at the warm-up's rate, with a margin for a faster run.
    const added = ctx.pool.ensure(Math.max(...warm.threads.map((t) => t.generated)) + Math.ceil((target * 1.3) / ctx.threads) + 1000);
    if (added > 0) ctx.log(`  (pool grown by ${added} deliveries for the outage)`);

    await sink.setUp(false);
    const outageAt = performance.now();
    // Build-up: wrk at full speed until `target` 2xx answers: a first run for 80 % of the time the
    // warm-up's rate predicts, then runs for the rest at the rate just seen (wrk runs whole seconds:
    // the backlog overshoots by up to a second's worth).
    let acknowledged = 0;
    let rate = warm.reqPerSec;
    let offsets = warm.threads.map((t) => t.pos);
    for (let round = 0; acknowledged < target && round < 8; round++) {
      const remaining = (target - acknowledged) / rate;
      const seconds = Math.max(1, round === 0 ? Math.floor(remaining * 0.8) : Math.ceil(remaining * 1.02));
      const result = await runWrk({ ...load, seconds, offsets });
      flagWrk(ctx, `${what} (build-up)`, result, true);
      runs.push(result);
      acknowledged += result.ok;
      rate = result.reqPerSec;
      offsets = result.threads.map((t) => t.pos);
      if (result.exhausted) break;
    }
    const buildUpEnd = performance.now();
    const atUp = await forwardStatus(server, token);
    const { refused } = await sink.counts();

    // The drain: each lane's next retry (at most 1 s after its last 503) finds the sink up.
    await sink.setUp(true);
    const upAt = performance.now();
    let firstDeliveryAt: number | null = null;
    const watchFirst = (async () => {
      while (firstDeliveryAt === null && performance.now() - upAt < 30_000) {
        if ((await sink.counts()).count > warmupEvents) firstDeliveryAt = performance.now();
        else await sleep(10);
      }
    })();
    const drain = await waitForDrain(server, token, drainTimeoutSeconds * 1000);
    await watchFirst;
    sample();
    const after = samples[samples.length - 1]!.rss;
    const drainEnd = performance.now();
    clearInterval(sampling);

    const sinkCount = (await sink.counts()).count;
    const backlog = atUp.pending;
    const drainSeconds = drain.drainedAt === null ? null : (drain.drainedAt - upAt) / 1000;
    if (drain.drainedAt === null) ctx.problems.push(`${what}: ${drain.status.pending} events still pending ${drainTimeoutSeconds} s after the sink came back`);
    if (atUp.delivered !== warmupEvents) ctx.problems.push(`${what}: ${atUp.delivered - warmupEvents} events delivered while the sink answered 503`);
    if (drain.status.deadLetters > 0) ctx.problems.push(`${what}: ${drain.status.deadLetters} dead letters`);
    if (drain.drainedAt !== null && sinkCount < warmupEvents + backlog) {
      ctx.problems.push(`${what}: the sink received ${sinkCount} requests for ${warmupEvents + backlog} events`);
    }
    const { logCheck } = await finish(ctx, server, what, runs);
    if (logCheck !== null && drain.drainedAt !== null && drain.status.delivered !== logCheck.events) {
      ctx.problems.push(`${what}: ${drain.status.delivered} delivered for ${logCheck.events} events in the log`);
    }
    const second = (at: number) => Math.round((at - startedAt) / 1000);
    const rssBySecond: [number, number][] = [];
    for (const s of samples) if (rssBySecond.length === 0 || second(s.at) > rssBySecond[rssBySecond.length - 1]![0]) rssBySecond.push([second(s.at), s.rss]);
    return {
      backlog,
      buildUpSeconds: (buildUpEnd - outageAt) / 1000,
      buildUpRate: acknowledged / ((buildUpEnd - outageAt) / 1000),
      connections,
      warmupEvents,
      refused,
      firstDeliverySeconds: firstDeliveryAt === null ? null : (firstDeliveryAt - upAt) / 1000,
      drainSeconds,
      drainRate: drainSeconds === null ? NaN : backlog / drainSeconds,
      final: drain.status,
      sinkCount,
      rss: { warmUpPeak: peak(startedAt, outageAt), buildUpPeak: peak(outageAt, upAt), drainPeak: peak(upAt, drainEnd), after },
      rssBySecond,
      outageAtSecond: second(outageAt),
      upAtSecond: second(upAt),
      logCheck,
    };
  } finally {
    clearInterval(sampling);
    if (server !== undefined) await stop(server.child);
    await stop(sink.child);
    rmSync(sinkDir, { recursive: true, force: true });
  }
}
