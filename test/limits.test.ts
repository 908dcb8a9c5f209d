// Limits a public address needs: oversized bodies are refused without being read, slow clients are
// cut off without holding anyone up, and every odd method, path, encoding or empty body gets its
// status and a JSON reason.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../src/logger.ts";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { REPO, spawnReceiver, type ReceiverProcess } from "./support/process.ts";
import { rawRequest, requestHead, type RawResponse } from "./support/raw-http.ts";
import { signedDelivery, startApp, startServer, tempDir, testConfig, type TestServer } from "./support/server.ts";

const MiB = 1024 * 1024;

function expectJsonError(response: RawResponse, status: number, reason: string) {
  expect(response.status).toBe(status);
  expect(response.headers["content-type"]).toContain("application/json");
  expect(JSON.parse(response.body)).toEqual({ error: reason, message: expect.any(String) });
}

describe("a body over the limit, 100 at once, 20 MB each, to a receiver process", () => {
  const SIZE = 20 * MiB;
  const CONCURRENT = 100;
  const dataDir = tempDir("icr-limits-");
  let receiver: ReceiverProcess;

  beforeAll(async () => {
    receiver = await spawnReceiver(["bun", join(REPO, "src", "main.ts")], {
      env: {
        ICR_RECEIVER_DATA_DIR: dataDir,
        ICR_RECEIVER_SECRET: FIXTURE_SECRET,
        ICR_RECEIVER_QUERY_TOKEN: "limits-test-token-0123456789",
        // The default body limit (1 MiB) on purpose. Refusals are not rate-limited here: this is
        // about memory, and a 429 would be just as unread.
        ICR_RECEIVER_REJECTION_LIMIT: "0",
      },
    });
  }, 30_000);
  afterAll(async () => {
    if (receiver && receiver.proc.exitCode === null) await receiver.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** Resident and peak resident memory of the receiver process, in MiB. */
  function memory() {
    const status = readFileSync(`/proc/${receiver.proc.pid}/status`, "utf8");
    const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)![1]) / 1024;
    return { rss: field("VmRSS"), peak: field("VmHWM") };
  }

  /** Sends CONCURRENT oversized requests together, sampling the receiver's memory meanwhile. */
  async function flood(head: string, chunk: Uint8Array, times: number) {
    const before = memory();
    let sampledPeak = before.rss;
    const sampler = setInterval(() => (sampledPeak = Math.max(sampledPeak, memory().rss)), 5);
    const answers = await Promise.all(Array.from({ length: CONCURRENT }, () => rawRequest(receiver.port, head, { repeat: { chunk, times }, timeoutMs: 90_000 })));
    clearInterval(sampler);
    const after = memory();
    // VmHWM is the true peak since start: an upper bound on what this flood added.
    const growth = Math.max(after.peak, sampledPeak) - before.rss;
    return { answers, growth };
  }

  async function expectStillReceiving() {
    expect((await fetch(`${receiver.url}/healthz`)).status).toBe(200);
    const d = signedDelivery();
    const response = await fetch(`${receiver.url}/webhook`, { method: "POST", headers: d.headers, body: d.body });
    expect(response.status).toBe(202);
    const { id } = await response.json();
    const db = new Database(join(dataDir, "icr-receiver.db"), { readonly: true });
    try {
      expect(db.query<{ payload: string }, [number]>("SELECT payload FROM events WHERE id = ?").get(id)?.payload).toBe(d.payloadText);
      // Only the valid deliveries: nothing of the refused bodies.
      expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries").get()!.n).toBe(id);
    } finally {
      db.close();
    }
  }

  function expectRefusedUnread(answers: RawResponse[]) {
    for (const answer of answers) {
      expectJsonError(answer, 413, "body_too_large");
      // The receiver closed the connection instead of reading (and discarding) the rest.
      expect(answer.headers.connection).toBe("close");
      expect(answer.closedByServer).toBe(true);
      expect(answer.sent).toBeLessThan(SIZE);
    }
  }

  test(
    "with Content-Length: 413 at once, the rest never read, memory flat",
    async () => {
      const head = requestHead("POST", "/webhook", { "content-type": "application/json", "content-length": String(SIZE), "x-icr-signature-256": `sha256=${"0".repeat(64)}` });
      const chunk = new Uint8Array(64 * 1024).fill(0x61);
      const { answers, growth } = await flood(head, chunk, SIZE / chunk.length);
      expectRefusedUnread(answers);
      // Buffering them would take 2000 MiB; refusing before reading takes next to nothing.
      expect(growth).toBeLessThan(200);
      await expectStillReceiving();
    },
    120_000,
  );

  test(
    "chunked: 413 once the limit is passed, the rest never read, memory bounded by the limit, not the body",
    async () => {
      const head = requestHead("POST", "/webhook", { "content-type": "application/json", "transfer-encoding": "chunked", "x-icr-signature-256": `sha256=${"0".repeat(64)}` });
      const data = new Uint8Array(64 * 1024).fill(0x61);
      const chunk = Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from("\r\n")]);
      const { answers, growth } = await flood(head, chunk, SIZE / data.length);
      expectRefusedUnread(answers);
      // Each request may hold up to the limit (1 MiB) before it is refused: 100 MiB at worst,
      // against 2000 MiB if the bodies were buffered.
      expect(growth).toBeLessThan(400);
      await expectStillReceiving();
    },
    120_000,
  );

  test("no error was logged for any of it", () => {
    const errors = receiver.lines.filter((line) => line.includes('"level":"error"'));
    expect(errors).toEqual([]);
  });
});

describe("slow clients", () => {
  test(
    "headers or body sent byte by byte are cut off by the timeouts; valid deliveries meanwhile are answered at once",
    async () => {
      const dataDir = tempDir("icr-slow-");
      const config = testConfig(dataDir);
      const logs: { level: string; msg: string; reason?: unknown }[] = [];
      const logger: Logger = Object.assign((level: string, msg: string, fields: Record<string, unknown> = {}) => void logs.push({ level, msg, ...fields }), { flush() {} });
      const receiver = await startApp(config, { logger, idleTimeoutSeconds: 2 });
      const port = receiver.port;
      try {
        const slow = signedDelivery();
        const length = String(Buffer.byteLength(slow.body));
        const head = requestHead("POST", "/webhook", { "content-type": "application/json", "content-length": length, ...slow.headers });
        const started = performance.now();
        // Headers byte by byte: Bun's own header timer (about 10 s) ends them, whatever idleTimeout is.
        const headerTricklers = Array.from({ length: 10 }, () => rawRequest(port, head + slow.body, { byteIntervalMs: 200, timeoutMs: 45_000 }));
        // The head at once, then the body byte by byte, or never: the idle timeout (2 s here) ends them.
        const trickledBodies = Array.from({ length: 10 }, () => rawRequest(port, head + slow.body, { byteIntervalMs: 100, trickleFrom: head.length, timeoutMs: 45_000 }));
        const silentBodies = Array.from({ length: 5 }, () => rawRequest(port, head, { timeoutMs: 45_000 }));
        const slowOnes = [...headerTricklers, ...trickledBodies, ...silentBodies];
        let pending = slowOnes.length;
        for (const s of slowOnes) void s.then(() => pending--);

        // Valid deliveries, one after another, for as long as any slow client is connected.
        const latencies: number[] = [];
        const statuses: number[] = [];
        while (pending > 0 && performance.now() - started < 45_000) {
          const d = signedDelivery();
          const t = performance.now();
          const response = await fetch(`http://127.0.0.1:${port}/webhook`, { method: "POST", headers: d.headers, body: d.body });
          latencies.push(performance.now() - t);
          statuses.push(response.status);
          await response.arrayBuffer();
          await Bun.sleep(100);
        }
        const [headers, bodies, silent] = [await Promise.all(headerTricklers), await Promise.all(trickledBodies), await Promise.all(silentBodies)];

        for (const answer of [...headers, ...bodies, ...silent]) {
          // Cut off by the server, with no answer (the client was not going to read one), before it finished.
          expect(answer.closedByServer).toBe(true);
          expect(answer.error ?? "").not.toContain("no answer");
          expect(answer.status).toBe(0);
        }
        const full = Buffer.byteLength(head + slow.body);
        for (const answer of [...headers, ...bodies]) expect(answer.sent).toBeLessThan(full);
        // Cut off while still sending the head: by Bun's fixed header timer, as the idle timeout
        // (2 s here) only starts once a request has been parsed.
        for (const answer of headers) expect(answer.sent).toBeLessThan(head.length);
        for (const answer of [...bodies, ...silent]) expect(answer.ms).toBeLessThan(20_000);

        expect(statuses.length).toBeGreaterThan(10);
        expect(statuses.every((s) => s === 202)).toBe(true);
        // Generous for a loaded two-core machine: held up behind the slow clients, they would
        // wait until those are cut off (4 s and more), most of them, not one unlucky request.
        const sorted = [...latencies].sort((a, b) => a - b);
        expect(sorted[Math.floor(sorted.length / 2)]!).toBeLessThan(500);
        expect(sorted.at(-1)!).toBeLessThan(3_000);

        // The cut-off bodies are refusals, not errors: a warning each, nothing stored.
        expect(logs.filter((l) => l.level === "error")).toEqual([]);
        expect(logs.filter((l) => l.reason === "incomplete_body").length).toBe(bodies.length + silent.length);
        const count = receiver.log.list({ order: "desc", limit: 1000 }).events.reduce((n, e) => n + e.deliveryCount, 0);
        expect(count).toBe(statuses.length);
      } finally {
        await receiver.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
    90_000,
  );
});

describe("methods, paths, encodings and empty bodies", () => {
  let server: TestServer;
  afterEach(async () => {
    await server?.stop();
  });
  const port = () => Number(new URL(server.url).port);
  const deliveries = () => server.database.sqlite.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries").get()!.n;

  test("HEAD and OPTIONS on the webhook path: 405 with Allow; an unknown method: closed by Bun", async () => {
    server = await startServer();
    const head = await rawRequest(port(), requestHead("HEAD", "/webhook", {}));
    expect(head.status).toBe(405);
    expect(head.headers.allow).toBe("POST");
    expectJsonError(await rawRequest(port(), requestHead("OPTIONS", "/webhook", { "content-length": "0" })), 405, "method_not_allowed");
    const unknown = await rawRequest(port(), requestHead("BREW", "/webhook", { "content-length": "0" }), { timeoutMs: 5_000 });
    expect(unknown.status === 0 || (unknown.status >= 400 && unknown.status < 500)).toBe(true);
    expect(unknown.closedByServer).toBe(true);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  test("unknown paths, near misses included: 404 with a JSON reason; spellings of /webhook reach it, still verified", async () => {
    server = await startServer();
    const post = (path: string, d = signedDelivery(), headers = d.headers) =>
      rawRequest(port(), requestHead("POST", path, { "content-type": "application/json", "content-length": String(Buffer.byteLength(d.body)), ...headers }) + d.body);
    for (const path of ["/", "//webhook", "/WEBHOOK", "/webhook/x", "/webhooks", "/webhook%20", "/webhook;x", "/webhook#x", `/${"a".repeat(4000)}`]) {
      expectJsonError(await post(path), 404, "not_found");
      expectJsonError(await rawRequest(port(), requestHead("GET", path, {})), 404, "not_found");
    }
    expect(deliveries()).toBe(0);
    // URL normalisation (dot segments, %2e, a trailing slash, a query) leads to the webhook, which
    // verifies as ever: nothing gets around the signature by spelling the path differently.
    const spellings = ["/webhook?source=icr", "/webhook/", "/./webhook", "/x/../webhook", "/%2e%2e/webhook"];
    for (const path of spellings) {
      expectJsonError(await post(path, signedDelivery(), { "x-icr-signature-256": `sha256=${"0".repeat(64)}` }), 403, "invalid_signature");
      expect((await post(path)).status).toBe(202);
    }
    expect(deliveries()).toBe(spellings.length);
  });

  test("any Content-Encoding but identity, gzip, deflate and br: 415 before the body is read, checked or measured", async () => {
    server = await startServer({ bodyLimit: 4096 });
    const d = signedDelivery();
    for (const encoding of ["zstd", "compress", "gzip, br", "br, gzip", "bogus"]) {
      const response = await server.post(Bun.gzipSync(d.body), { ...d.headers, "content-encoding": encoding });
      expect([encoding, response.status]).toEqual([encoding, 415]);
      expect(await response.json()).toEqual({ error: "unsupported_encoding", message: expect.any(String) });
    }
    // Before the size check and before the signature: an oversized, unsigned zstd body is still 415.
    const big = await rawRequest(
      port(),
      requestHead("POST", "/webhook", { "content-encoding": "zstd", "content-length": String(10 * MiB) }),
      { repeat: { chunk: new Uint8Array(64 * 1024), times: 160 } },
    );
    expectJsonError(big, 415, "unsupported_encoding");
    expect(big.sent).toBeLessThan(10 * MiB);
    expect(deliveries()).toBe(0);
    // An empty Content-Encoding names no coding (an empty list, RFC 9110 5.6.1): the body as sent.
    const empty = await rawRequest(port(), requestHead("POST", "/webhook", { "content-encoding": "", "content-length": String(Buffer.byteLength(d.body)), ...d.headers }) + d.body);
    expect(empty.status).toBe(202);
    expect(deliveries()).toBe(1);
    for (const encoding of ["identity", "IDENTITY"]) {
      const fresh = signedDelivery();
      expect((await server.post(fresh.body, { ...fresh.headers, "content-encoding": encoding })).status).toBe(202);
    }
  });

  test("an empty body, however it is framed: 400 invalid_body, even with a valid-looking signature", async () => {
    server = await startServer();
    const signature = signedDelivery().headers["x-icr-signature-256"];
    const requests = [
      requestHead("POST", "/webhook", { "content-length": "0", "x-icr-signature-256": signature }),
      requestHead("POST", "/webhook", { "x-icr-signature-256": signature }),
      requestHead("POST", "/webhook", { "transfer-encoding": "chunked", "x-icr-signature-256": signature }) + "0\r\n\r\n",
      requestHead("POST", "/webhook", { "content-type": "application/json", "content-length": "0" }),
    ];
    for (const request of requests) expectJsonError(await rawRequest(port(), request), 400, "invalid_body");
    for (const body of [" ", "\r\n\t ", "null", '""', "0", "{}"]) {
      const response = await server.post(body, { "x-icr-signature-256": signature });
      expect([body, response.status]).toEqual([body, 400]);
      expect((await response.json()).error).toBe(body === "{}" ? "missing_signed_data" : "invalid_body");
    }
    expect(deliveries()).toBe(0);
  });
});
