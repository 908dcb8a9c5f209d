// Named consumers over a real server and a real log: independent positions, pulls with the filters
// of GET /events, acknowledgements that only move forward, durable across a SIGKILL, the 400s, the
// token on every route, the CLI, and check.
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { REPO, spawnReceiver } from "./support/process.ts";
import { QUERY_TOKEN, signedDelivery, startServer, tempDir } from "./support/server.ts";
import { sqlite3 } from "./support/sqlite-shell.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const auth = { authorization: `Bearer ${QUERY_TOKEN}` };
const get = (url: string) => fetch(url, { headers: auth });
const ack = (url: string, body: unknown) => fetch(url, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify(body) });

async function post(url: string, payload: Record<string, unknown> = {}): Promise<number> {
  const d = signedDelivery(payload);
  const response = await fetch(`${url}/webhook`, { method: "POST", headers: d.headers, body: d.body });
  expect(response.status).toBe(202);
  return (await response.json()).id;
}

const idsOf = async (response: Response) => ((await response.json()) as { events: { id: number }[] }).events.map((e) => e.id);

describe("/consumers", () => {
  test("each consumer pulls from its own position, oldest first; acks move it forward only, unless reset", async () => {
    const s = await startServer();
    cleanups.push(() => s.stop());
    const ids: number[] = [];
    for (let i = 0; i < 6; i++) ids.push(await post(s.url, { event: i % 2 ? "installed" : "warehouseTransaction", n: i }));
    // A new name starts at the oldest event; the filters of GET /events apply; limit pages.
    expect(await idsOf(await get(`${s.url}/consumers/billing/events?limit=2`))).toEqual(ids.slice(0, 2));
    expect(await idsOf(await get(`${s.url}/consumers/audit/events?event=installed`))).toEqual([ids[1]!, ids[3]!, ids[5]!]);
    expect(await (await ack(`${s.url}/consumers/billing/ack`, { through: ids[1] })).json()).toEqual({ name: "billing", position: ids[1] });
    expect(await idsOf(await get(`${s.url}/consumers/billing/events?limit=2`))).toEqual(ids.slice(2, 4));
    // The other consumer did not move.
    expect(await idsOf(await get(`${s.url}/consumers/audit/events?limit=1`))).toEqual([ids[0]!]);
    // Never backwards without reset; then backwards.
    const back = await ack(`${s.url}/consumers/billing/ack`, { through: ids[0] });
    expect(back.status).toBe(400);
    expect((await back.json()).error).toBe("backwards");
    expect(await (await ack(`${s.url}/consumers/billing/ack`, { through: 0, reset: true })).json()).toEqual({ name: "billing", position: 0 });
    // Past the newest event: 400.
    const past = await ack(`${s.url}/consumers/billing/ack`, { through: ids.at(-1)! + 1 });
    expect([past.status, (await past.json()).error]).toEqual([400, "past_the_end"]);
    // from=latest on a first call starts at the end.
    expect(await idsOf(await get(`${s.url}/consumers/late/events?from=latest`))).toEqual([]);
    const next = await post(s.url);
    expect(await idsOf(await get(`${s.url}/consumers/late/events`))).toEqual([next]);
    // The list, with lag.
    const list = await (await get(`${s.url}/consumers`)).json();
    expect(list.consumers.map((c: { name: string; position: number; lag: number }) => [c.name, c.position, c.lag])).toEqual([
      ["audit", 0, 7],
      ["billing", 0, 7],
      ["late", ids.at(-1)!, 1],
    ]);
    expect(await (await s.query("/metrics")).text()).toContain('icr_receiver_consumer_lag_events{consumer="late"} 1');
    // DELETE removes one; a second time it is gone.
    expect((await fetch(`${s.url}/consumers/audit`, { method: "DELETE", headers: auth })).status).toBe(204);
    expect((await fetch(`${s.url}/consumers/audit`, { method: "DELETE", headers: auth })).status).toBe(404);
  });

  test("the 400s: a name outside the character set, bad parameters, a body that is not an ack; the token on every route", async () => {
    const s = await startServer();
    cleanups.push(() => s.stop());
    for (const path of ["/consumers/-x/events", "/consumers/a%20b/events", `/consumers/${"n".repeat(65)}/events`, "/consumers/ok/events?after=3", "/consumers/ok/events?from=start", "/consumers/ok/events?limit=0"]) {
      const response = await get(`${s.url}${path}`);
      expect([path, response.status]).toEqual([path, 400]);
    }
    for (const body of [{}, { through: -1 }, { through: "3" }, { through: 1, reset: "yes" }]) {
      expect((await ack(`${s.url}/consumers/ok/ack`, body)).status).toBe(400);
    }
    for (const [method, path] of [["GET", "/consumers"], ["GET", "/consumers/ok/events"], ["POST", "/consumers/ok/ack"], ["DELETE", "/consumers/ok"]] as const) {
      expect([method, path, (await fetch(`${s.url}${path}`, { method })).status]).toEqual([method, path, 401]);
    }
  });
});

describe("consumers in a receiver process", () => {
  test("an acknowledged position survives a SIGKILL; the CLI lists and resets; check verifies", async () => {
    const dataDir = tempDir("icr-consumers-");
    const env = { ICR_RECEIVER_DATA_DIR: dataDir, ICR_RECEIVER_SECRET: FIXTURE_SECRET, ICR_RECEIVER_QUERY_TOKEN: QUERY_TOKEN };
    const start = () => spawnReceiver(["bun", join(REPO, "src", "main.ts")], { env });
    const first = await start();
    cleanups.push(() => first.proc.kill("SIGKILL"));
    const ids: number[] = [];
    for (let i = 0; i < 4; i++) ids.push(await post(first.url, { n: i }));
    expect((await ack(`${first.url}/consumers/worker/ack`, { through: ids[2] })).status).toBe(200);
    // Committed before the answer: a kill right after it loses nothing.
    first.proc.kill("SIGKILL");
    await first.proc.exited;
    const second = await start();
    cleanups.push(() => second.proc.kill("SIGKILL"));
    expect(await idsOf(await get(`${second.url}/consumers/worker/events`))).toEqual([ids[3]!]);
    const cli = (...args: string[]) => {
      const run = Bun.spawnSync([process.execPath, join(REPO, "src", "main.ts"), ...args], { env: { PATH: process.env.PATH!, ...env } });
      return { code: run.exitCode, stdout: run.stdout.toString(), stderr: run.stderr.toString() };
    };
    expect(JSON.parse(cli("consumers", "--json").stdout).consumers).toEqual([expect.objectContaining({ name: "worker", position: ids[2], lag: 1 })]);
    expect(cli("consumers", "reset", "worker", "--to", "0")).toMatchObject({ code: 0, stdout: "worker: position 0\n" });
    expect(await idsOf(await get(`${second.url}/consumers/worker/events`))).toEqual(ids);
    expect(cli("consumers", "reset", "worker").code).toBe(2);
    expect(cli("consumers", "reset", "bad name", "--to", "0").code).toBe(2);
    const path = join(dataDir, "icr-receiver.db");
    expect(JSON.parse(cli("check", "--json").stdout).checks.find((c: { name: string }) => c.name === "consumers")).toMatchObject({ ok: true, data: { consumers: 1 } });
    expect(await second.stop()).toBe(0);
    sqlite3(path, "UPDATE consumers SET position = 1000000");
    const broken = JSON.parse(cli("check", "--json").stdout).checks.find((c: { name: string }) => c.name === "consumers");
    expect(broken.ok).toBe(false);
    expect(broken.problems).toEqual(["consumer worker is at 1000000, past the log's last event"]);
  }, 30_000);
});
