// The operator's CLI, run for real (`bun src/main.ts <command>` as a child process) against the
// database a real receiver process writes while it keeps running.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commands } from "../src/cli/index.ts";
import { SAMPLE_EVENTS } from "../src/cli/samples.ts";
import { FIXTURE_SECRET, fixture, loadFixtures } from "./support/fixtures.ts";
import { REPO, spawnReceiver, type ReceiverProcess } from "./support/process.ts";
import { tempDir } from "./support/server.ts";

const QUERY_TOKEN = "cli-test-query-token-5b0d3f";
const WRONG_SECRET = "cli-test-wrong-secret-91c2e7";
/** Every value that must never appear in any output. */
const SECRETS = [FIXTURE_SECRET, QUERY_TOKEN, WRONG_SECRET];
const T = { timeout: 60_000 };

let dir: string;
let database: string;
let server: ReceiverProcess;
let webhookUrl: string;
/** Every CLI output (stdout and stderr) of this file, for the no-secret check. */
const outputs: string[] = [];
const running = new Set<Bun.Subprocess>();

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** A CLI environment: nothing inherited but PATH, the test's data directory unless overridden. */
function cliEnv(env: Record<string, string | undefined> = {}): Record<string, string> {
  const merged: Record<string, string | undefined> = { PATH: process.env.PATH, ICR_RECEIVER_DATA_DIR: dir, ...env };
  return Object.fromEntries(Object.entries(merged).filter((e): e is [string, string] => e[1] !== undefined));
}

function spawnCli(args: string[], env: Record<string, string | undefined> = {}) {
  const proc = Bun.spawn([process.execPath, join(REPO, "src", "main.ts"), ...args], {
    cwd: dir,
    env: cliEnv(env),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  running.add(proc);
  void proc.exited.then(() => running.delete(proc));
  return proc;
}

async function cli(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 45_000): Promise<Result> {
  const proc = spawnCli(args, env);
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  outputs.push(stdout, stderr);
  return { code, stdout, stderr };
}

/** Signs with the receiver's secret (from the environment, as an operator would). */
const withSecret = { ICR_RECEIVER_SECRET: FIXTURE_SECRET };

async function send(...args: string[]): Promise<{ id: number; duplicate: boolean }> {
  const result = await cli(["send", "--url", webhookUrl, ...args], withSecret);
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  const match = /^202 \S+ (\{.*\})$/m.exec(result.stdout);
  expect(match).not.toBeNull();
  return JSON.parse(match![1]!);
}

const ndjson = (text: string) =>
  text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line));

/** The truth, read independently of the CLI. */
function oracle<T>(sql: string): T[] {
  const db = new Database(database, { readonly: true });
  try {
    return db.query(sql).all() as T[];
  } finally {
    db.close();
  }
}
const eventIds = () => oracle<{ id: number }>("SELECT id FROM events ORDER BY id").map((r) => r.id);
const countOf = (sql: string) => oracle<{ n: number }>(sql)[0]!.n;

/** Reads a child's stdout line by line while it runs. */
function lineReader(stream: ReadableStream<Uint8Array>) {
  const lines: string[] = [];
  let notify = () => {};
  void (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        lines.push(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        notify();
      }
    }
    notify();
  })();
  return {
    lines,
    async waitFor(predicate: (line: string) => boolean, timeoutMs = 20_000): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = lines.find(predicate);
        if (found !== undefined) return found;
        if (Date.now() > deadline) throw new Error(`no such line within ${timeoutMs} ms; got:\n${lines.join("\n")}`);
        await new Promise<void>((resolve) => {
          notify = resolve;
          setTimeout(resolve, 200);
        });
      }
    },
  };
}

async function exitWithin(proc: Bun.Subprocess, ms: number): Promise<number | "timeout"> {
  return Promise.race([proc.exited, Bun.sleep(ms).then(() => "timeout" as const)]);
}

beforeAll(async () => {
  dir = tempDir("icr-cli-");
  database = join(dir, "icr-receiver.db");
  server = await spawnReceiver([process.execPath, join(REPO, "src", "main.ts")], {
    cwd: dir,
    env: { ICR_RECEIVER_DATA_DIR: dir, ICR_RECEIVER_SECRET: FIXTURE_SECRET, ICR_RECEIVER_QUERY_TOKEN: QUERY_TOKEN },
    timeoutMs: 30_000,
  });
  webhookUrl = `${server.url}/webhook`;
}, 40_000);

afterAll(async () => {
  for (const proc of running) proc.kill("SIGKILL");
  if (server) {
    server.proc.kill("SIGTERM");
    if ((await exitWithin(server.proc, 15_000)) === "timeout") server.proc.kill("SIGKILL");
    await server.proc.exited;
  }
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("help and usage", () => {
  test("the top-level --help lists every command", async () => {
    const { code, stdout } = await cli(["--help"]);
    expect(code).toBe(0);
    for (const name of Object.keys(commands)) expect(stdout).toContain(`  ${name} `);
  }, T);

  test("every command's --help exits 0 and documents the exit codes", async () => {
    for (const name of Object.keys(commands)) {
      const { code, stdout, stderr } = await cli([name, "--help"]);
      expect({ name, code, stderr }).toEqual({ name, code: 0, stderr: "" });
      expect(stdout).toContain(`Usage: icr-receiver ${name}`);
      expect(stdout).toMatch(/Exit status:[\s\S]*\b2 +usage error[\s\S]*\b78 +configuration error/);
    }
  }, T);

  test("usage errors exit 2 with one line on stderr", async () => {
    for (const args of [
      ["events", "--bogus"],
      ["events", "--limit", "0"],
      ["events", "--order", "sideways"],
      ["events", "--since", "yesterday"],
      ["tail", "extra"],
      ["backup"],
      ["verify", "--body", "x.json"],
      ["send"],
      ["send", "--event", "noSuchEvent"],
      ["send", "--event", "installed", "--url", "ftp://example.com/"],
      ["nonsense"],
    ]) {
      const { code, stderr } = await cli(args);
      expect({ args, code }).toEqual({ args, code: 2 });
      expect(stderr.trim().split("\n")).toHaveLength(1);
      expect(stderr).not.toContain("    at "); // no stack trace
    }
  }, T);

  test("a secret given on the command line is refused without being echoed", async () => {
    for (const args of [
      ["verify", "--body", "b.json", "--signature", "sha256=00", "--secret", WRONG_SECRET],
      ["send", "--event", "installed", `--secret=${WRONG_SECRET}`],
      ["verify", "--body", "b.json", "--signature", "sha256=00", WRONG_SECRET],
    ]) {
      const { code, stdout, stderr } = await cli(args);
      expect(code).toBe(2);
      expect(stdout + stderr).not.toContain(WRONG_SECRET);
    }
  }, T);
});

describe("against the live receiver", () => {
  test("send posts a signed sample of every event name", async () => {
    const ids = new Set<number>();
    for (const event of SAMPLE_EVENTS) {
      const { id, duplicate } = await send("--event", event);
      expect(duplicate).toBe(false);
      ids.add(id);
    }
    expect(ids.size).toBe(SAMPLE_EVENTS.length);
    const stored = oracle<{ event: string }>("SELECT event FROM events ORDER BY id").map((r) => r.event);
    expect(stored).toEqual([...SAMPLE_EVENTS]);
  }, T);

  test("the same sample sent twice is two events; --repeat resends one delivery", async () => {
    const first = await send("--event", "installed", "--installation", "inst-repeat");
    const second = await send("--event", "installed", "--installation", "inst-repeat");
    expect(second.id).not.toBe(first.id);

    const result = await cli(["send", "--url", webhookUrl, "--event", "suspended", "--repeat", "3"], withSecret);
    expect(result.code).toBe(0);
    const answers = result.stdout.trim().split("\n").map((line) => JSON.parse(line.replace(/^202 \S+ /, "")));
    expect(answers.map((a) => a.duplicate)).toEqual([false, true, true]);
    expect(new Set(answers.map((a) => a.id)).size).toBe(1);
  }, T);

  test("send --payload signs a payload file; a non-2xx answer or no server exits 1", async () => {
    const payload = join(dir, "payload.json");
    writeFileSync(payload, JSON.stringify({ event: "installed", installation: { id: "inst-file", organization: { id: "org-file" } } }, null, 2));
    const { id } = await send("--payload", payload);
    expect(oracle<{ installation_id: string }>(`SELECT installation_id FROM events WHERE id = ${id}`)).toEqual([
      { installation_id: "inst-file" },
    ]);

    const rejected = await cli(["send", "--url", webhookUrl, "--event", "installed"], { ICR_RECEIVER_SECRET: WRONG_SECRET });
    expect(rejected.code).toBe(1);
    expect(rejected.stdout).toMatch(/^403 /);

    const unreachable = await cli(["send", "--url", "http://127.0.0.1:9/webhook", "--event", "installed"], withSecret);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^icr-receiver send: POST http:\/\/127\.0\.0\.1:9\/webhook: /);
  }, T);

  test("every fixture, posted as ICR would, lands in the same log", async () => {
    for (const f of loadFixtures()) {
      const response = await fetch(webhookUrl, { method: "POST", headers: f.headers, body: f.body });
      expect({ fixture: f.name, status: response.status }).toEqual({ fixture: f.name, status: f.expect.status });
    }
  }, T);

  test("events: the same filters and pagination as GET /events, table or NDJSON", async () => {
    const all = eventIds();
    const listed = await cli(["events", "--ndjson", "--limit", "1000"]);
    expect(listed.code).toBe(0);
    expect(ndjson(listed.stdout).map((e) => e.id)).toEqual([...all].reverse());

    const installed = await cli(["events", "--ndjson", "--event", "installed"]);
    expect(ndjson(installed.stdout).map((e) => e.id)).toEqual(
      oracle<{ id: number }>("SELECT id FROM events WHERE event = 'installed' ORDER BY id DESC").map((r) => r.id),
    );
    const byInstallation = await cli(["events", "--ndjson", "--installation", "inst-repeat"]);
    expect(ndjson(byInstallation.stdout)).toHaveLength(2);
    const byOrganization = await cli(["events", "--ndjson", "--organization", "org-file"]);
    expect(ndjson(byOrganization.stdout).map((e) => e.installationId)).toEqual(["inst-file"]);

    // Keyset pagination: follow the cursor printed on stderr.
    const paged: number[] = [];
    for (let after: string | undefined; ; ) {
      const page = await cli(["events", "--ndjson", "--order", "asc", "--limit", "4", ...(after ? ["--after", after] : [])]);
      expect(page.code).toBe(0);
      paged.push(...ndjson(page.stdout).map((e) => e.id));
      after = /^more: --after (\d+)$/m.exec(page.stderr)?.[1];
      if (after === undefined) break;
    }
    expect(paged).toEqual(all);

    const future = await cli(["events", "--ndjson", "--since", "2999-01-01"]);
    expect(future).toMatchObject({ code: 0, stdout: "" });
    const recent = await cli(["events", "--ndjson", "--since", "1h", "--until", "2999-01-01T00:00:00Z", "--limit", "1000"]);
    expect(ndjson(recent.stdout)).toHaveLength(all.length);

    const table = await cli(["events", "--limit", "1000"]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+RECEIVED\s+EVENT\s+INSTALLATION\s+ORGANIZATION\s+TRANSACTION\s+DELIVERIES\s+SECRET/);
    expect(lines).toHaveLength(all.length + 1);
    expect(table.stdout).toContain("warehouseTransaction");
    expect(table.stdout).toContain("unsigned copy differs"); // the tampered-top-level fixture
    expect(table.stdout).toContain("(unparsed: not_json)"); // the signed-data-not-json fixture

    // Unparsed events, as GET /events?parsed=false: exactly the rows without an event name.
    const unparsed = await cli(["events", "--ndjson", "--unparsed", "--limit", "1000"]);
    expect(unparsed.code).toBe(0);
    const withoutName = oracle<{ id: number }>("SELECT id FROM events WHERE event IS NULL ORDER BY id DESC").map((r) => r.id);
    expect(withoutName.length).toBeGreaterThan(0);
    expect(ndjson(unparsed.stdout).map((e) => e.id)).toEqual(withoutName);
    expect(ndjson(unparsed.stdout).every((e) => e.parsed === false && e.event === null && typeof e.unparsedReason === "string")).toBe(true);
    const parsed = await cli(["events", "--ndjson", "--parsed", "--limit", "1000"]);
    expect(ndjson(parsed.stdout)).toHaveLength(all.length - withoutName.length);
    const both = await cli(["events", "--parsed", "--unparsed"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("--parsed and --unparsed exclude each other");
  }, T);

  test("tail prints the latest N oldest first", async () => {
    const all = eventIds();
    const tail = await cli(["tail", "-n", "3", "--ndjson"]);
    expect(tail.code).toBe(0);
    expect(ndjson(tail.stdout).map((e) => e.id)).toEqual(all.slice(-3));
    const filtered = await cli(["tail", "--ndjson", "--event", "installed", "--lines", "1000"]);
    expect(ndjson(filtered.stdout).every((e) => e.event === "installed")).toBe(true);
    const unparsed = await cli(["tail", "--ndjson", "--unparsed", "--lines", "1000"]);
    expect(ndjson(unparsed.stdout).length).toBeGreaterThan(0);
    expect(ndjson(unparsed.stdout).every((e) => e.parsed === false)).toBe(true);
  }, T);

  test("tail -f prints a delivery posted after it started, and stops cleanly on SIGTERM", async () => {
    const newest = eventIds().at(-1)!;
    const proc = spawnCli(["tail", "-f", "-n", "1", "--ndjson", "--interval", "100"]);
    const stdout = lineReader(proc.stdout);
    await stdout.waitFor((line) => JSON.parse(line).id === newest);
    const { id } = await send("--event", "organizationTransaction", "--installation", "inst-follow");
    const line = await stdout.waitFor((l) => JSON.parse(l).id === id);
    expect(JSON.parse(line)).toMatchObject({ event: "organizationTransaction", installationId: "inst-follow" });
    proc.kill("SIGTERM");
    expect(await exitWithin(proc, 10_000)).toBe(0);
    outputs.push(stdout.lines.join("\n"), await new Response(proc.stderr).text());
    expect(stdout.lines.map((l) => JSON.parse(l).id)).toEqual([newest, id]);
  }, T);

  test("tail -f as a table, filtered, stops cleanly on SIGINT", async () => {
    const proc = spawnCli(["tail", "-f", "-n", "0", "--installation", "inst-table", "--interval", "100"]);
    const stdout = lineReader(proc.stdout);
    await stdout.waitFor((line) => line.startsWith("ID "));
    await send("--event", "unsuspended"); // another installation: not shown
    const { id } = await send("--event", "uninstalled", "--installation", "inst-table");
    await stdout.waitFor((line) => line.startsWith(`${id} `));
    proc.kill("SIGINT");
    expect(await exitWithin(proc, 10_000)).toBe(0);
    outputs.push(stdout.lines.join("\n"), await new Response(proc.stderr).text());
    expect(stdout.lines).toHaveLength(2);
    expect(stdout.lines[1]).toContain("inst-table");
  }, T);

  test("export streams every event, with --deliveries their raw deliveries, to stdout or a file", async () => {
    const all = eventIds();
    const plain = await cli(["export", "--page-size", "3"]);
    expect(plain.code).toBe(0);
    const exported = ndjson(plain.stdout);
    expect(exported.map((e) => e.id)).toEqual(all);
    expect(exported.every((e) => e.deliveries === undefined && typeof e.payload === "object")).toBe(true);
    // Unparsed events are exported with the rest, their payload null and their text beside it.
    expect(exported.filter((e) => e.parsed === false).every((e) => e.payload === null && "payloadText" in e)).toBe(true);
    expect(exported.some((e) => e.parsed === false)).toBe(true);
    expect(plain.stderr).toMatch(new RegExp(`^export: ${all.length} events, [\\d.]+ (B|KiB|MiB) in [\\d.]+ s to stdout\\n$`));

    const file = join(dir, "export.ndjson");
    const withDeliveries = await cli(["export", "--deliveries", "--page-size", "5", "--output", file]);
    expect(withDeliveries.code).toBe(0);
    expect(withDeliveries.stdout).toBe("");
    const deliveries = countOf("SELECT count(*) AS n FROM deliveries");
    expect(withDeliveries.stderr).toContain(`export: ${all.length} events, ${deliveries} deliveries, `);
    const records = ndjson(readFileSync(file, "utf8"));
    expect(records.map((e) => e.id)).toEqual(all);
    expect(records.reduce((sum, e) => sum + e.deliveries.length, 0)).toBe(deliveries);
    for (const record of records) expect(record.deliveries).toHaveLength(record.deliveryCount);
    // The same delivery shape as GET /events/:id: no internal columns such as the chain hash.
    const shape = ["duplicate", "envelopeMismatch", "headers", "id", "rawBody", "receivedAt", "remoteAddress", "secretLabel"];
    for (const record of records) for (const d of record.deliveries) expect(Object.keys(d).sort()).toEqual(shape);
    // Raw bodies are exactly as received: a fixture's body is in there byte for byte.
    const installed = fixture("installed");
    expect(records.some((e) => e.deliveries.some((d: { rawBody: string }) => d.rawBody === installed.body))).toBe(true);

    const again = await cli(["export", "--output", file]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("--force");
    const forced = await cli(["export", "--output", file, "--force", "--event", "installed", "--quiet"]);
    expect(forced).toMatchObject({ code: 0, stderr: "" });
    expect(ndjson(readFileSync(file, "utf8")).every((e) => e.event === "installed")).toBe(true);

    const none = await cli(["export", "--since", "2999-01-01"]);
    expect(none.code).toBe(0);
    expect(none.stdout).toBe("");
    expect(none.stderr).toStartWith("export: 0 events, ");
  }, T);

  test("backup takes a consistent snapshot while deliveries keep arriving", async () => {
    const before = eventIds().length;
    const file = join(dir, "snapshot.db");
    const [backup] = await Promise.all([
      cli(["backup", file]),
      send("--event", "installed", "--installation", "inst-during-backup"),
      send("--event", "suspended", "--installation", "inst-during-backup"),
    ]);
    expect(backup.code).toBe(0);
    expect(backup.stdout).toMatch(/^backup: .*snapshot\.db, [\d.]+ (B|KiB|MiB), \d+ events, \d+ deliveries in [\d.]+ s\n$/);

    const snapshot = new Database(file, { readonly: true });
    try {
      expect(snapshot.query("PRAGMA integrity_check").all()).toEqual([{ integrity_check: "ok" }]);
      const events = (snapshot.query("SELECT count(*) AS n FROM events").get() as { n: number }).n;
      expect(events).toBeGreaterThanOrEqual(before);
      expect(events).toBeLessThanOrEqual(before + 2);
      expect(backup.stdout).toContain(`, ${events} events, `);
    } finally {
      snapshot.close();
    }
    expect((await cli(["check", "--db", file])).code).toBe(0);

    const refused = await cli(["backup", file]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("exists");
    expect((await cli(["backup", "--force", file])).code).toBe(0);
    expect(readFileSync(file).subarray(0, 15).toString()).toBe("SQLite format 3");
  }, T);

  test("check passes on the live log, with counts that match it", async () => {
    const text = await cli(["check"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("all checks passed");
    const json = await cli(["check", "--json"]);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report.ok).toBe(true);
    expect(report.checks.map((c: { name: string }) => c.name)).toEqual(
      expect.arrayContaining(["integrity", "append-only", "hash-chain", "migrations", "counts"]),
    );
    const counts = report.checks.find((c: { name: string }) => c.name === "counts").data;
    const deliveries = countOf("SELECT count(*) AS n FROM deliveries");
    // The receiver is idle now, so the snapshot check read equals this one.
    expect(counts).toEqual({
      events: countOf("SELECT count(*) AS n FROM events"),
      unparsed: countOf("SELECT count(*) AS n FROM events WHERE event IS NULL"),
      deliveries,
      duplicates: countOf("SELECT count(*) AS n FROM deliveries WHERE duplicate = 1"),
    });
    expect(report.checks.find((c: { name: string }) => c.name === "digests").data.repeatedPayloads).toBe(0);
    expect(counts.duplicates).toBeGreaterThanOrEqual(2); // --repeat 3, and the fixtures' repeats
    expect(counts.unparsed).toBeGreaterThan(0); // the fixtures whose signed data is not an event
  }, T);

  test("check fails when one payload is stored as two events", async () => {
    // Only the writer keeps payloads distinct (no unique index): an insert from sqlite3 can break it.
    const copy = join(dir, "doubled.db");
    expect((await cli(["backup", copy])).code).toBe(0);
    const insert = Bun.spawnSync(
      [
        "/usr/bin/sqlite3",
        copy,
        "INSERT INTO events (id, received_at, event, payload, payload_sha256, secret_label, envelope_mismatch, chain_hash) " +
          "SELECT (SELECT max(id) + 1 FROM events), received_at, event, payload, payload_sha256, secret_label, envelope_mismatch, chain_hash FROM events WHERE id = 1;",
      ],
      { stderr: "pipe" },
    );
    expect(insert.exitCode).toBe(0);
    const json = await cli(["check", "--db", copy, "--json"]);
    expect(json.code).toBe(1);
    const digests = JSON.parse(json.stdout).checks.find((c: { name: string }) => c.name === "digests");
    expect(digests.ok).toBe(false);
    expect(digests.data.repeatedPayloads).toBe(1);
    expect(digests.problems).toContain("1 payload stored as more than one event");
  }, T);

  test("check fails when an append-only trigger is dropped with sqlite3", async () => {
    const copy = join(dir, "tampered.db");
    expect((await cli(["backup", copy])).code).toBe(0);
    const drop = Bun.spawnSync(["/usr/bin/sqlite3", copy, "DROP TRIGGER events_no_delete;"], { stderr: "pipe" });
    expect(drop.exitCode).toBe(0);

    const text = await cli(["check", "--db", copy]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/FAIL\s+append-only/);
    expect(text.stdout).toContain("trigger events_no_delete is missing");
    expect(text.stdout).toContain("1 check failed");
    const json = await cli(["check", "--db", copy, "--json"]);
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout);
    expect(report.ok).toBe(false);
    expect(report.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { name: string }) => c.name)).toEqual(["append-only"]);

    // An edit behind the triggers' back breaks the hash chain at that row.
    const edit = Bun.spawnSync(
      ["/usr/bin/sqlite3", copy, "DROP TRIGGER events_no_update; UPDATE events SET event = 'forged' WHERE id = 2;"],
      { stderr: "pipe" },
    );
    expect(edit.exitCode).toBe(0);
    const edited = await cli(["check", "--db", copy, "--json"]);
    expect(edited.code).toBe(1);
    const failed = JSON.parse(edited.stdout).checks.filter((c: { ok: boolean }) => !c.ok);
    // ...and no longer matches the keys event_keys copied from it.
    expect(failed.map((c: { name: string }) => c.name)).toEqual(["append-only", "hash-chain", "event-keys"]);
    expect(failed[1].problems).toEqual([expect.stringContaining("events: the chain breaks at id 2")]);

    const missing = await cli(["check", "--db", join(dir, "no-such.db")]);
    expect(missing.code).toBe(1);
    expect(existsSync(join(dir, "no-such.db"))).toBe(false);
  }, T);

  test("migrate creates and migrates a new log, then has nothing to do; never creates its directory", async () => {
    const fresh = join(dir, "fresh", "log.db");
    const nowhere = await cli(["migrate", "--db", fresh]);
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr).toContain("cannot open the event log");
    mkdirSync(join(dir, "fresh"));
    const first = await cli(["migrate", "--db", fresh]);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain("applied 0000_event_log\napplied 0001_append_only\napplied 0002_digest_index_canonical_body\n");
    const second = await cli(["migrate"], { ICR_RECEIVER_DB: fresh });
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("up to date");
    const checked = await cli(["check", "--json", "--db", fresh]);
    expect(checked.code).toBe(0);
    expect(JSON.parse(checked.stdout).checks.find((c: { name: string }) => c.name === "counts").data).toEqual({
      events: 0,
      unparsed: 0,
      deliveries: 0,
      duplicates: 0,
    });
    const live = await cli(["migrate"]);
    expect(live.code).toBe(0);
    expect(live.stdout).toContain("up to date");
  }, T);
});

describe("verify", () => {
  test("every fixture with a signature: valid exactly when the receiver stores it", async () => {
    for (const f of loadFixtures()) {
      const signature = f.headers["x-icr-signature-256"];
      if (signature === undefined) continue;
      const body = join(dir, `${f.name.replace("/", "-")}.body`);
      writeFileSync(body, f.body);
      const { code, stdout } = await cli(["verify", "--body", body, "--signature", signature, "--json"], withSecret);
      const result = JSON.parse(stdout);
      expect({ fixture: f.name, code, valid: result.valid }).toEqual({
        fixture: f.name,
        code: f.expect.stored ? 0 : 1,
        valid: f.expect.stored,
      });
      if (f.expect.stored) expect(result).toMatchObject({ label: "default", event: f.expect.event ?? null });
    }
  }, T);

  test("names the matching label among several secrets; the wrong secret exits 1", async () => {
    const f = fixture("installed");
    const body = join(dir, "installed.body");
    writeFileSync(body, f.body);
    const signature = f.headers["x-icr-signature-256"]!;
    const secretsFile = join(dir, "rotation.secrets");
    writeFileSync(secretsFile, `previous=${WRONG_SECRET}\ncurrent=${FIXTURE_SECRET}\n`, { mode: 0o600 });

    const valid = await cli(["verify", "--body", body, "--signature", signature, "--secrets-file", secretsFile]);
    expect(valid.code).toBe(0);
    expect(valid.stdout).toContain('valid: signed with the secret labelled "current"');
    expect(valid.stdout).toContain('event: "installed"');
    expect(valid.stdout).toContain('"organization_inventory": "REQUEST"');

    const wrong = await cli(["verify", "--body", body, "--signature", signature], { ICR_RECEIVER_SECRET: WRONG_SECRET });
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toStartWith("invalid: ");

    // The whole header line, as copied from a log, is accepted too.
    const line = await cli(["verify", "--body", body, "--signature", `x-icr-signature-256: ${signature}`], withSecret);
    expect(line.code).toBe(0);
  }, T);

  test("a delivery made by send --dry-run verifies", async () => {
    const dry = await cli(["send", "--event", "warehouseTransaction", "--dry-run"], withSecret);
    expect(dry.code).toBe(0);
    const [head, body] = dry.stdout.split("\n\n");
    const signature = /^x-icr-signature-256: (\S+)$/m.exec(head!)![1]!;
    const file = join(dir, "dry-run.body");
    writeFileSync(file, body!.trimEnd());
    const result = await cli(["verify", "--body", file, "--signature", signature, "--json"], withSecret);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ valid: true, event: "warehouseTransaction", envelopeMismatch: false });
  }, T);

  test("no secret configured is a configuration error (78); nothing is generated", async () => {
    const empty = join(dir, "empty-data-dir");
    const f = fixture("installed");
    const body = join(dir, "installed.body");
    writeFileSync(body, f.body);
    const result = await cli(["verify", "--body", body, "--signature", f.headers["x-icr-signature-256"]!], {
      ICR_RECEIVER_DATA_DIR: empty,
    });
    expect(result.stderr).toMatch(/^icr-receiver verify: no webhook secret configured/);
    expect(result.code).toBe(78);
    expect(existsSync(empty)).toBe(false);
    const unreadable = await cli(["verify", "--body", join(dir, "nope.body"), "--signature", "sha256=00"], withSecret);
    expect(unreadable.code).toBe(2);
  }, T);
});

test("no secret or token appears in any output, CLI or server", async () => {
  server.proc.kill("SIGTERM");
  expect(await exitWithin(server.proc, 15_000)).toBe(0);
  // (The receiver's stderr is consumed by spawnReceiver once stdout closes; its log lines are on stdout.)
  const serverOutput = server.lines.join("\n");
  expect(outputs.length).toBeGreaterThan(50);
  for (const text of [...outputs, serverOutput]) {
    for (const secret of SECRETS) expect(text).not.toContain(secret);
  }
  // And the commands that read the log still work on the stopped receiver's tidy single file.
  const events = await cli(["events", "--ndjson", "--limit", "1"]);
  expect(events.stderr).not.toContain("icr-receiver events:");
  expect(events.code).toBe(0);
  expect(ndjson(events.stdout)).toHaveLength(1);
}, T);
