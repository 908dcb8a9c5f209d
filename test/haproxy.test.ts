// Two receivers behind one address: deploy/haproxy.cfg itself (its addresses from the environment),
// run by Debian's haproxy in the foreground over two receiver processes, each with its own data
// directory and log and the same webhook secret, both forwarding to one sink. Under concurrent load
// one receiver is SIGKILLed and restarted: every delivery the senders got a 2xx for is in one of the
// two logs, the senders see no failure, and the sink gets every acknowledged event, each webhook-id
// at least once (repeats are counted and printed: a retry that reached both receivers, or a forward
// in flight at the kill, is sent again with the same id).
import { afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import type { Subprocess } from "bun";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { rawRequest } from "./support/raw-http.ts";
import { freePort, REPO, spawnReceiver, type ReceiverProcess } from "./support/process.ts";
import { QUERY_TOKEN, signedDelivery, tempDir } from "./support/server.ts";
import { startSink, type Sink } from "./support/sink.ts";
import { sqlite3 } from "./support/sqlite-shell.ts";
import { until } from "./support/until.ts";

const HAPROXY = Bun.which("haproxy") ?? (existsSync("/usr/sbin/haproxy") ? "/usr/sbin/haproxy" : null);
const CONFIG = join(REPO, "deploy", "haproxy.cfg");
const FORWARD_SECRET = `whsec_${randomBytes(32).toString("base64")}`;
const sha256 = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch {
      // keep cleaning up
    }
  }
});


/** A receiver process on a fixed loopback port (so a restart comes back where HAProxy looks). */
function receiverStarter(name: string, sink: Sink | null, rejectionLimit = 0) {
  const dataDir = tempDir(`icr-haproxy-${name}-`);
  const portPromise = freePort();
  let current: ReceiverProcess | null = null;
  cleanups.push(async () => {
    if (current && current.proc.exitCode === null && current.proc.signalCode === null) {
      current.proc.kill("SIGKILL");
      await current.proc.exited;
    }
  });
  return {
    dataDir,
    database: join(dataDir, "icr-receiver.db"),
    port: portPromise,
    get process() {
      return current;
    },
    async start() {
      const env: Record<string, string> = {
        ICR_RECEIVER_PORT: String(await portPromise),
        ICR_RECEIVER_DATA_DIR: dataDir,
        ICR_RECEIVER_SECRET: FIXTURE_SECRET,
        ICR_RECEIVER_QUERY_TOKEN: QUERY_TOKEN,
        ICR_RECEIVER_REJECTION_LIMIT: String(rejectionLimit),
      };
      if (sink) {
        Object.assign(env, {
          ICR_RECEIVER_FORWARD_URL: sink.url,
          ICR_RECEIVER_FORWARD_SECRET: FORWARD_SECRET,
          ICR_RECEIVER_FORWARD_BACKOFF: "50ms",
          // Drains the backlog the load leaves (one request in flight per installation, 64 of them).
          ICR_RECEIVER_FORWARD_CONCURRENCY: "32",
        });
      }
      current = await spawnReceiver(["bun", join(REPO, "src", "main.ts")], { env });
      return current;
    },
  };
}

interface Balancer {
  url: string;
  lines: string[];
}

/** deploy/haproxy.cfg as committed, in the foreground, its addresses from the environment. */
async function startHaproxy(receivers: number[]): Promise<Balancer> {
  const port = await freePort();
  const proc: Subprocess<"ignore", "pipe", "pipe"> = Bun.spawn([HAPROXY!, "-f", CONFIG, "-db"], {
    env: {
      PATH: process.env.PATH!,
      ICR_LB_BIND: `127.0.0.1:${port}`,
      ICR_LB_RECEIVER_A: `127.0.0.1:${receivers[0]}`,
      ICR_LB_RECEIVER_B: `127.0.0.1:${receivers[1]}`,
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  });
  const lines: string[] = [];
  for (const stream of [proc.stdout, proc.stderr]) {
    void (async () => {
      const decoder = new TextDecoder();
      let buffered = "";
      for await (const chunk of stream) {
        buffered += decoder.decode(chunk, { stream: true });
        const parts = buffered.split("\n");
        buffered = parts.pop()!;
        lines.push(...parts);
      }
    })();
  }
  const url = `http://127.0.0.1:${port}`;
  // Up once it answers on the webhook path (a GET: 405 from a receiver).
  await until(
    async () => {
      if (proc.exitCode !== null) throw new Error(`haproxy exited ${proc.exitCode}: ${lines.join("\n")}`);
      try {
        return (await fetch(`${url}/webhook`)).status === 405;
      } catch {
        return false;
      }
    },
    10_000,
    "haproxy",
  );
  return { url, lines };
}

/** Every payload digest stored in a log, read-only. */
function storedDigests(database: string): Set<string> {
  const db = new Database(database, { readonly: true });
  try {
    return new Set(db.query<{ d: string }, []>("SELECT payload_sha256 AS d FROM events").all().map((r) => r.d));
  } finally {
    db.close();
  }
}

describe.skipIf(HAPROXY === null)("two receivers behind deploy/haproxy.cfg", () => {
  test("one receiver SIGKILLed under load and restarted: every 2xx is in a log, no sender failure, every event reaches the app once by webhook-id", async () => {
    const sink = startSink([FORWARD_SECRET]);
    cleanups.push(() => sink.stop());
    const a = receiverStarter("a", sink);
    const b = receiverStarter("b", sink);
    await Promise.all([a.start(), b.start()]);
    // A new destination starts at the end of the log: wait until both have it before sending.
    for (const r of [a, b]) {
      await until(() => sqlite3(r.database, "SELECT count(*) FROM forward_destinations", ["-readonly"]) === "1", 5000, "the destination");
    }
    const lb = await startHaproxy([await a.port, await b.port]);

    const results: { status: number | string; digest: string }[] = [];
    let running = true;
    const senders = Array.from({ length: 8 }, async () => {
      while (running) {
        const d = signedDelivery({ installation: { id: `inst-${results.length % 64}`, organization: { id: "org-1" }, appId: "app-1" } });
        const digest = sha256(d.payloadText);
        try {
          // A connection per delivery, as a webhook sender makes them.
          const response = await fetch(`${lb.url}/webhook`, { method: "POST", headers: { ...d.headers, connection: "close" }, body: d.body });
          await response.arrayBuffer();
          results.push({ status: response.status, digest });
        } catch (error) {
          results.push({ status: String(error), digest });
        }
        // Paced (about 500 a second in all), so the forwarding backlog the test waits for stays
        // a few seconds long; the load is in the concurrency, not the rate.
        await Bun.sleep(10);
      }
    });
    await Bun.sleep(1000);
    const before = results.length;
    a.process!.proc.kill("SIGKILL");
    await a.process!.proc.exited;
    await Bun.sleep(1500);
    const duringOutage = results.length - before;
    await a.start();
    await Bun.sleep(1500);
    running = false;
    await Promise.all(senders);

    const acknowledged = results.filter((r) => typeof r.status === "number" && r.status >= 200 && r.status < 300);
    const failures = results.filter((r) => !acknowledged.includes(r));
    expect(results.length).toBeGreaterThan(1000);
    expect(duringOutage).toBeGreaterThan(200);

    // Both logs, as they are on disk (A's was cut by the SIGKILL).
    const inA = storedDigests(a.database);
    const inB = storedDigests(b.database);
    const missing = acknowledged.filter((r) => !inA.has(r.digest) && !inB.has(r.digest));
    const inBoth = [...inA].filter((d) => inB.has(d)).length;

    // Every acknowledged event reaches the app (A forwards its backlog after the restart).
    const wanted = new Set(acknowledged.map((r) => `msg_${r.digest}`));
    const reached = () => new Set(sink.received.map((s) => s.id));
    await until(() => [...wanted].every((id) => reached().has(id)), 30_000, "every acknowledged event at the sink").catch(() => {});
    const distinct = reached();
    const repeats = sink.received.length - distinct.size;
    // HAProxy's log line: …/srv_conn/retries srv_queue/backend_queue "request"; "+N": redispatched.
    const retried = lb.lines.filter((line) => /\/\+?[1-9]\d* \d+\/\d+ "/.test(line)).length;
    // Requests sent to the unchecked fallbacks: both checked receivers were DOWN at that moment.
    const viaFallback = lb.lines.filter((line) => / receivers\/[ab]-last /.test(line)).length;
    console.log(
      `haproxy test: ${results.length} sent, ${acknowledged.length} acknowledged, ${failures.length} failures, ` +
        `${duringOutage} sent while A was down; in A ${inA.size}, in B ${inB.size}, in both ${inBoth}; ` +
        `haproxy retried ${retried}, via the fallbacks ${viaFallback}; sink received ${sink.received.length}, distinct ${distinct.size}, repeats ${repeats}`,
    );

    expect(failures.map((f) => f.status)).toEqual([]);
    // The balancer never refused a delivery itself for want of a server.
    expect(lb.lines.filter((line) => line.includes("<NOSRV>"))).toEqual([]);
    expect(missing).toEqual([]);
    expect(sink.unverified).toBe(0);
    expect([...distinct].sort()).toEqual([...wanted].sort());
    // The restarted receiver serves again through the balancer.
    await until(() => lb.lines.some((line) => /Server receivers\/a is UP/.test(line)), 5000, "a back UP");
  }, 60_000);

  test("what a retry cannot change: a forgery is 403 and a body over the limit 413, neither stored; other paths never reach a receiver", async () => {
    const a = receiverStarter("a", null);
    const b = receiverStarter("b", null);
    await Promise.all([a.start(), b.start()]);
    const lb = await startHaproxy([await a.port, await b.port]);

    const forged = signedDelivery({}, { secret: "not-the-secret" });
    const refused = await fetch(`${lb.url}/webhook`, { method: "POST", headers: forged.headers, body: forged.body });
    expect(refused.status).toBe(403);
    // Over the 1 MiB limit: the receiver answers 413 before reading the rest and closes, so a
    // fetch still sending sees a reset; a raw socket reads the answer that came back.
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    const times = 17;
    const length = '{"signedData":"'.length + chunk.length * times + 2;
    const tooLarge = await rawRequest(
      Number(new URL(lb.url).port),
      `POST /webhook HTTP/1.1\r\nhost: icr\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n{"signedData":"`,
      { repeat: { chunk, times }, timeoutMs: 10_000 },
    );
    // The receiver's 413 reaches the sender, or, when the receiver's close lands while HAProxy is
    // still relaying the body, the reset can discard the answer before HAProxy reads it (its log
    // then shows the server aborting, SD) and the sender sees the connection end. Either way one
    // receiver refused it as too large, once: a body past HAProxy's buffer is never retried.
    expect([413, 0]).toContain(tooLarge.status);
    const refusedAsTooLarge = () =>
      [a, b].map((r) => Number(sqlite3(r.database, "SELECT count(*) FROM rejections WHERE status = 413", ["-readonly"]))).reduce((x, y) => x + y);
    await until(() => refusedAsTooLarge() > 0, 5000, "the 413 in a receiver's rejections");
    expect(refusedAsTooLarge()).toBe(1);
    // The query API is per receiver, never through the balancer.
    expect((await fetch(`${lb.url}/events`, { headers: { authorization: `Bearer ${QUERY_TOKEN}` } })).status).toBe(404);
    for (const r of [a, b]) expect(sqlite3(r.database, "SELECT count(*) FROM events", ["-readonly"])).toBe("0");
    // A 403 is final: one receiver saw it, not both (retry-on has no 4xx).
    const rejections = [a, b].map((r) => Number(sqlite3(r.database, "SELECT count(*) FROM rejections WHERE status = 403", ["-readonly"])));
    expect(rejections.reduce((x, y) => x + y)).toBe(1);
  }, 30_000);

  test("refusals are counted against the address HAProxy appends to X-Forwarded-For, not one the sender wrote", async () => {
    const a = receiverStarter("a", null, 2);
    const b = receiverStarter("b", null, 2);
    await Promise.all([a.start(), b.start()]);
    const lb = await startHaproxy([await a.port, await b.port]);
    // Each forgery claims another address; the proxy appends the real one (127.0.0.1), and that
    // last hop is what each receiver counts: two refusals each, then 429.
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const forged = signedDelivery({}, { secret: "not-the-secret" });
      const response = await fetch(`${lb.url}/webhook`, { method: "POST", headers: { ...forged.headers, "x-forwarded-for": `203.0.113.${i + 1}` }, body: forged.body });
      statuses.push(response.status);
    }
    expect(statuses.filter((s) => s === 403)).toHaveLength(4);
    expect(statuses.filter((s) => s === 429)).toHaveLength(4);
    // What the receivers saw: the sender's hop, then the proxy's.
    const d = signedDelivery();
    expect((await fetch(`${lb.url}/webhook`, { method: "POST", headers: { ...d.headers, "x-forwarded-for": "203.0.113.50" }, body: d.body })).status).toBe(202);
    const seen = [a, b].map((r) => sqlite3(r.database, "SELECT json_extract(headers, '$.\"x-forwarded-for\"') FROM deliveries", ["-readonly"])).filter((v) => v !== "");
    expect(seen).toEqual(["203.0.113.50, 127.0.0.1"]);
  }, 30_000);
});
