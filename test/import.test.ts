// `icr-receiver import`, run for real (`bun src/main.ts import` as a child process): the export of a
// real receiver's log imported into a fresh log, again (nothing added), with forged and unreadable
// lines, with --trust-source, and into the log of a receiver that keeps taking deliveries meanwhile.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openEventLogReader, type DeliveryView, type EventView } from "../src/log/event-log.ts";
import { signDelivery } from "../src/verify/sign-delivery.ts";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { REPO } from "./support/process.ts";
import { QUERY_TOKEN, signedDelivery, startServer, tempDir, type TestServer } from "./support/server.ts";

const T = { timeout: 60_000 };
const OTHER_SECRET = "import-test-retired-secret-4f1a9c";
const MAIN = join(REPO, "src", "main.ts");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

const cliEnv = (env: Record<string, string>) => ({ PATH: process.env.PATH ?? "", ICR_RECEIVER_SECRET: FIXTURE_SECRET, ...env });

/** The CLI, synchronously (nothing in this process needs to run meanwhile). */
function cli(args: string[], env: Record<string, string> = {}): Result {
  const run = Bun.spawnSync([process.execPath, MAIN, ...args], { env: cliEnv(env), stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 50_000 });
  return { code: run.exitCode ?? -1, stdout: run.stdout.toString(), stderr: run.stderr.toString() };
}

/** The CLI as a child that runs while this process keeps serving deliveries. */
async function cliAsync(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const proc = Bun.spawn([process.execPath, MAIN, ...args], { env: cliEnv(env), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 50_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

type FullEvent = EventView & { deliveries: DeliveryView[] };

/** Every event of a log with its deliveries, read-only. */
function readLog(path: string): FullEvent[] {
  const log = openEventLogReader(path);
  try {
    const all: FullEvent[] = [];
    for (let after: number | undefined; ; ) {
      const page = log.list({ order: "asc", limit: 1000, after });
      const byEvent = log.deliveriesOf(page.events.map((e) => e.id));
      all.push(...page.events.map((event) => ({ ...event, deliveries: byEvent.get(event.id) ?? [] })));
      if (page.next === null) return all;
      after = Number(page.next);
    }
  } finally {
    log.close();
  }
}

/** What an import must carry over: everything but the rows' own ids. */
const comparable = (events: FullEvent[]) =>
  events.map(({ deliveries, ...event }) => ({
    ...event,
    deliveries: deliveries.map(({ id: _id, ...delivery }) => delivery),
  }));

const ndjsonLines = (text: string) => text.split("\n").filter((line) => line !== "");

function checkPasses(db: string): void {
  const check = cli(["check", "--db", db]);
  expect(check.stdout).toContain("all checks passed");
  expect(check.code).toBe(0);
}

let source: TestServer;
let exported: string;
let sourceEvents: FullEvent[];

beforeAll(async () => {
  source = await startServer();
  const post = async (body: string, headers: Record<string, string>) => expect((await source.post(body, headers)).status).toBe(202);
  const repeated = signedDelivery({ event: "installed" });
  await post(repeated.body, repeated.headers);
  for (let i = 0; i < 20; i++) {
    const d = signedDelivery();
    await post(d.body, { ...d.headers, authorization: `Bearer ${QUERY_TOKEN}`, "x-forwarded-for": "203.0.113.7" });
  }
  await post(repeated.body, repeated.headers); // a repeat: a duplicate delivery of the first event
  // Not ICR's canonical form (kept verbatim), an envelope that disagrees, and an unparsed payload.
  const spaced = signedDelivery();
  await post(JSON.stringify(JSON.parse(spaced.body), null, 1), spaced.headers);
  const mismatch = signedDelivery({}, { envelope: { event: "uninstalled" } });
  await post(mismatch.body, mismatch.headers);
  const unparsed = signDelivery("not json at all", FIXTURE_SECRET);
  await post(unparsed.body, unparsed.headers);
  const dir = tempDir("icr-import-");
  exported = join(dir, "export.ndjson");
  const result = cli(["export", "--deliveries", "--db", source.config.databasePath, "-o", exported, "-q"]);
  expect(result.code).toBe(0);
  sourceEvents = readLog(source.config.databasePath);
  expect(sourceEvents.length).toBe(24);
}, 60_000);

afterAll(async () => {
  await source.stop();
});

describe("import", () => {
  test("export → import into an empty log: the same events, deliveries and receive times; check passes", T, () => {
    const db = join(tempDir("icr-import-"), "log.db");
    const result = cli(["import", "--db", db, exported]);
    expect(result.stderr).toContain("import: 25 deliveries read from 24 lines, 24 new events, 1 duplicate delivery, 0 already in the log, 0 refused");
    expect(result.code).toBe(0);
    const imported = readLog(db);
    // A full export into an empty log: events come back in the same order, so with the same ids.
    expect(comparable(imported)).toEqual(comparable(sourceEvents));
    expect(imported[0]!.deliveries.map((d) => d.duplicate)).toEqual([false, true]);
    expect(imported.some((e) => e.unparsedReason === "not_json")).toBe(true);
    expect(imported.some((e) => e.envelopeMismatch)).toBe(true);
    // The query token was redacted by the receiver, and stays so.
    expect(readFileSync(db).includes(QUERY_TOKEN)).toBe(false);
    checkPasses(db);

    // Twice: nothing added, every delivery already in the log.
    const again = cli(["import", "--db", db, exported]);
    expect(again.stderr).toContain("25 deliveries read from 24 lines, 0 new events, 0 duplicate deliveries, 25 already in the log, 0 refused");
    expect(again.code).toBe(0);
    expect(comparable(readLog(db))).toEqual(comparable(sourceEvents));
    // From stdin, the same.
    const piped = Bun.spawnSync([process.execPath, MAIN, "import", "--db", db, "-"], { env: cliEnv({}), stdin: Bun.file(exported), stdout: "pipe", stderr: "pipe" });
    expect(piped.stderr.toString()).toContain("25 already in the log");
    expect(piped.exitCode).toBe(0);
    checkPasses(db);
  });

  test("a forged line, a line that is not JSON, one without deliveries: refused and reported, the rest imported", T, () => {
    const dir = tempDir("icr-import-");
    const db = join(dir, "log.db");
    const lines = ndjsonLines(readFileSync(exported, "utf8"));
    const forged = signedDelivery({ event: "installed" }, { secret: OTHER_SECRET });
    const minimal = signedDelivery({ event: "uninstalled" });
    const file = join(dir, "mixed.ndjson");
    writeFileSync(
      file,
      [
        lines[0],
        JSON.stringify({ deliveries: [{ rawBody: forged.body, headers: forged.headers, receivedAt: "2024-05-01T10:00:00.000Z" }] }),
        "{ this is not json",
        JSON.stringify({ id: 7, event: "installed" }),
        "",
        // Only what the issue requires: the body and the signature; received now.
        JSON.stringify({ deliveries: [{ rawBody: minimal.body, headers: minimal.headers }] }),
        lines[1],
      ].join("\n") + "\n",
    );
    const result = cli(["import", "--db", db, file]);
    expect(result.stderr).toContain("import: line 2: refused: the signature matches no configured secret (--trust-source accepts it)");
    expect(result.stderr).toContain("import: line 3: refused: not JSON");
    expect(result.stderr).toContain('import: line 4: refused: no "deliveries"');
    expect(result.stderr).toContain("3 new events");
    expect(result.stderr).toContain("3 refused");
    expect(result.code).toBe(1);
    const events = readLog(db);
    expect(events.map((e) => e.event)).toEqual([sourceEvents[0]!.event, "uninstalled", sourceEvents[1]!.event]);
    const now = Date.now();
    expect(Math.abs(Date.parse(events[1]!.receivedAt) - now)).toBeLessThan(30_000);
    expect(events[1]!.deliveries[0]!.remoteAddress).toBeNull();
    expect(events.every((e) => e.secretLabel === "default")).toBe(true);
    checkPasses(db);

    // --trust-source takes the forged one, labelled as such; the unreadable lines are still refused.
    const trusted = cli(["import", "--trust-source", "--db", db, file]);
    expect(trusted.stderr).toContain("import: line 3: refused: not JSON");
    expect(trusted.stderr).not.toContain("line 2:");
    expect(trusted.stderr).toContain("1 new event,");
    expect(trusted.code).toBe(1);
    const after = readLog(db);
    expect(after.length).toBe(4);
    const taken = after[3]!;
    expect(taken.event).toBe("installed");
    expect(taken.secretLabel).toBe("imported-unverified");
    expect(taken.receivedAt).toBe("2024-05-01T10:00:00.000Z");
    expect(taken.deliveries.map((d) => d.secretLabel)).toEqual(["imported-unverified"]);
    expect(taken.payloadJson).toBe(forged.payloadText);
    checkPasses(db);
  });

  test("no secret configured: exit 78; no FILE: exit 2", T, () => {
    const db = join(tempDir("icr-import-"), "log.db");
    const noSecret = cli(["import", "--db", db, exported], { ICR_RECEIVER_SECRET: "", ICR_RECEIVER_DATA_DIR: tempDir() });
    expect(noSecret.code).toBe(78);
    expect(cli(["import", "--db", db]).code).toBe(2);
    expect(cli(["import", "--db", db, join(tempDir(), "missing.ndjson")]).code).toBe(2);
  });

  test("into the log of a running receiver while it takes deliveries: both succeed, check passes", T, async () => {
    const target = await startServer();
    try {
      const before = readLog(target.config.databasePath).length;
      let posting = true;
      let posted = 0;
      const poster = (async () => {
        while (posting) {
          const d = signedDelivery();
          const response = await target.post(d.body, d.headers);
          expect(response.status).toBe(202);
          posted++;
        }
      })();
      // A larger file, so that the import and the deliveries overlap: the export's lines and 3,000 more.
      const dir = tempDir("icr-import-");
      const file = join(dir, "big.ndjson");
      const extra = Array.from({ length: 3000 }, () => {
        const d = signedDelivery();
        return JSON.stringify({ deliveries: [{ rawBody: d.body, headers: d.headers, receivedAt: new Date().toISOString(), remoteAddress: "198.51.100.9" }] });
      });
      writeFileSync(file, readFileSync(exported, "utf8") + extra.join("\n") + "\n");
      const result = await cliAsync(["import", "--batch-size", "500", "--db", target.config.databasePath, file]);
      posting = false;
      await poster;
      expect(result.stderr).toContain("3,024 new events, 1 duplicate delivery, 0 already in the log, 0 refused");
      expect(result.code).toBe(0);
      expect(posted).toBeGreaterThan(0);
      const events = readLog(target.config.databasePath);
      expect(events.length).toBe(before + posted + 3024);
      const check = await cliAsync(["check", "--db", target.config.databasePath]);
      expect(check.stdout).toContain("all checks passed");
      expect(check.code).toBe(0);
    } finally {
      await target.stop();
    }
  });
});
