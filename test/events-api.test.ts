// GET /events and GET /events/:id over a real server and database.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { signDelivery } from "../src/verify/sign-delivery.ts";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { signedDelivery, startServer, type TestServer } from "./support/server.ts";

let server: TestServer;
const posted: { id: number; event: string; org: string; inst: string }[] = [];

beforeAll(async () => {
  server = await startServer();
  // 30 events: 3 event names × 2 organizations × installations, posted one by one (ids in order).
  for (let i = 0; i < 30; i++) {
    const event = ["installed", "warehouseTransaction", "suspended"][i % 3]!;
    const org = i % 2 === 0 ? "org-a" : "org-b";
    const inst = `inst-${i % 5}`;
    const d = signedDelivery({ event, installation: { id: inst, appId: "app-1", organization: { id: org } }, n: i });
    const { id } = await (await server.post(d.body, d.headers)).json();
    posted.push({ id, event, org, inst });
  }
  // One repeat so that a delivery count above one shows.
  const repeat = signedDelivery({ event: "uninstalled", installation: { id: "inst-r", organization: { id: "org-r" } } });
  await server.post(repeat.body, repeat.headers);
  await server.post(repeat.body, repeat.headers);
});
afterAll(() => server.stop());

async function page(query: string) {
  const response = await server.query(`/events${query}`);
  expect(response.status).toBe(200);
  return (await response.json()) as { events: Record<string, any>[]; next: string | null };
}

describe("authentication", () => {
  test.each([
    ["no header", null],
    ["a wrong token", "wrong"],
    ["a token of another length", "x".repeat(200)],
    ["an empty token", ""],
  ])("401 with %s", async (_, token) => {
    const response = await server.query("/events", token);
    expect(response.status).toBe(401);
    expect((await response.json()).error).toBe("unauthorized");
  });

  test("the token in the query string does not count", async () => {
    const response = await server.query(`/events?access_token=${server.config.queryToken}`, null);
    expect(response.status).toBe(401);
  });

  test("401 comes before parameter validation, so it reveals nothing", async () => {
    const response = await server.query("/events?bogus=1", null);
    expect(response.status).toBe(401);
    expect((await server.query("/events/1", null)).status).toBe(401);
  });

  test("another scheme is refused; the scheme's case does not matter (RFC 9110)", async () => {
    const response = await fetch(`${server.url}/events`, { headers: { authorization: `bearer-ish ${server.config.queryToken}` } });
    expect(response.status).toBe(401);
    const basic = await fetch(`${server.url}/events`, { headers: { authorization: `Basic ${server.config.queryToken}` } });
    expect(basic.status).toBe(401);
    for (const scheme of ["bearer", "BEARER", "bEaReR"]) {
      const accepted = await fetch(`${server.url}/events`, { headers: { authorization: `${scheme} ${server.config.queryToken}` } });
      expect([scheme, accepted.status]).toEqual([scheme, 200]);
    }
  });
});

describe("GET /events", () => {
  test("newest first by default, 50 at most, with every documented field", async () => {
    const { events, next } = await page("");
    expect(events.length).toBe(31);
    expect(next).toBeNull();
    expect(events.map((e) => e.id)).toEqual([...events.map((e) => e.id)].sort((a, b) => b - a));
    const newest = events[0]!;
    expect(Object.keys(newest).sort()).toEqual(
      ["id", "receivedAt", "event", "parsed", "installationId", "organizationId", "appId", "transaction", "payload", "secretLabel", "envelopeMismatch", "deliveryCount"].sort(),
    );
    expect(newest).toMatchObject({ event: "uninstalled", parsed: true, installationId: "inst-r", organizationId: "org-r", deliveryCount: 2, secretLabel: "default", envelopeMismatch: false });
    const tx = events.find((e) => e.event === "warehouseTransaction")!;
    expect(tx.transaction).toMatchObject({ status: "processed", type: "retire", amount: 3 });
    expect(typeof tx.transaction.id).toBe("string");
    expect(events.find((e) => e.event === "uninstalled")!.payload.event).toBe("uninstalled");
  });

  test("filters by event, organization and installation together", async () => {
    const { events } = await page("?event=installed&organization=org-a");
    const expected = posted.filter((p) => p.event === "installed" && p.org === "org-a").map((p) => p.id).reverse();
    expect(events.map((e) => e.id)).toEqual(expected);
    const byInstallation = await page("?installation=inst-3&order=asc");
    expect(byInstallation.events.map((e) => e.id)).toEqual(posted.filter((p) => p.inst === "inst-3").map((p) => p.id));
  });

  test("keyset pagination visits every event exactly once, in both orders", async () => {
    for (const order of ["asc", "desc"]) {
      const seen: number[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const result = await page(`?limit=7&order=${order}${cursor ? `&after=${cursor}` : ""}`);
        seen.push(...result.events.map((e) => e.id));
        cursor = result.next;
        pages++;
      } while (cursor !== null);
      expect(pages).toBe(5);
      expect(new Set(seen).size).toBe(31);
      expect(seen).toEqual([...seen].sort((a, b) => (order === "asc" ? a - b : b - a)));
    }
  });

  test("since is inclusive and until exclusive on the receive time", async () => {
    const all = (await page("?order=asc")).events;
    const pivot = all[10]!.receivedAt as string;
    const since = await page(`?since=${pivot}&order=asc&limit=1000`);
    expect(since.events.every((e) => e.receivedAt >= pivot)).toBe(true);
    expect(since.events.map((e) => e.id)).toContain(all[10]!.id);
    const until = await page(`?until=${pivot}&limit=1000`);
    expect(until.events.every((e) => e.receivedAt < pivot)).toBe(true);
    expect(since.events.length + until.events.length).toBe(31);
    expect((await page("?since=2000-01-01&until=2000-01-02")).events).toEqual([]);
  });

  test.each([
    ["limit=0", "limit"],
    ["limit=1001", "limit"],
    ["limit=abc", "limit"],
    ["limit=2.5", "limit"],
    ["order=sideways", "order"],
    ["after=-3", "after"],
    ["after=abc", "after"],
    ["since=yesterday", "since"],
    ["until=2024-13-45T99:99:99Z", "until"],
    ["colour=red", "colour"],
    ["event=", "event"],
    ["parsed=no", "parsed"],
    ["limit=1&limit=2", "repeated parameter: limit"],
    ["event=installed&event=suspended", "repeated parameter: event"],
    ["order=asc&order=asc", "repeated parameter: order"],
  ])("?%s is a 400 naming %s", async (query, parameter) => {
    const response = await server.query(`/events?${query}`);
    expect(response.status).toBe(400);
    const body = await response.json();
    expect(body.error).toBe("invalid_parameter");
    expect(body.message).toContain(parameter);
  });
});

describe("payloads the serialiser could not handle", () => {
  test("a signed payload nested 100,000 deep is served verbatim by both routes, not a 500", async () => {
    const deep = "[".repeat(100_000) + "]".repeat(100_000);
    const payloadText = `{"event":"installed","installation":{"id":"deep","organization":{"id":"org-deep"}},"x":${deep}}`;
    const { body, headers } = signDelivery(payloadText, FIXTURE_SECRET);
    const posted = await server.post(body, headers);
    expect(posted.status).toBe(202);
    const { id } = await posted.json();
    const one = await server.query(`/events/${id}`);
    expect(one.status).toBe(200);
    const text = await one.text();
    expect(text).toContain(`"payload":${payloadText}`);
    const list = await server.query("/events?organization=org-deep");
    expect(list.status).toBe(200);
    expect(await list.text()).toContain(`"payload":${payloadText}}`);
  });
});

describe("GET /events/:id", () => {
  test("one event with every delivery of it", async () => {
    const id = (await page("?event=uninstalled")).events[0]!.id;
    const response = await server.query(`/events/${id}`);
    expect(response.status).toBe(200);
    const event = await response.json();
    expect(event.id).toBe(id);
    expect(event.deliveryCount).toBe(2);
    expect(event.deliveries.length).toBe(2);
    const [first, second] = event.deliveries;
    expect(Object.keys(first).sort()).toEqual(["duplicate", "envelopeMismatch", "headers", "id", "rawBody", "receivedAt", "remoteAddress", "secretLabel"]);
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    expect(first.rawBody).toBe(second.rawBody);
    expect(JSON.parse(first.rawBody).event).toBe("uninstalled");
    expect(first.headers["x-icr-signature-256"]).toStartWith("sha256=");
    expect(first.remoteAddress).toBe("127.0.0.1");
  });

  test("404 for an unknown id, 400 for a malformed one", async () => {
    const missing = await server.query("/events/999999");
    expect(missing.status).toBe(404);
    expect((await missing.json()).error).toBe("not_found");
    const malformed = await server.query("/events/abc");
    expect(malformed.status).toBe(400);
    expect((await malformed.json()).error).toBe("invalid_parameter");
  });
});
