// CPU per thread of a running process (/proc/<pid>/task/*/stat), and which of the receiver's
// threads is which: the per-delivery CPU split of the ingest row.
//
// Bun names every worker thread "Worker", so the receiver's workers are told apart by the order
// they are created in, which src/ fixes: the writer is started first and starts the checkpointer
// before it reports ready; forwarding starts after the log is open. Their I/O (/proc/.../io) is
// kept beside the CPU so that a change of that order shows: the writer writes the WAL and reads
// next to nothing, the checkpointer reads the WAL back.
import { readdirSync, readFileSync } from "node:fs";
import { TICKS } from "./machine.ts";

export interface ThreadSample {
  tid: number;
  comm: string;
  /** utime + stime, seconds. */
  cpuSeconds: number;
  /** rchar / wchar of /proc/<pid>/task/<tid>/io (bytes passed to read and write calls). */
  readBytes: number;
  writtenBytes: number;
}

/** One line of /proc/<pid>/task/<tid>/stat: its comm (which may hold spaces and parentheses) and utime + stime. */
export function parseStat(line: string): { tid: number; comm: string; cpuTicks: number } {
  const open = line.indexOf("(");
  const close = line.lastIndexOf(")");
  if (open < 0 || close < open) throw new Error(`not a /proc stat line: ${line.slice(0, 80)}`);
  const fields = line.slice(close + 2).trim().split(" ");
  // After the comm: state is field 3 of proc(5); utime and stime are fields 14 and 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`no utime/stime in: ${line.slice(0, 80)}`);
  return { tid: Number(line.slice(0, open).trim()), comm: line.slice(open + 1, close), cpuTicks: utime + stime };
}

/** rchar and wchar of a /proc io file. */
export function parseIo(text: string): { readBytes: number; writtenBytes: number } {
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? NaN);
  return { readBytes: field("rchar"), writtenBytes: field("wchar") };
}

/** Every live thread of `pid` (threads gone between the listing and the read are left out). */
export function sampleThreads(pid: number): ThreadSample[] {
  const samples: ThreadSample[] = [];
  for (const name of readdirSync(`/proc/${pid}/task`)) {
    try {
      const { tid, comm, cpuTicks } = parseStat(readFileSync(`/proc/${pid}/task/${name}/stat`, "utf8"));
      const io = parseIo(readFileSync(`/proc/${pid}/task/${name}/io`, "utf8"));
      samples.push({ tid, comm, cpuSeconds: cpuTicks / TICKS, ...io });
    } catch {
      // exited meanwhile
    }
  }
  return samples.sort((a, b) => a.tid - b.tid);
}

export interface ThreadCpu {
  /** main, writer, checkpointer, forwarder, or the thread's comm for Bun's and JavaScriptCore's own. */
  role: string;
  threads: number;
  /** CPU between the samples, µs per delivery. */
  cpuUsPerDelivery: number;
  readBytesPerDelivery: number;
  writtenBytesPerDelivery: number;
}

export interface CpuSplit {
  deliveries: number;
  roles: ThreadCpu[];
  totalUsPerDelivery: number;
  /** Whether the I/O agrees with the roles told by creation order (see the file's comment). */
  rolesConfirmed: boolean;
}

/** Names the threads: the process's own tid is the main thread; the "Worker" threads in creation order. */
export function threadRoles(samples: ThreadSample[], pid: number, workers: readonly string[]): Map<number, string> {
  const roles = new Map<number, string>();
  let worker = 0;
  for (const s of samples) {
    if (s.tid === pid) roles.set(s.tid, "main");
    else if (s.comm === "Worker") roles.set(s.tid, workers[worker++] ?? "Worker");
    else roles.set(s.tid, s.comm);
  }
  return roles;
}

/**
 * The CPU (and I/O) each role used between two samples of one process, per delivery stored
 * meanwhile. `workers`: the roles of the "Worker" threads in creation order. Threads of a role that
 * came or went between the samples count from zero or up to their last sample.
 */
export function cpuSplit(before: ThreadSample[], after: ThreadSample[], pid: number, deliveries: number, workers: readonly string[]): CpuSplit {
  const roles = threadRoles(after, pid, workers);
  const earlier = new Map(before.map((s) => [s.tid, s]));
  const byRole = new Map<string, { threads: number; cpu: number; read: number; written: number }>();
  for (const s of after) {
    const b = earlier.get(s.tid);
    const role = roles.get(s.tid)!;
    const sum = byRole.get(role) ?? { threads: 0, cpu: 0, read: 0, written: 0 };
    sum.threads++;
    sum.cpu += s.cpuSeconds - (b?.cpuSeconds ?? 0);
    sum.read += s.readBytes - (b?.readBytes ?? 0);
    sum.written += s.writtenBytes - (b?.writtenBytes ?? 0);
    byRole.set(role, sum);
  }
  const per = (x: number) => (deliveries > 0 ? x / deliveries : NaN);
  const list: ThreadCpu[] = [...byRole.entries()]
    .map(([role, s]) => ({ role, threads: s.threads, cpuUsPerDelivery: per(s.cpu * 1e6), readBytesPerDelivery: per(s.read), writtenBytesPerDelivery: per(s.written) }))
    .sort((a, b) => b.cpuUsPerDelivery - a.cpuUsPerDelivery);
  const writer = list.find((r) => r.role === "writer");
  const checkpointer = list.find((r) => r.role === "checkpointer");
  const rolesConfirmed =
    writer !== undefined &&
    checkpointer !== undefined &&
    writer.writtenBytesPerDelivery > writer.readBytesPerDelivery &&
    checkpointer.readBytesPerDelivery > writer.readBytesPerDelivery;
  return { deliveries, roles: list, totalUsPerDelivery: list.reduce((sum, r) => sum + r.cpuUsPerDelivery, 0), rolesConfirmed };
}
