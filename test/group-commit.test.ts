// GroupCommit's own promises, with stand-in writer threads, and the message deliveries travel in.
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { packBatch, unpackBatch } from "../src/log/batch-message.ts";
import type { Appended } from "../src/log/append.ts";
import { GroupCommit, LogWriteError } from "../src/log/group-commit.ts";
import { tempDir } from "./support/server.ts";

const delivery = (n: number) => ({
  event: "installed" as string | null, unparsedReason: null as "not_json" | null, installationId: null, organizationId: null, appId: null, transactionId: null,
  transactionStatus: null, transactionType: null, transactionAmount: null, receivedAt: "t",
  remoteAddress: null, headers: "{}", rawBody: "{}", payload: `{"n":${n}}`, payloadSha256: String(n),
  secretLabel: "default", envelopeMismatch: false,
});

/**
 * GroupCommit over the stand-in writer test/support/<standIn>.ts, on a log named `file` in a new
 * directory (some stand-ins take their cue from the name).
 */
async function startOver(standIn: string, file = "log.db") {
  const path = join(tempDir(`icr-${standIn}-`), file);
  const writer = await GroupCommit.start({ workerUrl: new URL(`./support/${standIn}.ts`, import.meta.url).href, path, busyTimeoutMs: 100 });
  return { writer, path };
}

test("a writer thread that dies fails what it was handed (503s), and a new one takes over", async () => {
  const { writer } = await startOver("crash-once-writer");
  const first = await Promise.allSettled([writer.append(delivery(1)), writer.append(delivery(2))]);
  expect(first.map((r) => r.status)).toEqual(["rejected", "rejected"]);
  expect((first[0] as PromiseRejectedResult).reason).toBeInstanceOf(LogWriteError);
  const after = await Promise.all([writer.append(delivery(3)), writer.append(delivery(4))]);
  expect(after).toEqual([{ id: 1, duplicate: false }, { id: 2, duplicate: false }]);
  await writer.close();
  await expect(writer.append(delivery(5))).rejects.toBeInstanceOf(LogWriteError);
});

/** Two appends in one turn of the event loop, one in the next: two messages to the writer. */
async function appendOverTwoTurns(writer: GroupCommit) {
  const first = writer.append(delivery(1));
  await new Promise((resolve) => setImmediate(resolve));
  return Promise.allSettled([first, writer.append(delivery(2)), writer.append(delivery(3))]);
}

test("deliveries are handed to the writer while a commit is under way, and one reply settles each of them in order", async () => {
  const { writer } = await startOver("pairing-writer");
  // The stand-in answers nothing until the second message: waiting for the first reply would hang.
  const settled = await appendOverTwoTurns(writer);
  expect<PromiseSettledResult<Appended>[]>(settled).toEqual([1, 2, 3].map((id) => ({ status: "fulfilled", value: { id, duplicate: false } })));
  await writer.close();
});

test("a failed commit rejects only the deliveries it names, the oldest; the next reply settles the rest", async () => {
  const { writer } = await startOver("pairing-writer", "fail-first.db");
  const [first, ...rest] = await appendOverTwoTurns(writer);
  expect(first!.status).toBe("rejected");
  expect((first as PromiseRejectedResult).reason).toBeInstanceOf(LogWriteError);
  expect(writer.failing).toBe(false);
  expect<PromiseSettledResult<Appended>[]>(rest).toEqual([1, 2].map((id) => ({ status: "fulfilled", value: { id, duplicate: false } })));
  await writer.close();
});

test("close waits for the writer's own \"closed\", not for the reply to a refusal handed over last", async () => {
  const { writer, path } = await startOver("closing-writer");
  writer.recordRejection({ receivedAt: "t", remoteAddress: null, status: 403, reason: "invalid_signature", bodySize: 2, bodySha256: null });
  await new Promise((resolve) => setImmediate(resolve));
  await writer.close();
  expect(existsSync(`${path}.closed`)).toBe(true);
});

test("a writer thread that dies at close ends close() all the same; later appends fail", async () => {
  const { writer } = await startOver("closing-writer", "dies-on-close.db");
  expect(await writer.append(delivery(1))).toEqual({ id: 1, duplicate: false });
  await writer.close();
  await expect(writer.append(delivery(2))).rejects.toBeInstanceOf(LogWriteError);
});

test("a batch crosses to the writer thread as one flat array and comes back field for field", () => {
  const batch = [
    delivery(1),
    { ...delivery(2), rawBody: null, transactionAmount: 2.5, envelopeMismatch: true },
    { ...delivery(3), event: null, unparsedReason: "not_json" as const, payload: "not json" },
  ];
  const packed = packBatch(batch);
  expect(packed.every((value) => value === null || typeof value !== "object")).toBe(true);
  expect(unpackBatch(structuredClone(packed))).toEqual(batch);
  expect(unpackBatch(packBatch([]))).toEqual([]);
});
