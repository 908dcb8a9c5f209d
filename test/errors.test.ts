// One error idiom at the webhook: a refusal is one answer, counted and logged once; a bug is a 500
// logged as one; 503 only when the log says its commit failed.
import { afterAll, expect, test } from "bun:test";
import { createApp } from "../src/app.ts";
import { openEventLog, type EventLog } from "../src/log/event-log.ts";
import type { Logger } from "../src/logger.ts";
import { signedDelivery, tempDir, testConfig } from "./support/server.ts";

const lines: { level: string; msg: string; [field: string]: unknown }[] = [];
const logger: Logger = Object.assign((level: string, msg: string, fields: Record<string, unknown> = {}) => void lines.push({ level, msg, ...fields }), { flush() {} });
const config = testConfig(tempDir("icr-errors-"));
const log = await openEventLog(config.databasePath);
// The real log, with one fault injected: an append that throws what no commit would (a bug).
let failNext = false;
const faulty: EventLog = {
  ...log,
  append: (delivery, request) => {
    if (!failNext) return log.append(delivery, request);
    failNext = false;
    return Promise.reject(new TypeError("a bug while building the row"));
  },
};
const { app, close } = createApp(config, faulty, { logger });
app.listen({ hostname: "127.0.0.1", port: 0 });
const url = `http://127.0.0.1:${app.server!.port}${config.webhookPath}`;
afterAll(async () => {
  await close();
  await log.close();
});

test("an error that is not the log's refusal to commit is a 500 logged as a bug, not a 503", async () => {
  failNext = true;
  const d = signedDelivery();
  const response = await fetch(url, { method: "POST", headers: d.headers, body: d.body });
  expect(response.status).toBe(500);
  expect(await response.json()).toEqual({ error: "internal_error", message: "internal error" });
  expect(lines.filter((l) => l.msg === "unexpected error")).toHaveLength(1);
  expect(String(lines.find((l) => l.msg === "unexpected error")!.error)).toContain("a bug while building the row");
  // The next delivery is stored as usual.
  const next = signedDelivery();
  expect((await fetch(url, { method: "POST", headers: next.headers, body: next.body })).status).toBe(202);
});

test("a refusal is logged once, with its reason", async () => {
  const before = lines.length;
  const forged = signedDelivery({}, { secret: "not the secret" });
  expect((await fetch(url, { method: "POST", headers: forged.headers, body: forged.body })).status).toBe(403);
  const logged = lines.slice(before);
  expect(logged).toHaveLength(1);
  expect(logged[0]).toMatchObject({ level: "warn", msg: "delivery", status: 403, reason: "invalid_signature" });
});
