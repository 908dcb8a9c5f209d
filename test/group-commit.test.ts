// GroupCommit's own promises, with stand-in writer threads, and the message a batch travels in.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { packBatch, unpackBatch } from "../src/log/batch-message.ts";
import { GroupCommit, LogWriteError } from "../src/log/group-commit.ts";
import { tempDir } from "./support/server.ts";

const delivery = (n: number) => ({
  event: "installed" as string | null, unparsedReason: null as "not_json" | null, installationId: null, organizationId: null, appId: null, transactionId: null,
  transactionStatus: null, transactionType: null, transactionAmount: null, receivedAt: "t",
  remoteAddress: null, headers: "{}", rawBody: "{}", payload: `{"n":${n}}`, payloadSha256: String(n),
  secretLabel: "default", envelopeMismatch: false,
});

test("a writer thread that dies fails only its batch (503s), and a new one takes over", async () => {
  const writer = await GroupCommit.start({
    workerUrl: new URL("./support/crash-once-writer.ts", import.meta.url).href,
    path: join(tempDir("icr-crash-writer-"), "log.db"),
    busyTimeoutMs: 100,
  });
  const first = await Promise.allSettled([writer.append(delivery(1)), writer.append(delivery(2))]);
  expect(first.map((r) => r.status)).toEqual(["rejected", "rejected"]);
  expect((first[0] as PromiseRejectedResult).reason).toBeInstanceOf(LogWriteError);
  const after = await Promise.all([writer.append(delivery(3)), writer.append(delivery(4))]);
  expect(after).toEqual([{ id: 1, duplicate: false }, { id: 2, duplicate: false }]);
  await writer.close();
  await expect(writer.append(delivery(5))).rejects.toBeInstanceOf(LogWriteError);
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
