// Child processes the benchmark starts: every one is registered so that it is killed at the end,
// on error and on Ctrl-C alike; plus the small helpers to wait for them and watch their memory.
import type { Subprocess } from "bun";
import { readFileSync } from "node:fs";

const live = new Set<Subprocess>();

export interface SpawnOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** File that receives stdout and stderr (a pipe nobody reads would block a chatty child). */
  logFile?: string;
}

/** Registers a child spawned elsewhere for cleanup. */
export function track<T extends Subprocess>(child: T): T {
  live.add(child);
  void child.exited.then(() => live.delete(child));
  return child;
}

/** Starts a child and registers it for cleanup. */
export function spawnTracked(cmd: string[], { cwd, env, logFile }: SpawnOptions = {}): Subprocess {
  const output = logFile === undefined ? "ignore" : Bun.file(logFile);
  return track(Bun.spawn(cmd, { cwd, env: env ?? process.env, stdin: "ignore", stdout: output, stderr: output }));
}

/** Runs a command to completion (registered while it runs); throws with its output on failure. */
export async function run(cmd: string[], { cwd, env, timeoutMs = 600_000 }: SpawnOptions & { timeoutMs?: number } = {}) {
  const child = Bun.spawn(cmd, { cwd, env: env ?? process.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  live.add(child);
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}\n${stdout.slice(-2000)}${stderr.slice(-2000)}`);
    const cpuSeconds = Number(child.resourceUsage()?.cpuTime.total ?? 0n) / 1e6;
    return { stdout, stderr, cpuSeconds };
  } finally {
    clearTimeout(timer);
    live.delete(child);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (or the signal's name). */
export async function stop(child: Subprocess, graceMs = 10_000): Promise<number | string> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await child.exited;
    clearTimeout(timer);
  }
  return child.exitCode ?? child.signalCode ?? "unknown";
}

/** Kills every child still running (used by the final cleanup and the signal handlers). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((child) => stop(child, 3_000)));
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A port that was free a moment ago on 127.0.0.1 (the kernel picks it; we release it at once). */
export function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = server;
  server.stop(true);
  return port;
}

function assertAlive(child: Subprocess, what: string): void {
  if (child.exitCode !== null || child.signalCode !== null) {
    throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready`);
  }
}

/** Waits until something accepts TCP connections on the port (no HTTP request: the durable floor
 * would store one as a row). */
export async function waitForTcp(child: Subprocess, port: number, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    assertAlive(child, what);
    const open = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
      (socket) => (socket.end(), true),
      () => false,
    );
    if (open) return;
    if (performance.now() > deadline) throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Polls GET url until 200; resolves with the time it answered (performance.now()). */
export async function waitForHttp200(child: Subprocess, url: string, what: string, timeoutMs = 30_000, pollMs = 2): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    assertAlive(child, what);
    const ok = await fetch(url).then(
      async (response) => (await response.arrayBuffer(), response.status === 200),
      () => false,
    );
    if (ok) return performance.now();
    if (performance.now() > deadline) throw new Error(`${what} did not answer 200 on ${url} within ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}

/** VmRSS and VmHWM of a process in bytes (null once it is gone). */
export function memoryOf(pid: number): { rss: number; hwm: number } | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

/**
 * Polls VmRSS every `intervalMs` and keeps the maximum; VmHWM (the kernel's own high-water mark)
 * is folded in too, so a spike between two polls is not missed.
 */
export class RssSampler {
  private peakBytes = 0;
  private readonly timer: Timer;
  readonly samples: { atMs: number; rss: number }[] = [];
  private readonly startedAt = performance.now();

  constructor(
    private readonly pid: number,
    intervalMs = 100,
    private readonly keepSamples = false,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    const memory = memoryOf(this.pid);
    if (memory === null) return;
    this.peakBytes = Math.max(this.peakBytes, memory.rss, memory.hwm);
    if (this.keepSamples) this.samples.push({ atMs: performance.now() - this.startedAt, rss: memory.rss });
  }

  /** Takes a last sample and stops polling; returns the peak in bytes. */
  finish(): number {
    this.sample();
    clearInterval(this.timer);
    return this.peakBytes;
  }

  get peak(): number {
    return this.peakBytes;
  }
}
