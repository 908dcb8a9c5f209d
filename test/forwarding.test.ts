// Forwarding to the app, against a real sink on loopback that verifies every request with the
// `standardwebhooks` package: delivery, order per installation, retries and their timing, dead
// letters and replays, several destinations, secret rotation, a SIGKILL mid-forwarding, the CLI
// and HTTP surfaces, and a sqlite3 look at the progress tables.
import { afterEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import type { Destination, ForwardingConfig } from "../src/config.ts";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { REPO, spawnReceiver } from "./support/process.ts";
import { QUERY_TOKEN, signedDelivery, startApp, startServer, tempDir, testConfig, type TestServer } from "./support/server.ts";
import { startSink, type Sink } from "./support/sink.ts";
import { sqlite3 } from "./support/sqlite-shell.ts";
import { until } from "./support/until.ts";

const whsec = () => `whsec_${randomBytes(32).toString("base64")}`;
const SECRET = whsec();
const sha256 = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function forwarding(destinations: Destination[], overrides: Partial<ForwardingConfig> = {}): ForwardingConfig {
  return { destinations, secrets: [SECRET], timeoutMs: 2000, backoffMs: 50, maxBackoffMs: 400, maxAgeMs: 60_000, concurrency: 8, ...overrides };
}

async function receiverFor(config: ForwardingConfig, options: Parameters<typeof startServer>[1] = {}): Promise<TestServer> {
  const server = await startServer({ forwarding: config }, options);
  cleanups.push(() => server.stop());
  return server;
}

function sink(secrets = [SECRET]): Sink {
  const s = startSink(secrets);
  cleanups.push(() => s.stop());
  return s;
}


async function post(server: TestServer, payload: Record<string, unknown>) {
  const d = signedDelivery(payload);
  const response = await server.post(d.body, d.headers);
  expect(response.status).toBe(202);
  return { ...d, id: (await response.json()).id as number };
}

/** GET /forward/status once its progress satisfies `settled` (the forwarding thread commits it a moment after a delivery). */
async function statusWhen(server: TestServer, settled: (destinations: Record<string, any>[]) => boolean) {
  let status = await (await server.query("/forward/status")).json();
  for (let i = 0; i < 250 && !settled(status.destinations); i++) {
    await Bun.sleep(20);
    status = await (await server.query("/forward/status")).json();
  }
  return status as { destinations: Record<string, any>[] };
}

const inInstallation = (id: string, extra: Record<string, unknown> = {}) => ({
  installation: { id, appId: "app-1", organization: { id: "org-1" } },
  ...extra,
});

describe("forwarding", () => {
  test("every event reaches the app, verified by the standardwebhooks package, with a stable webhook-id and the helpful headers", async () => {
    const app = sink();
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }]));
    const posted = [];
    for (let i = 0; i < 20; i++) posted.push(await post(server, inInstallation(`inst-${i % 3}`, { event: i % 2 ? "installed" : "warehouseTransaction", n: i })));
    await until(() => app.received.length === 20, 10_000, "20 deliveries");
    expect(app.unverified).toBe(0);
    for (const p of posted) {
      const got = app.received.find((r) => r.eventId === p.id)!;
      // The body is the signed payload exactly as stored; the id comes from its digest.
      expect(got.body).toBe(p.payloadText);
      expect(got.id).toBe(`msg_${sha256(p.payloadText)}`);
      expect(got.event).toBe(p.payload.event as string);
      expect(got.attempt).toBe(1);
      expect(got.headers["x-icr-envelope-mismatch"]).toBe("false");
      expect(got.headers["content-type"]).toBe("application/json");
      // Never a secret in what the app is sent.
      expect(JSON.stringify(got.headers)).not.toContain(SECRET.slice(6));
      expect(JSON.stringify(got.headers)).not.toContain(FIXTURE_SECRET);
    }
    // What the README shows an app doing, in three lines.
    const sample = app.received[0]!;
    const webhook = new Webhook(SECRET);
    const event = webhook.verify(sample.body, sample.headers) as { event: string };
    expect(event.event).toBe(sample.event!);
  });

  test("events of one installation in log order; a failing installation never holds up the others", async () => {
    const app = sink();
    let failuresLeft = 6;
    app.answer = (r) => (r.installation === "inst-a" && failuresLeft-- > 0 ? { status: 500 } : { status: 200 });
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }]));
    const ids: Record<string, number[]> = { "inst-a": [], "inst-b": [] };
    for (let i = 0; i < 10; i++) {
      const installation = i % 2 === 0 ? "inst-a" : "inst-b";
      ids[installation]!.push((await post(server, inInstallation(installation, { n: i }))).id);
    }
    await until(() => app.received.length === 10, 15_000, "10 deliveries");
    const order = (installation: string) => app.received.filter((r) => r.installation === installation).map((r) => r.eventId);
    expect(order("inst-a")).toEqual(ids["inst-a"]!);
    expect(order("inst-b")).toEqual(ids["inst-b"]!);
    // inst-b was all through while inst-a was still failing.
    const lastB = Math.max(...app.received.filter((r) => r.installation === "inst-b").map((r) => r.at));
    const firstA = Math.min(...app.received.filter((r) => r.installation === "inst-a").map((r) => r.at));
    expect(lastB).toBeLessThan(firstA);
    expect(app.received.find((r) => r.eventId === ids["inst-a"]![0])!.attempt).toBe(7);
  });

  test("retries back off, and honour Retry-After (seconds) when the app sends it", async () => {
    const app = sink();
    const attempts: number[] = [];
    app.answer = () => {
      attempts.push(Date.now());
      return attempts.length === 1 ? { status: 429, headers: { "retry-after": "1" } } : attempts.length < 4 ? { status: 503 } : { status: 200 };
    };
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }], { backoffMs: 100, maxBackoffMs: 400 }));
    await post(server, inInstallation("inst-r"));
    await until(() => app.received.length === 1, 10_000, "the delivery");
    expect(attempts).toHaveLength(4);
    // Retry-After: 1 second, not the 100 ms backoff.
    expect(attempts[1]! - attempts[0]!).toBeGreaterThanOrEqual(950);
    // Then the backoff: at least the first delay each time, at most the cap (plus scheduling).
    for (const gap of [attempts[2]! - attempts[1]!, attempts[3]! - attempts[2]!]) {
      expect(gap).toBeGreaterThanOrEqual(95);
      expect(gap).toBeLessThan(1000);
    }
    expect(app.received[0]!.attempt).toBe(4);
  });

  test("an app that never answers: each attempt ends after the forward timeout, and the event becomes a dead letter saying so", async () => {
    const app = sink();
    const hung: number[] = [];
    app.answer = (r) => (r.headers["x-icr-event"] === "suspended" ? (hung.push(r.eventId), "hang") : { status: 200 });
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }], { timeoutMs: 200, maxAgeMs: 300, backoffMs: 50 }));
    const stuck = await post(server, inInstallation("inst-t", { event: "suspended" }));
    const after = await post(server, inInstallation("inst-t", { event: "unsuspended" }));
    await until(() => app.received.some((r) => r.eventId === after.id), 10_000, "the next event of the lane");
    expect(hung.length).toBeGreaterThanOrEqual(2);
    expect(hung.every((id) => id === stuck.id)).toBe(true);
    const dead = await (await server.query("/forward/dead")).json();
    expect(dead.deadLetters).toEqual([expect.objectContaining({ destination: "default", eventId: stuck.id, lastError: "no answer within 200 ms" })]);
  });

  test("past the maximum age an event is a dead letter, the lane moves on, and a replay of the dead letters delivers it", async () => {
    const app = sink();
    let down = true;
    app.answer = (r) => (down && r.headers["x-icr-event"] === "suspended" ? { status: 503 } : { status: 200 });
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }], { maxAgeMs: 300, backoffMs: 50 }));
    const stuck = await post(server, inInstallation("inst-d", { event: "suspended" }));
    const after = await post(server, inInstallation("inst-d", { event: "unsuspended" }));
    await until(() => app.received.some((r) => r.eventId === after.id), 10_000, "the next event of the lane");
    const status = await statusWhen(server, (d) => d[0]?.pending === 0 && d[0]?.deadLetters === 1);
    expect(status.destinations[0]).toMatchObject({ name: "default", deadLetters: 1, pending: 0 });
    const dead = await (await server.query("/forward/dead")).json();
    expect(dead.deadLetters).toEqual([expect.objectContaining({ destination: "default", eventId: stuck.id, event: "suspended", lastError: "HTTP 503" })]);
    down = false;
    const replay = await fetch(`${server.url}/forward/replay`, {
      method: "POST",
      headers: { authorization: `Bearer ${QUERY_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ dead: true }),
    });
    expect(await replay.json()).toEqual({ requested: 1 });
    await until(() => app.received.some((r) => r.eventId === stuck.id), 5000, "the replayed dead letter");
    // The same webhook-id as every earlier attempt.
    expect(app.received.find((r) => r.eventId === stuck.id)!.id).toBe(`msg_${sha256(stuck.payloadText)}`);
    const afterReplay = await statusWhen(server, (d) => d[0]?.delivered === 2);
    expect(afterReplay.destinations[0]).toMatchObject({ deadLetters: 0, delivered: 2 });
  });

  test("one log line per failed attempt (destination, event, attempt, status or error) and one per dead letter; never a body or a secret", async () => {
    const app = sink();
    let calls = 0;
    app.answer = () => (calls++ < 2 ? { status: 500 } : { status: 410 });
    const lines: Record<string, unknown>[] = [];
    const logger = Object.assign((level: string, msg: string, fields: Record<string, unknown> = {}) => void lines.push({ level, msg, ...fields }), { flush() {} });
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }], { backoffMs: 20 }), { logger });
    const posted = await post(server, inInstallation("inst-l", { secretish: "payload-marker-7d1c" }));
    await until(() => lines.some((l) => l.msg === "forward dead letter"), 5000, "the dead letter");
    const forwardLines = lines.filter((l) => String(l.msg).startsWith("forward"));
    expect(forwardLines).toEqual([
      { level: "warn", msg: "forward attempt failed", destination: "default", eventId: posted.id, attempt: 1, status: 500, error: "HTTP 500" },
      { level: "warn", msg: "forward attempt failed", destination: "default", eventId: posted.id, attempt: 2, status: 500, error: "HTTP 500" },
      { level: "error", msg: "forward dead letter", destination: "default", eventId: posted.id, attempt: 3, status: 410, error: "HTTP 410 Gone" },
    ]);
    const text = JSON.stringify(lines);
    expect(text).not.toContain("payload-marker-7d1c");
    expect(text).not.toContain(SECRET.slice(6));
  });

  test("410 Gone is a dead letter at once, without retries", async () => {
    const app = sink();
    let calls = 0;
    app.answer = () => (calls++ === 0 ? { status: 410 } : { status: 200 });
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }]));
    const gone = await post(server, inInstallation("inst-g"));
    const next = await post(server, inInstallation("inst-g", { n: 2 }));
    await until(() => app.received.some((r) => r.eventId === next.id), 5000, "the next event");
    expect(calls).toBe(2);
    const dead = await (await server.query("/forward/dead")).json();
    expect(dead.deadLetters.map((d: { eventId: number }) => d.eventId)).toEqual([gone.id]);
  });

  test("several destinations, each with its own progress and its own event filter", async () => {
    const app = sink();
    const billing = sink();
    let billingDown = true;
    billing.answer = () => (billingDown ? { status: 500 } : { status: 200 });
    const server = await receiverFor(
      forwarding([
        { name: "app", url: app.url, events: null },
        { name: "billing", url: billing.url, events: ["warehouseTransaction", "organizationTransaction"] },
      ]),
    );
    const kinds = ["installed", "warehouseTransaction", "organizationTransaction", "suspended"];
    for (let i = 0; i < 8; i++) await post(server, inInstallation(`inst-${i}`, { event: kinds[i % 4], n: i }));
    await until(() => app.received.length === 8, 10_000, "the app's 8");
    const status = await statusWhen(server, (d) => d.find((x) => x.name === "app")?.delivered === 8 && d.find((x) => x.name === "billing")?.pending === 4);
    expect(status.destinations.find((d) => d.name === "app")).toMatchObject({ delivered: 8, pending: 0 });
    expect(status.destinations.find((d) => d.name === "billing")).toMatchObject({ delivered: 0, pending: 4 });
    billingDown = false;
    await until(() => billing.received.length === 4, 10_000, "billing's 4");
    expect(billing.received.every((r) => r.event === "warehouseTransaction" || r.event === "organizationTransaction")).toBe(true);
  });

  test("secret rotation: every request carries a signature for each secret, so either verifies", async () => {
    const next = whsec();
    const onlyOld = sink([SECRET]);
    const onlyNew = sink([next]);
    const server = await receiverFor(
      forwarding(
        [
          { name: "old", url: onlyOld.url, events: null },
          { name: "new", url: onlyNew.url, events: null },
        ],
        { secrets: [SECRET, next] },
      ),
    );
    await post(server, inInstallation("inst-s"));
    await until(() => onlyOld.received.length === 1 && onlyNew.received.length === 1, 5000, "both");
    expect(onlyOld.received[0]!.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    expect(onlyOld.unverified + onlyNew.unverified).toBe(0);
  });

  test("an unparsed event is forwarded as its signedData, exactly as received, with the reason", async () => {
    const app = sink();
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }]));
    const signedData = Buffer.from("this is not json").toString("base64");
    const { sign } = await import("../src/verify/signature.ts");
    const response = await server.post(JSON.stringify({ signedData }), { "x-icr-signature-256": sign(FIXTURE_SECRET, signedData) });
    expect(response.status).toBe(202);
    await until(() => app.received.length === 1, 5000, "the unparsed event");
    expect(app.received[0]!.body).toBe(JSON.stringify({ signedData }));
    expect(app.received[0]!.headers["x-icr-unparsed-reason"]).toBe("not_json");
    expect(app.received[0]!.headers["x-icr-event"]).toBeUndefined();
  });

  test("the progress tables, read with sqlite3 while it runs", async () => {
    const app = sink();
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }]));
    for (let i = 0; i < 5; i++) await post(server, inInstallation("inst-q", { n: i }));
    await until(() => app.received.length === 5, 5000, "5 deliveries");
    await until(() => sqlite3(server.config.databasePath, "SELECT delivered FROM forward_destinations", ["-readonly"]) === "5", 5000, "the commit");
    expect(sqlite3(server.config.databasePath, "SELECT name, discovered_through = (SELECT max(id) FROM events) FROM forward_destinations", ["-readonly"])).toBe("default|1");
    // A lane that is done is gone: nothing waits.
    expect(sqlite3(server.config.databasePath, "SELECT count(*) FROM forward_lanes", ["-readonly"])).toBe("0");

    // check verifies the progress against the log, and catches progress past its end.
    const check = (path: string) => {
      const run = Bun.spawnSync([process.execPath, join(REPO, "src", "main.ts"), "check", "--json", "--db", path]);
      return JSON.parse(run.stdout.toString()).checks.find((c: { name: string }) => c.name === "forwarding");
    };
    expect(check(server.config.databasePath)).toMatchObject({ ok: true, data: { destinations: 1, lanes: 0, deadLetters: 0, replays: 0 } });
    const copy = join(tempDir(), "copy.db");
    sqlite3(server.config.databasePath, `VACUUM INTO '${copy}'`, ["-readonly"]);
    sqlite3(copy, "UPDATE forward_destinations SET discovered_through = discovered_through + 100; INSERT INTO forward_dead_letters VALUES ('default', 999999, 1, 'x', 0)");
    const broken = check(copy);
    expect(broken.ok).toBe(false);
    expect(broken.problems.join("\n")).toContain("past the log's last event");
    expect(broken.problems.join("\n")).toContain("1 dead letter or replay of events not in the log");
  });

  test("metrics: attempts by destination and outcome, delivered, lag, dead letters, the oldest undelivered event's age", async () => {
    const app = sink();
    let failures = 2;
    app.answer = () => (failures-- > 0 ? { status: 500 } : { status: 200 });
    const server = await receiverFor(forwarding([{ name: "default", url: app.url, events: null }]));
    await post(server, inInstallation("inst-m"));
    await until(() => app.received.length === 1, 5000, "the delivery");
    await statusWhen(server, (d) => d[0]?.pending === 0 && d[0]?.delivered === 1);
    const text = await (await server.query("/metrics")).text();
    expect(text).toContain('icr_receiver_forward_attempts_total{destination="default",outcome="failed"} 2');
    expect(text).toContain('icr_receiver_forward_attempts_total{destination="default",outcome="delivered"} 1');
    expect(text).toContain('icr_receiver_forward_delivered_total{destination="default"} 1');
    expect(text).toContain('icr_receiver_forward_lag_events{destination="default"} 0');
    expect(text).toContain('icr_receiver_forward_dead_letters{destination="default"} 0');
    expect(text).toContain('icr_receiver_forward_oldest_undelivered_age_seconds{destination="default"} 0');
    expect(text).toContain("icr_receiver_forward_request_duration_seconds_count 3");
    expect(text).toContain("icr_receiver_log_commit_failing 0");
    expect(text).toMatch(/icr_receiver_start_time_seconds \d+/);
  });
});

describe("two receivers on one log (an upgrade's hand-over)", () => {
  test("only the one holding the destination's lease forwards; the other takes over once it stops", async () => {
    const app = sink();
    const config = testConfig(tempDir("icr-forward-lease-"), { forwarding: forwarding([{ name: "default", url: app.url, events: null }]) });
    const first = await startApp(config);
    let firstRunning = true;
    cleanups.push(() => firstRunning && first.close());
    const second = await startApp(config);
    cleanups.push(() => second.close());
    const url = (r: { port: number }) => ({ url: `http://127.0.0.1:${r.port}` });
    const ids: number[] = [];
    for (let i = 0; i < 10; i++) {
      const d = signedDelivery(inInstallation(`inst-${i % 3}`, { n: i }));
      const response = await fetch(`${url(i % 2 ? second : first).url}/webhook`, { method: "POST", headers: d.headers, body: d.body });
      ids.push((await response.json()).id);
    }
    await until(() => app.received.length >= 10, 5000, "the ten");
    await Bun.sleep(300);
    // Taken by either receiver, each sent once: one of them forwards.
    expect(app.received.map((r) => r.eventId).sort((a, b) => a - b)).toEqual(ids);
    await first.close();
    firstRunning = false;
    for (let i = 0; i < 5; i++) {
      const d = signedDelivery(inInstallation("inst-after", { n: i }));
      ids.push((await (await fetch(`${url(second).url}/webhook`, { method: "POST", headers: d.headers, body: d.body })).json()).id);
    }
    await until(() => app.received.length >= 15, 5000, "the five after the hand-over");
    await Bun.sleep(300);
    expect(app.received.map((r) => r.eventId).sort((a, b) => a - b)).toEqual(ids);
  }, 30_000);
});

describe("forwarding in a receiver process", () => {
  test("SIGKILL mid-forwarding: after a restart every event is delivered, the repeats no more than were in flight", async () => {
    const app = sink();
    // A slow app, so that the kill lands with requests in flight.
    app.answer = () => ({ status: 200 });
    const dataDir = tempDir("icr-forward-kill-");
    const env = {
      ICR_RECEIVER_DATA_DIR: dataDir,
      ICR_RECEIVER_SECRET: FIXTURE_SECRET,
      ICR_RECEIVER_QUERY_TOKEN: QUERY_TOKEN,
      ICR_RECEIVER_FORWARD_URL: app.url,
      ICR_RECEIVER_FORWARD_SECRET: SECRET,
      ICR_RECEIVER_FORWARD_BACKOFF: "50ms",
      ICR_RECEIVER_FORWARD_CONCURRENCY: "4",
    };
    const start = () => spawnReceiver(["bun", join(REPO, "src", "main.ts")], { env });
    let receiver = await start();
    cleanups.push(() => receiver.proc.kill("SIGKILL"));
    // Once the destination exists, it takes every event from then on.
    await until(() => sqlite3(join(dataDir, "icr-receiver.db"), "SELECT count(*) FROM forward_destinations", ["-readonly"]) === "1", 5000, "the destination");
    app.answer = () => ({ status: 200, delayMs: 30 });
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) {
      const d = signedDelivery(inInstallation(`inst-${i % 7}`, { n: i }));
      const response = await fetch(`${receiver.url}/webhook`, { method: "POST", headers: d.headers, body: d.body });
      expect(response.status).toBe(202);
      ids.push(`msg_${sha256(d.payloadText)}`);
    }
    await until(() => app.received.length >= 40, 10_000, "some deliveries");
    receiver.proc.kill("SIGKILL");
    await receiver.proc.exited;
    const beforeRestart = app.received.length;
    receiver = await start();
    await until(() => new Set(app.received.map((r) => r.id)).size === 200, 30_000, "all 200");
    const repeats = app.received.length - 200;
    // Only what was in flight, or acknowledged in the turn before its commit, is sent twice.
    expect(repeats).toBeLessThanOrEqual(2 * 4);
    expect(beforeRestart).toBeLessThan(200);
    expect(new Set(app.received.map((r) => r.id))).toEqual(new Set(ids));
    expect(await receiver.stop()).toBe(0);
  }, 60_000);

  test("the CLI: forward status, dead and replay, against a running receiver and a stopped one", async () => {
    const app = sink();
    const dataDir = tempDir("icr-forward-cli-");
    const forwardsFile = join(dataDir, "forwards");
    writeFileSync(forwardsFile, `# two destinations\napp=${app.url}\nbilling=${app.url}?billing events=warehouseTransaction\n`);
    const env = {
      PATH: process.env.PATH!,
      ICR_RECEIVER_DATA_DIR: dataDir,
      ICR_RECEIVER_SECRET: FIXTURE_SECRET,
      ICR_RECEIVER_QUERY_TOKEN: QUERY_TOKEN,
      ICR_RECEIVER_FORWARDS_FILE: forwardsFile,
      ICR_RECEIVER_FORWARD_SECRET: SECRET,
    };
    const cli = (...args: string[]) => {
      const result = Bun.spawnSync([process.execPath, join(REPO, "src", "main.ts"), "forward", ...args], { env, stdout: "pipe", stderr: "pipe" });
      return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
    };
    const receiver = await spawnReceiver(["bun", join(REPO, "src", "main.ts")], { env });
    cleanups.push(() => receiver.proc.kill("SIGKILL"));
    await until(() => sqlite3(join(dataDir, "icr-receiver.db"), "SELECT count(*) FROM forward_destinations", ["-readonly"]) === "2", 5000, "the destinations");
    const d = signedDelivery(inInstallation("inst-c", { event: "warehouseTransaction" }));
    const { id } = await (await fetch(`${receiver.url}/webhook`, { method: "POST", headers: d.headers, body: d.body })).json();
    await until(() => app.received.length === 2, 5000, "both destinations");
    await until(() => JSON.parse(cli("status", "--json").stdout).destinations.every((s: { delivered: number }) => s.delivered === 1), 5000, "the commit");
    const status = JSON.parse(cli("status", "--json").stdout);
    expect(status.destinations.map((s: { name: string; pending: number }) => [s.name, s.pending])).toEqual([["app", 0], ["billing", 0]]);
    expect(cli("status").stdout).toContain("delivered 1, pending 0, retrying 0, dead letters 0");
    expect(JSON.parse(cli("dead", "--json").stdout)).toEqual({ deadLetters: [] });
    // A replay against the running receiver: picked up within a second or two.
    expect(cli("replay", "--id", String(id), "--destination", "app")).toMatchObject({ code: 0, stdout: "replay: 1 send asked for\n" });
    await until(() => app.received.length === 3, 5000, "the replay");
    expect(app.received[2]!.id).toBe(app.received[0]!.id);
    // Against a stopped one: sent when it starts again.
    expect(await receiver.stop()).toBe(0);
    expect(cli("replay", "--since", "1h").stdout).toBe("replay: 2 sends asked for\n");
    const again = await spawnReceiver(["bun", join(REPO, "src", "main.ts")], { env });
    cleanups.push(() => again.proc.kill("SIGKILL"));
    await until(() => app.received.length === 5, 5000, "the replays after the restart");
    // Usage errors: exit 2, one line.
    for (const args of [["replay"], ["replay", "--id", "1", "--dead"], ["replay", "--dead", "--destination", "nobody"], ["bogus"]]) {
      const result = cli(...args);
      expect({ args, code: result.code }).toEqual({ args, code: 2 });
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(await again.stop()).toBe(0);
  }, 60_000);
});
