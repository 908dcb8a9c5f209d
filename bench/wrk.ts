// One wrk run with bench/wrk/ingest.lua, and what it reports.
import { join } from "node:path";
import { measureNoise, processCpu, type Noise } from "./machine.ts";
import { run } from "./processes.ts";

const SCRIPT = join(import.meta.dir, "wrk", "ingest.lua");

export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  seconds: number;
  poolDir: string;
  /** Byte offset each thread starts reading its pool file at. */
  offsets: number[];
  /** Fixed-rate mode: total requests per second (split evenly over the threads). */
  rate?: number;
  /** The server under load: its CPU counts as ours when measuring other people's load. */
  serverPid: number;
}

export interface WrkThread {
  id: number;
  generated: number;
  pos: number;
  exhausted: boolean;
}

export interface WrkResult {
  seconds: number;
  /** Responses received, any status. */
  responses: number;
  /** Responses with status < 400 (wrk counts only >= 400 as status errors; nothing here redirects). */
  ok: number;
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  reqPerSec: number;
  latencyMs: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
  threads: WrkThread[];
  /** Deliveries taken from the pools (sent, in flight at the end, or wrk's unsent probe). */
  generated: number;
  exhausted: boolean;
  /** Other people's CPU use on the machine during the run. */
  noise: Noise;
}

interface LuaReport {
  durationUs: number;
  requests: number;
  bytes: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyUs: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
  threads: WrkThread[];
}

export async function runWrk(options: WrkOptions): Promise<WrkResult> {
  const { url, threads, connections, seconds, poolDir, offsets, rate, serverPid } = options;
  const env: Record<string, string | undefined> = {
    ...process.env,
    BENCH_POOL_DIR: poolDir,
    BENCH_OFFSETS: offsets.join(","),
    BENCH_RATE_PER_THREAD: rate === undefined ? "" : String(rate / threads),
  };
  const cmd = ["wrk", `-t${threads}`, `-c${connections}`, `-d${seconds}s`, "--latency", "--timeout", "5s", "-s", SCRIPT, url];
  const serverCpuBefore = processCpu(serverPid);
  const { result, noise } = await measureNoise(
    () => run(cmd, { env, timeoutMs: (seconds + 60) * 1000 }),
    (wrk) => wrk.cpuSeconds + processCpu(serverPid) - serverCpuBefore,
  );
  const { stdout, stderr } = result;
  const line = stdout.split("\n").find((l) => l.startsWith("BENCH_RESULT "));
  if (line === undefined) throw new Error(`wrk printed no BENCH_RESULT line:\n${stdout}\n${stderr}`);
  const report = JSON.parse(line.slice("BENCH_RESULT ".length)) as LuaReport;
  const ms = (us: number) => us / 1000;
  const durationS = report.durationUs / 1e6;
  return {
    seconds: durationS,
    responses: report.requests,
    ok: report.requests - report.errors.status,
    non2xx: report.errors.status,
    socketErrors: {
      connect: report.errors.connect,
      read: report.errors.read,
      write: report.errors.write,
      timeout: report.errors.timeout,
    },
    reqPerSec: report.requests / durationS,
    latencyMs: {
      mean: ms(report.latencyUs.mean),
      p50: ms(report.latencyUs.p50),
      p90: ms(report.latencyUs.p90),
      p99: ms(report.latencyUs.p99),
      p999: ms(report.latencyUs.p999),
      max: ms(report.latencyUs.max),
    },
    threads: report.threads.sort((a, b) => a.id - b.id),
    generated: report.threads.reduce((sum, t) => sum + t.generated, 0),
    exhausted: report.threads.some((t) => t.exhausted),
    noise,
  };
}

export const socketErrorCount = (r: WrkResult) =>
  r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
