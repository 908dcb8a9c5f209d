// The bench's /proc parsing and its naming of the receiver's threads (pure: no process is read).
import { expect, test } from "bun:test";
import { cpuSplit, parseIo, parseStat, type ThreadSample } from "./threads.ts";

test("parseStat takes utime + stime after a comm that holds spaces and parentheses", () => {
  const line = "4242 (HTTP (x) Client) S 1 4242 4242 0 -1 4194368 10 0 0 0 137 42 0 0 20 0 9 0 1000 1 1 18446744073709551615";
  expect(parseStat(line)).toEqual({ tid: 4242, comm: "HTTP (x) Client", cpuTicks: 179 });
  expect(() => parseStat("garbage")).toThrow();
});

test("parseIo reads rchar and wchar", () => {
  expect(parseIo("rchar: 120\nwchar: 4096\nsyscr: 3\nsyscw: 1\nread_bytes: 0\n")).toEqual({ readBytes: 120, writtenBytes: 4096 });
});

const sample = (tid: number, comm: string, cpuSeconds: number, readBytes = 0, writtenBytes = 0): ThreadSample => ({ tid, comm, cpuSeconds, readBytes, writtenBytes });

test("cpuSplit names the main thread by pid and the workers by creation order, per delivery", () => {
  const before = [sample(10, "icr-receiver", 1), sample(11, "JITWorker", 0.5), sample(14, "Worker", 2, 0, 0), sample(15, "Worker", 0.1, 0, 0)];
  const after = [
    sample(10, "icr-receiver", 1.6),
    sample(11, "JITWorker", 0.6),
    sample(12, "JITWorker", 0.05), // started between the samples
    sample(14, "Worker", 2.5, 1_000, 50_000),
    sample(15, "Worker", 0.15, 20_000, 20_000),
  ];
  const split = cpuSplit(before, after, 10, 10_000, ["writer", "checkpointer", "forwarder"]);
  const byRole = Object.fromEntries(split.roles.map((r) => [r.role, r]));
  expect(byRole.main!.cpuUsPerDelivery).toBeCloseTo(60);
  expect(byRole.writer!.cpuUsPerDelivery).toBeCloseTo(50);
  expect(byRole.writer!.writtenBytesPerDelivery).toBeCloseTo(5);
  expect(byRole.checkpointer!.cpuUsPerDelivery).toBeCloseTo(5);
  expect(byRole.JITWorker!.threads).toBe(2);
  expect(byRole.JITWorker!.cpuUsPerDelivery).toBeCloseTo(15);
  expect(split.roles.map((r) => r.role)).toEqual(["main", "writer", "JITWorker", "checkpointer"]);
  expect(split.totalUsPerDelivery).toBeCloseTo(130);
  expect(split.rolesConfirmed).toBe(true);
  // Swapped I/O (the checkpointer created first) is not confirmed.
  const swapped = cpuSplit(before, [after[0]!, after[3]!, { ...after[4]!, tid: 13 }].sort((a, b) => a.tid - b.tid), 10, 10_000, ["writer", "checkpointer"]);
  expect(swapped.rolesConfirmed).toBe(false);
});
