// Reconciliation against a stand-in for ICR's API (test/support/icr-api.ts) on loopback, with a
// real RSA key pair: the log is built by posting real signed deliveries to a real receiver, some
// withheld; `icr-receiver reconcile` (a real process) must report exactly those, by kind, and
// nothing once they are posted. Also: JWTs ICR would refuse, a wrong key, configuration errors,
// the scheduled run's metrics, and no credential in any output, log line, metric or kept row.
import { afterEach, describe, expect, test } from "bun:test";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { appJwt } from "../src/reconcile/jwt.ts";
import type { IcrTransaction } from "../src/reconcile/icr-api.ts";
import type { Logger } from "../src/logger.ts";
import { jwtRefusal, startIcrStandIn, type StandIn, type StandInData } from "./support/icr-api.ts";
import { REPO } from "./support/process.ts";
import { signedDelivery, startServer, tempDir, type TestServer } from "./support/server.ts";

const APP_ID = "app-reconcile-1";
const rsa = () => generateKeyPairSync("rsa", { modulusLength: 2048 });
const { privateKey, publicKey } = rsa();
const PEM = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const PEM_BODY = PEM.split("\n")[1]!;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const BASE = Date.now() - 3600_000;
const at = (seconds: number) => new Date(BASE + seconds * 1000).toISOString();

function tx(id: string, state: string, updated: number, from = "org-a"): IcrTransaction {
  return { id, state, action: "retire", amount: 5, createdAt: at(1), updatedAt: at(updated), fromOrganizationId: from, toOrganizationId: null };
}

/** What ICR says, and every delivery that tells the same story; the withheld ones are marked. */
function scenario() {
  const data: StandInData = {
    installations: ["inst-a", "inst-b", "inst-d", "inst-e"].map((id) => ({ id, organizationId: `org-${id.slice(5)}`, createdAt: at(0), updatedAt: at(0) })),
    transactions: new Map([
      ["inst-a", [1, 2, 3, 4, 5, 6, 7].map((n) => tx(`tx-${n}`, "processed", n === 5 ? 100 : 10)).concat([tx("tx-shared", "processed", 10)])],
      ["inst-b", [tx("tx-b1", "processed", 10, "org-b")]],
      ["inst-d", [tx("tx-shared", "processed", 10)]],
      ["inst-e", []],
    ]),
  };
  const installation = (id: string, updated = 0) => ({ id, organization: { id: `org-${id.slice(5)}` }, appId: APP_ID, createdAt: at(0), updatedAt: at(updated) });
  // A reinstall is another signed payload (its installation's updatedAt differs), not a repeat.
  const lifecycle = (event: string, id: string, updated = 0) => ({ event, installation: installation(id, updated), transaction: undefined });
  const transaction = (id: string, inst: string, status: string, updated: number) => ({
    event: "warehouseTransaction",
    installation: installation(inst),
    transaction: { id, status, type: "retire", amount: 5, createdAt: at(1), updatedAt: at(updated) },
  });
  const posted = [
    lifecycle("installed", "inst-a"),
    lifecycle("installed", "inst-c"), // uninstalled later: ICR does not list it
    lifecycle("installed", "inst-d"),
    lifecycle("uninstalled", "inst-d"), // then reinstalled: ICR lists it
    lifecycle("installed", "inst-e"),
    ...[1, 2, 4, 6, 7].map((n) => transaction(`tx-${n}`, "inst-a", "processed", 10)),
    transaction("tx-5", "inst-a", "pending_queue", 5),
    transaction("tx-shared", "inst-a", "processed", 10),
    transaction("tx-b1", "inst-b", "processed", 10),
  ];
  const withheld = [
    { kind: "missed_installation", installationId: "inst-b", transactionId: null, payload: lifecycle("installed", "inst-b") },
    { kind: "missed_uninstallation", installationId: "inst-c", transactionId: null, payload: lifecycle("uninstalled", "inst-c") },
    { kind: "missed_installation", installationId: "inst-d", transactionId: null, payload: lifecycle("installed", "inst-d", 50) },
    { kind: "missed_transaction", installationId: "inst-a", transactionId: "tx-3", payload: transaction("tx-3", "inst-a", "processed", 10) },
    { kind: "missed_transaction", installationId: "inst-a", transactionId: "tx-5", payload: transaction("tx-5", "inst-a", "processed", 100) },
  ];
  return { data, posted, withheld };
}

function standIn(options: Partial<Parameters<typeof startIcrStandIn>[0]> & { data: StandInData }): StandIn {
  const s = startIcrStandIn({ appId: APP_ID, publicKey, failEvery: 5, rateLimitEvery: 7, ...options });
  cleanups.push(() => s.stop());
  return s;
}

async function receiver(overrides: Parameters<typeof startServer>[0] = {}, options: Parameters<typeof startServer>[1] = {}): Promise<TestServer> {
  const server = await startServer(overrides, options);
  cleanups.push(() => server.stop());
  return server;
}

async function post(server: TestServer, payload: Record<string, unknown>) {
  const d = signedDelivery(payload);
  expect((await server.post(d.body, d.headers)).status).toBe(202);
}

function keyFile(pem = PEM): string {
  const path = join(tempDir(), "icr-private-key.pem");
  writeFileSync(path, pem, { mode: 0o600 });
  return path;
}

async function reconcileCli(server: TestServer, api: StandIn, args: string[] = [], env: Record<string, string> = {}) {
  const proc = Bun.spawn([process.execPath, join(REPO, "src", "main.ts"), "reconcile", "--db", server.config.databasePath, ...args], {
    env: { PATH: process.env.PATH!, ICR_RECEIVER_ICR_APP_ID: APP_ID, ICR_RECEIVER_ICR_PRIVATE_KEY_FILE: keyFile(), ICR_RECEIVER_ICR_API_URL: api.url, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, exitCode };
}

const gapKeys = (gaps: { kind: string; installationId: string; transactionId: string | null }[]) =>
  gaps.map((g) => `${g.kind} ${g.installationId} ${g.transactionId ?? "-"}`).sort();

function expectNoSecret(text: string, api: StandIn) {
  expect(text).not.toContain(PEM_BODY);
  expect(text).not.toContain("PRIVATE KEY");
  for (const secret of api.secretsSeen) expect(text).not.toContain(secret);
}

describe("icr-receiver reconcile", () => {
  test("reports exactly the withheld deliveries, by kind, then nothing once they are posted", async () => {
    const { data, posted, withheld } = scenario();
    const api = standIn({ data });
    const server = await receiver();
    for (const payload of posted) await post(server, payload);

    const first = await reconcileCli(server, api, ["--json", "--since", "2h"]);
    expect(first.stderr).toBe("");
    expect(first.exitCode).toBe(1);
    const result = JSON.parse(first.stdout);
    expect(gapKeys(result.gaps)).toEqual(gapKeys(withheld));
    expect(result.counts).toEqual({ missed_installation: 2, missed_uninstallation: 1, missed_transaction: 2 });
    expect(result.installationsChecked).toBe(4);
    expect(result.transactionsChecked).toBe(9);
    const tx5 = result.gaps.find((g: { transactionId: string }) => g.transactionId === "tx-5");
    expect([tx5.icr.state, tx5.log.status]).toEqual(["processed", "pending_queue"]);

    // The stand-in paginated (short pages are not the last), rate-limited and failed, and every request got through.
    expect(api.requests.filter((r) => r.path === "/app/installations").map((r) => r.page)).toContain("1");
    expect(api.requests.some((r) => r.status === 429)).toBe(true);
    expect(api.requests.some((r) => r.status === 500)).toBe(true);
    expect(api.requests.filter((r) => r.status === 401)).toEqual([]);

    // The table says the same.
    const table = await reconcileCli(server, api, ["--since", "2h"]);
    expect(table.exitCode).toBe(1);
    expect(table.stdout.split("\n")[0]).toContain("5 gaps (missed_installation 2, missed_uninstallation 1, missed_transaction 2)");
    for (const w of withheld) expect(table.stdout).toMatch(new RegExp(`${w.kind}\\s+${w.installationId}\\s+${w.transactionId ?? "-"}`));

    for (const w of withheld) await post(server, w.payload);
    const after = await reconcileCli(server, api, ["--json", "--since", "2h"]);
    expect(after.exitCode).toBe(0);
    expect(JSON.parse(after.stdout).gaps).toEqual([]);

    // Every run is kept, and neither the outputs nor the rows hold a key, a JWT or a token.
    const rows = server.database.sqlite.query<Record<string, unknown>, []>("SELECT * FROM reconcile_runs ORDER BY id").all();
    expect(rows.map((r) => [r.source, r.ok, r.missed_installations, r.missed_uninstallations, r.missed_transactions])).toEqual([
      ["cli", 1, 2, 1, 2],
      ["cli", 1, 2, 1, 2],
      ["cli", 1, 0, 0, 0],
    ]);
    expect(gapKeys(JSON.parse(rows[0]!.gaps as string))).toEqual(gapKeys(withheld));
    expect(api.secretsSeen.size).toBeGreaterThan(4);
    expectNoSecret(JSON.stringify(rows) + first.stdout + first.stderr + table.stdout + after.stdout, api);
  }, 60_000);

  test("by default compares since the log's first event: what ICR had before the log began is not a gap", async () => {
    const { data, posted } = scenario();
    const api = standIn({ data, failEvery: 0, rateLimitEvery: 0, installationsShape: "array" });
    const server = await receiver();
    for (const payload of posted) await post(server, payload);
    const run = await reconcileCli(server, api, ["--json"]);
    // Everything of ICR's is an hour old, the log a few seconds: only the log's own contradictions remain.
    expect(gapKeys(JSON.parse(run.stdout).gaps)).toEqual(["missed_installation inst-d -", "missed_uninstallation inst-c -"]);
    expect(run.exitCode).toBe(1);
  });

  test("a key ICR does not hold for the app is a 401 that names the app's credentials, exit 78, and a kept failed run", async () => {
    const api = standIn({ data: scenario().data, failEvery: 0, rateLimitEvery: 0 });
    const server = await receiver();
    const other = rsa().privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const run = await reconcileCli(server, api, [], { ICR_RECEIVER_ICR_PRIVATE_KEY_FILE: keyFile(other) });
    expect(run.exitCode).toBe(78);
    expect(run.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^icr-receiver reconcile: GET \/app\/installations: ICR refused the app's JWT \(401\): check --icr-app-id \(app-reconcile-1\)/)]);
    expectNoSecret(run.stdout + run.stderr, api);
    const row = server.database.sqlite.query<{ ok: number; error: string }, []>("SELECT ok, error FROM reconcile_runs").get()!;
    expect(row.ok).toBe(0);
    expect(row.error).toContain("refused the app's JWT");
  });

  test("configuration errors exit 78 (2 for a key on the command line) with one line that never shows the key", async () => {
    const api = standIn({ data: scenario().data });
    const server = await receiver();
    const cases: [string[], Record<string, string>, number, RegExp][] = [
      [[], { ICR_RECEIVER_ICR_APP_ID: "bad id!" }, 78, /--icr-app-id \/ ICR_RECEIVER_ICR_APP_ID: "bad id!" is not an app id/],
      [[], { ICR_RECEIVER_ICR_PRIVATE_KEY_FILE: "/nonexistent/key.pem" }, 78, /cannot read \/nonexistent\/key.pem \(ENOENT\)/],
      [[], { ICR_RECEIVER_ICR_PRIVATE_KEY_FILE: keyFile("not a key\n") }, 78, /is not a PEM private key/],
      [[], { ICR_RECEIVER_ICR_PRIVATE_KEY: PEM }, 78, /never taken as a value/],
      [[], { ICR_RECEIVER_ICR_API_URL: "ftp://x" }, 78, /--icr-api-url \/ ICR_RECEIVER_ICR_API_URL: not an http or https URL/],
      [[`--icr-private-key=${PEM_BODY}`], {}, 2, /secrets are never taken on the command line/],
      [["--since", "yesterday"], {}, 2, /--since/],
    ];
    for (const [args, env, exit, message] of cases) {
      const run = await reconcileCli(server, api, args, env);
      expect([args, env, run.exitCode]).toEqual([args, env, exit]);
      const lines = run.stderr.trim().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(message);
      expect(run.stderr).not.toContain(PEM_BODY);
    }
  });
});

describe("the stand-in refuses the JWTs ICR would", () => {
  const now = Math.floor(Date.now() / 1000);
  test.each([
    ["expired", appJwt(APP_ID, privateKey, now - 11 * 60), "expired"],
    ["issued in the future", appJwt(APP_ID, privateKey, now + 11 * 60), "issued in the future"],
    ["from another app", appJwt("someone-else", privateKey, now), "wrong issuer"],
    ["signed with another key", appJwt(APP_ID, rsa().privateKey, now), "bad signature"],
  ])("%s", async (_name, jwt, reason) => {
    expect(jwtRefusal(jwt, APP_ID, publicKey)).toBe(reason);
    const api = standIn({ data: scenario().data, failEvery: 0, rateLimitEvery: 0 });
    const response = await fetch(`${api.url}/app/installations`, { headers: { authorization: `Bearer ${jwt}`, "x-icr-api-version": "2023-06-16" } });
    expect(response.status).toBe(401);
  });

  test("and takes ours: RS256, iss the app id, iat 60 s back, exp 9 minutes ahead", () => {
    const jwt = appJwt(APP_ID, privateKey, now);
    expect(jwtRefusal(jwt, APP_ID, publicKey)).toBeNull();
    const [header, claims] = jwt.split(".").slice(0, 2).map((p) => JSON.parse(Buffer.from(p, "base64url").toString()));
    expect(header).toEqual({ alg: "RS256", typ: "JWT" });
    expect(claims).toEqual({ iss: APP_ID, iat: now - 60, exp: now + 540 });
  });
});

describe("--reconcile-every", () => {
  const scrape = async (server: TestServer) => (await server.query("/metrics")).text();
  const metric = (text: string, name: string) => Number(new RegExp(`^${name.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);

  function capture(): { logger: Logger; lines: string[] } {
    const lines: string[] = [];
    const logger = Object.assign((level: string, msg: string, fields: Record<string, unknown> = {}) => void lines.push(JSON.stringify({ level, msg, ...fields })), { flush() {} });
    return { logger, lines };
  }

  async function until(condition: () => Promise<boolean>, what: string, ms = 20_000) {
    const deadline = Date.now() + ms;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await Bun.sleep(50);
    }
  }

  const scheduled = (api: StandIn, key: KeyObject = privateKey) => ({ api: { appId: APP_ID, privateKey: key, apiUrl: api.url }, everyMs: 200 });

  test("runs inside the server: gaps by kind and the last success in the metrics, kept runs, no secret anywhere", async () => {
    const { data, posted, withheld } = scenario();
    const api = standIn({ data });
    const { logger, lines } = capture();
    const server = await receiver({ reconcile: scheduled(api) }, { logger, reconcile: { api: { backoffMs: 10 } } });
    for (const payload of posted) await post(server, payload);
    const gaps = (text: string, kind: string) => metric(text, `icr_receiver_reconcile_gaps{kind="${kind}"}`);
    // Compared since the first event (ICR's data is older), the log's own contradictions show first.
    await until(async () => gaps(await scrape(server), "missed_uninstallation") === 1, "a run that saw the posted events");
    for (const w of withheld) await post(server, w.payload);
    await until(async () => {
      const text = await scrape(server);
      return ["missed_installation", "missed_uninstallation", "missed_transaction"].every((k) => gaps(text, k) === 0);
    }, "a run with no gap");
    const text = await scrape(server);
    expect(metric(text, "icr_receiver_reconcile_last_success_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 30);
    expect(metric(text, "icr_receiver_reconcile_interval_seconds")).toBe(0.2);
    expect(metric(text, `icr_receiver_reconcile_runs_total{outcome="ok"}`)).toBeGreaterThanOrEqual(2);
    expect(lines.some((l) => l.includes('"msg":"reconcile"'))).toBe(true);
    const rows = server.database.sqlite.query<Record<string, unknown>, []>("SELECT * FROM reconcile_runs WHERE source = 'schedule'").all();
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expectNoSecret(text + lines.join("\n") + JSON.stringify(rows), api);
  }, 60_000);

  test("a failing run is counted, logged and kept, and deliveries go on being stored", async () => {
    const api = standIn({ data: scenario().data, failEvery: 0, rateLimitEvery: 0 });
    const { logger, lines } = capture();
    const server = await receiver({ reconcile: scheduled(api, rsa().privateKey) }, { logger, reconcile: { api: { backoffMs: 10 } } });
    await until(async () => metric(await scrape(server), `icr_receiver_reconcile_runs_total{outcome="failed"}`) >= 2, "two failed runs");
    await post(server, scenario().posted[0]!);
    const text = await scrape(server);
    expect(metric(text, "icr_receiver_reconcile_last_success_timestamp_seconds")).toBe(0);
    expect(text).not.toContain("icr_receiver_reconcile_gaps");
    expect(lines.find((l) => l.includes("reconcile failed"))).toContain("refused the app's JWT (401)");
    const row = server.database.sqlite.query<{ ok: number }, []>("SELECT ok FROM reconcile_runs LIMIT 1").get()!;
    expect(row.ok).toBe(0);
    expectNoSecret(text + lines.join("\n"), api);
  });

  test("without --reconcile-every no reconcile metric is exposed", async () => {
    const server = await receiver();
    expect(await scrape(server)).not.toContain("icr_receiver_reconcile");
  });
});
