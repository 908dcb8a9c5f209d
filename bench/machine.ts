// The machine a run happened on, and how busy it was with other people's work: the figures are
// only comparable side by side within one run, and the README cites the machine with the table.
import { availableParallelism, loadavg, release, totalmem } from "node:os";
import { readFileSync } from "node:fs";
import { run, sleep } from "./processes.ts";

export interface Machine {
  cpus: number;
  cpuModel: string;
  kernel: string;
  os: string;
  memoryGiB: number;
  bun: string;
  node: string;
  wrk: string;
}

function firstMatch(file: string, pattern: RegExp): string {
  try {
    return pattern.exec(readFileSync(file, "utf8"))?.[1]?.trim() ?? "unknown";
  } catch {
    return "unknown";
  }
}

export async function describeMachine(): Promise<Machine> {
  const version = async (cmd: string[]) => {
    try {
      const { stdout, stderr } = await run(cmd);
      return (stdout + stderr).trim().split("\n")[0]!;
    } catch (error) {
      // `wrk -v` prints its version, then its usage, and exits 1.
      return /wrk \S+/.exec(String(error).replace(/^.*exited.*$/m, ""))?.[0] ?? "unknown";
    }
  };
  return {
    cpus: availableParallelism(),
    cpuModel: firstMatch("/proc/cpuinfo", /^model name\s*:\s*(.+)$/m),
    kernel: release(),
    os: firstMatch("/etc/os-release", /^PRETTY_NAME="?([^"\n]+)"?$/m),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    bun: Bun.version,
    node: await version(["node", "--version"]),
    wrk: (await version(["wrk", "-v"])).replace(/ Copyright.*$/, ""),
  };
}

/** Clock ticks per second of /proc (USER_HZ): 100 on every Linux this runs on. */
export const TICKS = 100;

/** Machine-wide CPU seconds from /proc/stat: busy in processes (user, nice, system), stolen by
 * the hypervisor, and the capacity that elapsed (all columns, all CPUs). */
export function machineCpu(): { process: number; steal: number; total: number } {
  // cpu  user nice system idle iowait irq softirq steal (guest columns are inside user/nice)
  const columns = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const [user = 0, nice = 0, system = 0, , , , , steal = 0] = columns;
  const total = columns.reduce((a, b) => a + b, 0);
  return { process: (user + nice + system) / TICKS, steal: steal / TICKS, total: total / TICKS };
}

/** User + system CPU seconds of one live process (0 once it is gone). */
export function processCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime, stime (fields 14 and 15)
  } catch {
    return 0;
  }
}

/** CPU seconds the benchmark process itself has used. */
export const selfCpu = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};

export interface Noise {
  /** Share of the machine's CPU used by processes that are not the benchmark's (0..1). */
  other: number;
  /** Share stolen by the hypervisor (0..1). */
  steal: number;
  loadavg1m: number;
}

/**
 * Measures what other people's work costs while `during` runs: machine CPU minus the CPU of the
 * benchmark's own processes (`ours` returns their CPU seconds used meanwhile). Kernel work done in
 * interrupt context (part of loopback networking) is left out on both sides.
 */
export async function measureNoise<T>(during: () => Promise<T>, ours: (result: T) => number): Promise<{ result: T; noise: Noise }> {
  const before = machineCpu();
  const selfBefore = selfCpu();
  const result = await during();
  const after = machineCpu();
  const capacity = after.total - before.total;
  const used = after.process - before.process - (selfCpu() - selfBefore) - ours(result);
  return {
    result,
    noise: {
      other: capacity > 0 ? Math.max(0, used) / capacity : 0,
      steal: capacity > 0 ? (after.steal - before.steal) / capacity : 0,
      loadavg1m: loadavg()[0]!,
    },
  };
}

/** How busy the machine is without us: sampled while the benchmark itself sits idle. */
export async function sampleNoise(ms = 2000): Promise<Noise> {
  return (await measureNoise(() => sleep(ms), () => 0)).noise;
}
