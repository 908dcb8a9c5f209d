// Metrics and logs of a real receiver process: what an operator scrapes and reads in the journal.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { FIXTURE_SECRET, fixture, loadFixtures } from "./support/fixtures.ts";
import { REPO, spawnReceiver, type ReceiverProcess } from "./support/process.ts";
import { DIGESTS_QUIET_MS } from "../src/log/event-digests.ts";
import { KEYS_DELAY_MS } from "../src/log/event-keys.ts";
import { signedDelivery, startServer, tempDir } from "./support/server.ts";
import { sqlite3 } from "./support/sqlite-shell.ts";

const TOKEN = "observability-test-token-5f0c";
const fixtures = loadFixtures();
let receiver: ReceiverProcess;
let dataDir: string;

/** Parses Prometheus text exposition into `name{labels}` → value. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

beforeAll(async () => {
  dataDir = tempDir("icr-observe-");
  receiver = await spawnReceiver(["bun", join(REPO, "src", "main.ts")], {
    env: { ICR_RECEIVER_DATA_DIR: dataDir, ICR_RECEIVER_SECRET: FIXTURE_SECRET, ICR_RECEIVER_QUERY_TOKEN: TOKEN, JOURNAL_STREAM: "8:1234" },
  });
  for (const f of fixtures) {
    await fetch(`${receiver.url}/webhook`, { method: "POST", headers: f.headers, body: f.body });
  }
  const installed = fixture("installed");
  await fetch(`${receiver.url}/webhook`, { method: "POST", headers: installed.headers, body: installed.body });
  await fetch(`${receiver.url}/events?limit=1&event=installed`, { headers: { authorization: `Bearer ${TOKEN}` } });
  await fetch(`${receiver.url}/events?access_token=${TOKEN}`);
}, 30_000);

afterAll(async () => {
  await receiver.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("GET /metrics", () => {
  test("needs the token", async () => {
    expect((await fetch(`${receiver.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${receiver.url}/metrics`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
  });

  test("counts every delivery by outcome, with latency, commits and the log's size", async () => {
    const response = await fetch(`${receiver.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/plain");
    const text = await response.text();
    const m = parseMetrics(text);
    const stored = fixtures.filter((f) => f.expect.status === 202).length;
    expect(m.get('icr_receiver_deliveries_accepted_total{secret_label="default"}')).toBe(stored + 1);
    // Some fixtures carry the same signed payload (installed, uppercase-hex), plus the repeat sent above.
    const distinct = new Set(
      fixtures.filter((f) => f.expect.status === 202).map((f) => Buffer.from(JSON.parse(f.body.replace(/^\uFEFF/, "")).signedData, "base64").toString("hex")),
    );
    expect(m.get("icr_receiver_deliveries_duplicate_total")).toBe(stored + 1 - distinct.size);
    const log = new Database(join(dataDir, "icr-receiver.db"), { readonly: true });
    const flagged = log.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries WHERE envelope_mismatch = 1").get()!.n;
    log.close();
    // tampered-top-level, and the unparsed fixtures whose unsigned `event` the signed data does not back.
    expect(flagged).toBeGreaterThanOrEqual(2);
    expect(m.get("icr_receiver_envelope_mismatch_total")).toBe(flagged);
    const unparsed = [...m].filter(([key]) => key.startsWith("icr_receiver_deliveries_unparsed_total{reason=")).reduce((sum, [, n]) => sum + n, 0);
    expect(unparsed).toBe(fixtures.filter((f) => f.expect.stored && f.expect.parsed === false).length);
    expect(m.get('icr_receiver_deliveries_unparsed_total{reason="not_json"}')).toBeGreaterThan(0);
    const byStatus = (status: number) => fixtures.filter((f) => f.expect.status === status).length;
    let rejected403 = 0;
    let rejected400 = 0;
    for (const [key, value] of m) {
      if (key.startsWith("icr_receiver_deliveries_rejected_total") && key.includes('status="403"')) rejected403 += value;
      if (key.startsWith("icr_receiver_deliveries_rejected_total") && key.includes('status="400"')) rejected400 += value;
    }
    expect(rejected403).toBe(byStatus(403));
    expect(rejected400).toBe(byStatus(400));
    expect(m.get('icr_receiver_deliveries_rejected_total{reason="invalid_signature",status="403"}')).toBeGreaterThan(0);
    expect(m.get("icr_receiver_delivery_duration_seconds_count")).toBe(fixtures.length + 1);
    expect(m.get('icr_receiver_delivery_duration_seconds_bucket{le="+Inf"}')).toBe(fixtures.length + 1);
    expect(m.get("icr_receiver_commit_batch_size_sum")).toBeGreaterThanOrEqual(stored + 1);
    expect(m.get("icr_receiver_commit_duration_seconds_count")).toBeGreaterThan(0);
    expect(m.get("icr_receiver_database_size_bytes")).toBeGreaterThan(0);
    expect(m.get("icr_receiver_last_accepted_delivery_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 60);
    expect(text).not.toContain(FIXTURE_SECRET);
    expect(text).not.toContain(TOKEN);
  });
});

describe("the copies behind the log, in /metrics", () => {
  test("a copy that keeps failing leaves its events behind, counted; once it succeeds the count falls to 0", async () => {
    const server = await startServer();
    const behind = async () => {
      const m = parseMetrics(await (await server.query("/metrics")).text());
      return [m.get("icr_receiver_event_keys_behind_events"), m.get("icr_receiver_event_digests_behind_events")];
    };
    expect(await behind()).toEqual([0, 0]);
    // Stand-ins for what would make a copy fail (a corrupt index, a full disk): deliveries still commit.
    const copiesFail = ["event_keys", "event_digests"].map((table) => `CREATE TRIGGER ${table}_fails BEFORE INSERT ON ${table} BEGIN SELECT RAISE(ABORT, 'stand-in'); END;`);
    sqlite3(server.config.databasePath, copiesFail.join(" "));
    for (let n = 0; n < 5; n++) {
      const { body, headers } = signedDelivery({ event: "installed", installation: { id: `inst-behind-${n}` } });
      expect((await server.post(body, headers)).status).toBe(202);
    }
    // Long past the time each copy would have run, and retried after failing.
    await Bun.sleep(3 * Math.max(DIGESTS_QUIET_MS, KEYS_DELAY_MS));
    expect(await behind()).toEqual([5, 5]);
    sqlite3(server.config.databasePath, "DROP TRIGGER event_keys_fails; DROP TRIGGER event_digests_fails;");
    const deadline = Date.now() + 10 * DIGESTS_QUIET_MS;
    while (Date.now() < deadline && (await behind()).some((n) => n !== 0)) await Bun.sleep(100);
    expect(await behind()).toEqual([0, 0]);
    await server.stop();
  }, 30_000);
});

describe("logs", () => {
  test("one JSON line per delivery with journald priorities; no secret, token or body anywhere", async () => {
    await Bun.sleep(50);
    const lines = receiver.lines;
    const entries = lines.map((line) => {
      const match = /^<([346])>(\{.*\})$/.exec(line);
      expect(match).not.toBeNull();
      return { priority: Number(match![1]), ...JSON.parse(match![2]!) };
    });
    const deliveries = entries.filter((e) => e.msg === "delivery");
    expect(deliveries.length).toBe(fixtures.length + 1);
    const accepted = deliveries.filter((e) => e.status === 202);
    expect(accepted.filter((e) => !e.unparsedReason).every((e) => e.priority === 6 && typeof e.id === "number" && typeof e.event === "string")).toBe(true);
    // Authentic but unreadable: stored, and a warning that names the reason (never the body).
    const unparsed = accepted.filter((e) => e.unparsedReason);
    expect(unparsed.length).toBe(fixtures.filter((f) => f.expect.stored && f.expect.parsed === false).length);
    expect(unparsed.every((e) => e.priority === 4 && typeof e.id === "number" && e.event === undefined)).toBe(true);
    expect(deliveries.filter((e) => e.status === 403).every((e) => e.priority === 4 && e.reason)).toBe(true);
    expect(entries.some((e) => e.msg === "request" && e.path === "/events" && e.status === 200)).toBe(true);
    expect(entries.some((e) => e.msg === "request" && e.path === "/events" && e.status === 401)).toBe(true);
    const all = lines.join("\n");
    expect(all).not.toContain(FIXTURE_SECRET);
    expect(all).not.toContain(TOKEN);
    for (const f of fixtures) {
      const signedData = /"signedData":"([^"]{16})/.exec(f.body)?.[1];
      if (signedData) expect(all).not.toContain(signedData);
    }
  });
});
