// The operator's console over HTTP, on a real listening receiver: login, the session cookie,
// CSRF, expiry, the security headers on every answer, and that the token never comes back out.
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { SECURITY_HEADERS } from "../src/console/console.ts";
import { Sessions } from "../src/console/sessions.ts";
import { jsonLogger } from "../src/logger.ts";
import { form, login, session, sessionCookie } from "./support/console.ts";
import { QUERY_TOKEN, signedDelivery, startServer, type TestServer } from "./support/server.ts";
import { startSink } from "./support/sink.ts";
import { until } from "./support/until.ts";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { signDelivery } from "../src/verify/sign-delivery.ts";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

const get = (path: string, cookie?: string, headers: Record<string, string> = {}) =>
  fetch(server!.url + path, { redirect: "manual", headers: { ...(cookie && { cookie }), ...headers } });
const post = (path: string, fields: Record<string, string>, cookie?: string, headers: Record<string, string> = {}) => {
  const request = form(fields);
  return fetch(server!.url + path, { ...request, headers: { ...request.headers, ...(cookie && { cookie }), ...headers } });
};

function expectSecurityHeaders(response: Response, what: string) {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(`${what}: ${name}: ${response.headers.get(name)}`).toBe(`${what}: ${name}: ${value}`);
}

describe("login", () => {
  test("the right token starts a session: a random id in an HttpOnly, SameSite=Strict cookie on /console, never the token", async () => {
    server = await startServer();
    const response = await login(server.url);
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/console/events");
    const setCookie = response.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/^icr_console=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/console$/);
    expect(setCookie).not.toContain(QUERY_TOKEN);
    const cookie = sessionCookie(response)!;
    const events = await get("/console/events", cookie);
    expect(events.status).toBe(200);
    expect(await events.text()).toContain("<h1>Events</h1>");
    // Another login is another session.
    expect(sessionCookie(await login(server.url))).not.toBe(cookie);
  });

  test("Secure when a reverse proxy on this machine says the browser came over HTTPS, and only then", async () => {
    server = await startServer();
    expect((await login(server.url, QUERY_TOKEN, { "x-forwarded-proto": "https" })).headers.get("set-cookie")).toEndWith("; Secure");
    expect((await login(server.url, QUERY_TOKEN, { "x-forwarded-proto": "http" })).headers.get("set-cookie")).not.toContain("Secure");
  });

  test("a wrong token: 401, the form again, no cookie; no page without a session", async () => {
    server = await startServer();
    for (const token of ["wrong", "", QUERY_TOKEN + "x", QUERY_TOKEN.slice(0, -1)]) {
      const response = await login(server.url, token);
      expect(response.status).toBe(401);
      expect(response.headers.get("set-cookie")).toBeNull();
      expect(await response.text()).toContain("that is not the query token");
    }
    for (const path of ["/console/events", "/console/events/1", "/console/refused", "/console/forwarding", "/console/health"]) {
      const response = await get(path);
      expect(response.status).toBe(303);
      expect(response.headers.get("location")).toBe("/console/login");
    }
    expect((await get("/console/events", "icr_console=made-up")).status).toBe(303);
    expect((await get("/console/events/stream")).status).toBe(401);
    // The query token is for the API, not a console session.
    expect((await get("/console/events", undefined, { authorization: `Bearer ${QUERY_TOKEN}` })).status).toBe(303);
  });

  test("wrong tokens count toward the per-address refusal limit, with forged deliveries: past it, 429 even for the right token", async () => {
    server = await startServer({ rejectionLimit: 3 });
    const statuses = [];
    for (let i = 0; i < 2; i++) statuses.push((await login(server.url, "wrong")).status);
    const forged = signedDelivery({}, { secret: "forger" });
    statuses.push((await server.post(forged.body, forged.headers)).status);
    const limited = await login(server.url, "wrong");
    statuses.push(limited.status);
    expect(statuses).toEqual([401, 401, 403, 429]);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expectSecurityHeaders(limited, "429");
    const right = await login(server.url);
    expect(right.status).toBe(429);
    expect(right.headers.get("set-cookie")).toBeNull();
    expect((await server.post(forged.body, forged.headers)).status).toBe(429);
  });
});

test("forgeries through a proxy on this machine do not lock out a login from another client (or from the machine itself)", async () => {
  server = await startServer({ rejectionLimit: 3 });
  const forged = signedDelivery({}, { secret: "forger" });
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await server.post(forged.body, { ...forged.headers, "x-forwarded-for": "203.0.113.9" })).status);
  statuses.push((await login(server.url, QUERY_TOKEN, { "x-forwarded-for": "203.0.113.9" })).status);
  expect(statuses).toEqual([403, 403, 403, 429, 429]);
  expect((await login(server.url, QUERY_TOKEN, { "x-forwarded-for": "198.51.100.7" })).status).toBe(303);
  expect((await login(server.url)).status).toBe(303);
});

describe("security headers", () => {
  test("on every console answer: pages, redirects, errors, assets, the login form", async () => {
    server = await startServer();
    const { cookie } = await session(server.url);
    const paths = ["/console", "/console/login", "/console/events", "/console/events?since=nonsense", "/console/events/1", "/console/events/999", "/console/refused", "/console/forwarding", "/console/health", "/console/nothing", "/console/assets/console.css", "/console/assets/console.js"];
    for (const path of paths) expectSecurityHeaders(await get(path, cookie), path);
    for (const path of ["/console/events", "/console/login"]) expectSecurityHeaders(await get(path), `${path} (anonymous)`);
    expectSecurityHeaders(await login(server.url, "wrong"), "wrong login");
    expectSecurityHeaders(await post("/console/logout", {}, cookie), "logout without CSRF");
    // Not the rest of the receiver's routes.
    expect((await server.query("/events")).headers.get("content-security-policy")).toBeNull();
  });

  test("no inline script or style on any page (the CSP would block it): only the console's own files", async () => {
    server = await startServer();
    const { cookie } = await session(server.url);
    for (const path of ["/console/login", "/console/events", "/console/refused", "/console/forwarding", "/console/health"]) {
      const page = await (await get(path, cookie)).text();
      expect(page).not.toMatch(/<script(?![^>]*\bsrc="\/console\/assets\/console\.js")/);
      expect(page).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
      expect(page).not.toMatch(/(src|href)="(https?:)?\/\//);
    }
    const css = await get("/console/assets/console.css");
    expect(css.headers.get("content-type")).toStartWith("text/css");
    expect(await css.text()).not.toMatch(/url\(|@import|@font-face/);
  });
});

describe("CSRF and logout", () => {
  test("logout needs the session's CSRF token and the console's origin; then the session is over", async () => {
    server = await startServer();
    const { cookie, csrf } = await session(server.url);
    expect((await post("/console/logout", {}, cookie)).status).toBe(403);
    expect((await post("/console/logout", { csrf: "x".repeat(csrf.length) }, cookie)).status).toBe(403);
    expect((await post("/console/logout", { csrf }, cookie, { origin: "https://elsewhere.example" })).status).toBe(403);
    expect((await post("/console/logout", { csrf }, cookie, { "sec-fetch-site": "cross-site" })).status).toBe(403);
    // Another session's token is not this one's.
    const other = await session(server.url);
    expect((await post("/console/logout", { csrf: other.csrf }, cookie)).status).toBe(403);
    expect((await get("/console/events", cookie)).status).toBe(200);

    const out = await post("/console/logout", { csrf }, cookie, { origin: server.url, "sec-fetch-site": "same-origin" });
    expect(out.status).toBe(303);
    expect(out.headers.get("location")).toBe("/console/login");
    expect(out.headers.get("set-cookie")).toMatch(/^icr_console=; HttpOnly; SameSite=Strict; Path=\/console; Max-Age=0/);
    expect((await get("/console/events", cookie)).status).toBe(303);
    expect((await get("/console/events", other.cookie)).status).toBe(200);
  });

  test("a cross-origin login post is refused, and one from Origin: null without Sec-Fetch-Site", async () => {
    server = await startServer();
    expect((await login(server.url, QUERY_TOKEN, { origin: "https://elsewhere.example" })).status).toBe(403);
    expect((await login(server.url, QUERY_TOKEN, { origin: "null" })).status).toBe(403);
    expect((await login(server.url, QUERY_TOKEN, { origin: "null", "sec-fetch-site": "same-origin" })).status).toBe(303);
    // What a browser without Sec-Fetch-Site sends under Referrer-Policy: same-origin.
    expect((await login(server.url, QUERY_TOKEN, { origin: server.url })).status).toBe(303);
  });

  test("a replay needs the CSRF token too (and forwarding, to mean anything)", async () => {
    server = await startServer();
    const { cookie, csrf } = await session(server.url);
    const d = signedDelivery();
    const { id } = (await (await server.post(d.body, d.headers)).json()) as { id: number };
    expect((await post(`/console/events/${id}/replay`, {}, cookie)).status).toBe(403);
    expect((await post(`/console/events/${id}/replay`, { csrf })).status).toBe(401);
    expect((await post(`/console/events/${id}/replay`, { csrf }, cookie)).status).toBe(404);
    expect((await post("/console/forwarding/replay", { csrf: "nope" }, cookie)).status).toBe(403);
  });
});

test("an event id is digits only, on the event page, its replay and the replay form: 0x10, 1e1, 1.5 are refused 400 (a page)", async () => {
  server = await startServer();
  const { cookie, csrf } = await session(server.url);
  for (let i = 0; i < 16; i++) {
    const d = signedDelivery({ installation: { id: `inst-${i}`, organization: { id: "org-a" } } });
    expect((await server.post(d.body, d.headers)).status).toBe(202);
  }
  expect((await get("/console/events/16", cookie)).status).toBe(200);
  expect((await get("/console/events/10", cookie)).status).toBe(200);
  expect((await post("/console/events/16/replay", { csrf }, cookie)).status).toBe(404); // forwarding is off
  for (const id of ["0x10", "1e1", "1.5", "010", "+1", "0", "-1", "abc", "99999999999999999"]) {
    const page = await get(`/console/events/${id}`, cookie);
    expect(`${id}: ${page.status} ${page.headers.get("content-type")}`).toBe(`${id}: 400 text/html; charset=utf-8`);
    expectSecurityHeaders(page, `/console/events/${id}`);
    expect(await page.text()).toContain("Invalid parameter: id.");
    expect((await post(`/console/events/${id}/replay`, { csrf }, cookie)).status).toBe(400);
  }
  for (const id of ["0x10", "1e1", "1.5", "0", ""]) {
    const form = await post("/console/forwarding/replay", { csrf, id }, cookie);
    expect(`${id}: ${form.status} ${form.headers.get("content-type")}`).toBe(`${id}: 400 text/html; charset=utf-8`);
    expectSecurityHeaders(form, `replay form with id ${id}`);
  }
});

describe("expiry", () => {
  test("idle and absolute limits end a session; the number of sessions is bounded", async () => {
    let now = 1_000_000;
    const sessions = new Sessions({ idleMs: 30 * 60_000, absoluteMs: 12 * 3_600_000, maxSessions: 3 }, () => now);
    server = await startServer({}, { console: { sessions } });
    const idle = sessionCookie(await login(server.url))!;
    now += 29 * 60_000;
    expect((await get("/console/events", idle)).status).toBe(200);
    now += 29 * 60_000; // used 29 minutes ago: still fine
    expect((await get("/console/events", idle)).status).toBe(200);
    now += 30 * 60_000;
    expect((await get("/console/events", idle)).status).toBe(303);

    const busy = sessionCookie(await login(server.url))!;
    // Used every 20 minutes: never idle, but over after 12 hours all the same.
    for (let step = 1; step < 36; step++) {
      now += 20 * 60_000;
      expect((await get("/console/health", busy)).status).toBe(200);
    }
    now += 20 * 60_000;
    expect((await get("/console/health", busy)).status).toBe(303);

    const first = sessionCookie(await login(server.url))!;
    for (let i = 0; i < 3; i++) await login(server.url);
    expect(sessions.size).toBe(3);
    expect((await get("/console/events", first)).status).toBe(303);
  });
});

describe("pages", () => {
  test("events: newest first, the filters of GET /events, keyset pages; a bad filter is named", async () => {
    server = await startServer();
    const { cookie } = await session(server.url);
    for (let i = 0; i < 3; i++) {
      const d = signedDelivery({ installation: { id: `inst-${i}`, organization: { id: i === 1 ? "org-b" : "org-a" } } });
      expect((await server.post(d.body, d.headers)).status).toBe(202);
    }
    const ids = (text: string) => [...text.matchAll(/<a href="\/console\/events\/(\d+)">/g)].map((m) => Number(m[1]));
    expect(ids(await (await get("/console/events", cookie)).text())).toEqual([3, 2, 1]);
    expect(ids(await (await get("/console/events?organization=org-a&event=&since=", cookie)).text())).toEqual([3, 1]);
    const first = await (await get("/console/events?limit=2", cookie)).text();
    expect(ids(first)).toEqual([3, 2]);
    expect(first).toContain('href="/console/events?limit=2&amp;after=2"');
    const stream = /data-stream="([^"]+)"/.exec(first)![1]!.replaceAll("&amp;", "&");
    const live = await get(stream, cookie);
    expect(`${live.status} ${live.headers.get("content-type")}`).toBe("200 text/event-stream");
    await live.body!.cancel();
    const second = await (await get("/console/events?limit=2&after=2", cookie)).text();
    expect(ids(second)).toEqual([1]);
    expect(second).not.toContain("data-stream");
    const bad = await get("/console/events?since=yesterday", cookie);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("since: must be an ISO-8601 time");
  });

  test("an event: payload laid out exactly, every delivery with its headers (credentials redacted), escaped", async () => {
    server = await startServer();
    const { cookie } = await session(server.url);
    // Written as text: a number too large for a double must come out as it was signed.
    const payloadText = '{"event":"installed","installation":{"id":"i-1"},"sender":{"fullName":"<img src=x onerror=alert(1)>","big":12345678901234567890,"empty":{}}}';
    const d = signDelivery(payloadText, FIXTURE_SECRET);
    // The sender's own X-Forwarded-For is kept with the delivery and shown with its headers.
    const headers = { ...d.headers, "x-note": '<script>alert("h")</script>', "x-forwarded-for": "<b>", authorization: `Bearer ${QUERY_TOKEN}` };
    const { id } = (await (await server.post(d.body, headers)).json()) as { id: number };
    await server.post(d.body, d.headers); // a repeat: a second delivery
    const page = await (await get(`/console/events/${id}`, cookie)).text();
    expect(page).toContain("&lt;img src=x onerror=alert(1)&gt;");
    expect(page).toContain("&lt;script&gt;alert(&quot;h&quot;)&lt;/script&gt;");
    expect(page).toContain("<dt>x-forwarded-for</dt><dd>&lt;b&gt;</dd>");
    expect(page).not.toContain("<b>");
    expect(page).not.toContain("<img src=x");
    expect(page).not.toContain('<script>alert("h")');
    expect(page).toContain("12345678901234567890");
    expect(page).toContain('{\n  &quot;event&quot;: &quot;installed&quot;,\n  &quot;installation&quot;: {\n    &quot;id&quot;: &quot;i-1&quot;\n  },');
    expect(page).toContain("&quot;empty&quot;: {}");
    expect(page).toContain("Delivery 2 (a repeat)");
    expect(page).toContain("[redacted]");
    expect(page).not.toContain(QUERY_TOKEN);
    expect(page).toContain("Forwarding is off");
    expect((await get("/console/events/99", cookie)).status).toBe(404);
    expect((await get("/console/events/abc", cookie)).status).toBe(400);
  });

  test("refused deliveries, health (with the chart) and forwarding (off) render", async () => {
    server = await startServer();
    const { cookie } = await session(server.url);
    const forged = signedDelivery({}, { secret: "forger" });
    await server.post(forged.body, forged.headers);
    const accepted = signedDelivery();
    await server.post(accepted.body, accepted.headers);
    let refused = "";
    await until(async () => (refused = await (await get("/console/refused", cookie)).text()).includes("invalid_signature"), 5000, "the refusal on the page");
    expect(refused).toContain(new Bun.CryptoHasher("sha256").update(forged.body).digest("hex"));
    const health = await (await get("/console/health", cookie)).text();
    expect(health).toContain("<strong>Ready:</strong>");
    expect(health).toContain("1 accepted, 1 refused");
    expect(health).toMatch(/<svg [^>]*role="img"/);
    expect(health).toMatch(/1 events, 1 deliveries, 1 refused deliveries kept/);
    const forwarding = await (await get("/console/forwarding", cookie)).text();
    expect(forwarding).toContain("Forwarding is off");
  });

  test("the live stream takes the session cookie and sends unnamed messages (EventSource's onmessage)", async () => {
    server = await startServer();
    const { cookie } = await session(server.url);
    const stream = await fetch(`${server.url}/console/events/stream?after=0`, { headers: { cookie } });
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toBe("text/event-stream");
    const d = signedDelivery();
    await server.post(d.body, d.headers);
    const reader = stream.body!.getReader();
    let text = "";
    while (!text.includes("data: ")) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    expect(text).toContain("id: 1\ndata: {");
    expect(text).not.toContain("event: ");
  });
});

test("a live stream ends with its session: a logout elsewhere ends it; while open it keeps the session from idling out", async () => {
  let now = 1_000_000;
  const sessions = new Sessions({ idleMs: 60_000, absoluteMs: 3_600_000, maxSessions: 8 }, () => now);
  server = await startServer({}, { console: { sessions, sessionCheckMs: 20 } });
  const { cookie, csrf } = await session(server.url);
  const stream = await fetch(`${server.url}/console/events/stream`, { headers: { cookie } });
  expect(stream.status).toBe(200);
  const reader = stream.body!.getReader();
  await reader.read(); // the retry line
  for (let i = 0; i < 5; i++) {
    now += 50_000;
    await Bun.sleep(60);
  }
  // 250 s without a page load, but the stream was open: still logged in.
  expect((await get("/console/events", cookie)).status).toBe(200);
  expect((await post("/console/logout", { csrf }, cookie)).status).toBe(303);
  const deadline = Date.now() + 5000;
  let done = false;
  while (!done && Date.now() < deadline) done = (await reader.read()).done;
  expect(done).toBe(true);
});

describe("forwarding on the pages", () => {
  test("an event's state per destination (filtered, failing with its error), its lag; a replay from the event page", async () => {
    const secret = `whsec_${Buffer.from("a forwarding secret of 32 bytes!").toString("base64")}`;
    const sink = startSink([secret]);
    sink.answer = () => ({ status: 500 });
    try {
      server = await startServer({
        forwarding: {
          destinations: [
            { name: "app", url: sink.url, events: null },
            { name: "installs", url: sink.url, events: ["installed"] },
          ],
          secrets: [secret],
          timeoutMs: 2000,
          backoffMs: 60_000,
          maxBackoffMs: 60_000,
          maxAgeMs: 3_600_000,
          concurrency: 2,
        },
      });
      const { cookie, csrf } = await session(server.url);
      const other = await session(server.url);
      const d = signedDelivery();
      const { id } = (await (await server.post(d.body, d.headers)).json()) as { id: number };
      let page = "";
      await until(async () => (page = await (await get(`/console/events/${id}`, cookie)).text()).includes("failed, retrying"), 10_000, "a failed attempt on the event page");
      expect(page).toContain("HTTP 500");
      expect(page).toContain("not sent (the destination&#39;s event filter skips it)");
      const forwarding = await (await get("/console/forwarding", cookie)).text();
      expect(forwarding).toMatch(/<td data-label="Lag \(events\)">1<\/td>/);
      expect(forwarding).toContain('<span class="state warn">retrying</span>');

      // In flight (retrying): no replay offered, and a post for one is refused, so nothing goes twice.
      expect(page).toContain("none while it is failed, retrying: a replay now could send it twice");
      expect(page).not.toContain(`action="/console/events/${id}/replay"`);
      for (const fields of [{ csrf, destination: "app" }, { csrf }] as Record<string, string>[]) {
        const refused = await post(`/console/events/${id}/replay`, fields, cookie);
        expect(refused.status).toBe(409);
        expect(await refused.text()).toContain(`Event ${id} is still being sent to app (failed, retrying): a replay now could send it twice.`);
      }
      expect((await post(`/console/events/${id}/replay`, { csrf, destination: "installs" }, cookie)).status).toBe(303); // not sent there: nothing asked
      expect(await (await get(`/console/events/${id}`, cookie)).text()).toContain("Replay requested: 0 sends;");

      // Delivered to both: a replay to one, or to every destination, is offered.
      sink.answer = (received) => ({ status: received.eventId === id ? 500 : 200 });
      const installed = signedDelivery({ event: "installed", installation: { id: "inst-other", organization: { id: "org-z" } } });
      const deliveredId = ((await (await server.post(installed.body, installed.headers)).json()) as { id: number }).id;
      let delivered = "";
      await until(async () => (delivered = await (await get(`/console/events/${deliveredId}`, cookie)).text()).split(">delivered<").length === 3, 10_000, "delivered to both");
      for (const label of ["Replay to app", "Replay to installs", "Replay to every destination"]) expect(delivered).toContain(`>${label}</button>`);
      sink.answer = () => ({ status: 500 });
      const replayed = await post(`/console/events/${deliveredId}/replay`, { csrf, destination: "app" }, cookie);
      expect(replayed.status).toBe(303);
      expect(replayed.headers.get("location")).toBe(`/console/events/${deliveredId}`);
      // Said once, on the page the replay led to, and only to the session that asked.
      expect(await (await get(`/console/events/${deliveredId}`, other.cookie)).text()).not.toContain("Replay requested");
      const after = await (await get(`/console/events/${deliveredId}`, cookie)).text();
      expect(after).toContain("Replay requested: 1 send;");
      expect(after).toContain('<span class="state warn">replay requested</span>');
      expect(after).toContain("none while it is replay requested");
      expect(after).not.toContain(">Replay to every destination</button>");
      expect(await (await get(`/console/events/${deliveredId}`, cookie)).text()).not.toContain("Replay requested:");
      expect((await post(`/console/events/${deliveredId}/replay`, { csrf, destination: "nowhere" }, cookie)).status).toBe(404);
      // A link cannot make the console claim a replay.
      expect(await (await get(`/console/events/${id}?replayed=5`, cookie)).text()).not.toContain("Replay requested:");
      expect(await (await get("/console/forwarding?replayed=5", cookie)).text()).not.toContain("Replay requested:");
    } finally {
      sink.stop();
    }
  });
});

describe("off", () => {
  test("--no-console: nothing at /console", async () => {
    server = await startServer({ console: false });
    const response = await get("/console/login");
    expect(response.status).toBe(404);
    expect((await response.json()).error).toBe("not_found");
    expect((await login(server.url)).status).toBe(404);
  });
});

test("the token appears in no answer and no log line, whatever is tried", async () => {
  const lines: string[] = [];
  server = await startServer({ rejectionLimit: 5 }, { logger: jsonLogger((text) => lines.push(text), false) });
  const seen: string[] = [];
  const record = async (response: Response, echoed = (text: string) => text) => {
    seen.push(JSON.stringify([...response.headers]), echoed(await response.text()));
    return response;
  };
  const cookie = sessionCookie(await record(await login(server.url)))!;
  const page = await record(await get("/console/events", cookie));
  const csrf = /name="csrf" value="([^"]+)"/.exec(seen.at(-1)!)![1]!;
  expect(page.status).toBe(200);
  await record(await login(server.url, QUERY_TOKEN.slice(0, 10)));
  await record(await login(server.url, `${QUERY_TOKEN} `));
  for (const path of ["/console/health", "/console/refused", "/console/forwarding"]) await record(await get(path, cookie));
  // The events page filtered on the token shows the filter as typed, in its field and in the live
  // stream's URL: the operator's own input, not the token coming out of the receiver. Only there.
  await record(await get(`/console/events?event=${QUERY_TOKEN}`, cookie), (text) => text.replace(`value="${QUERY_TOKEN}"`, "").replace(`event=${QUERY_TOKEN}&amp;`, ""));
  await record(await post("/console/logout", { csrf, token: QUERY_TOKEN }, cookie));
  await Bun.sleep(20);
  expect(lines.some((line) => line.includes("console login refused"))).toBe(true);
  for (const text of [...seen, ...lines]) expect(text).not.toContain(QUERY_TOKEN);
});

describe("what each page shows", () => {
  const ids = (text: string) => [...text.matchAll(/<a href="\/console\/events\/(\d+)">/g)].map((m) => Number(m[1]));
  const deliver = async (payload: Record<string, unknown> = {}, headers: Record<string, string> = {}) => {
    const d = signedDelivery(payload);
    const response = await server!.post(d.body, { ...d.headers, ...headers });
    expect(response.status).toBe(202);
    return ((await response.json()) as { id: number }).id;
  };

  test("events: the event, installation, time and unparsed filters", async () => {
    server = await startServer();
    const { cookie } = await session(server.url);
    const transaction = await deliver({ installation: { id: "inst-1", organization: { id: "org-a" } } });
    const installed = await deliver({ event: "installed", installation: { id: "inst-2", organization: { id: "org-a" } } });
    const unparsedDelivery = signDelivery("[]", FIXTURE_SECRET, { envelope: {} });
    const unparsed = ((await (await server.post(unparsedDelivery.body, unparsedDelivery.headers)).json()) as { id: number }).id;
    const list = async (query: string) => {
      const response = await get(`/console/events?${query}`, cookie);
      expect(`${query}: ${response.status}`).toBe(`${query}: 200`);
      return ids(await response.text());
    };
    expect(await list("event=installed")).toEqual([installed]);
    expect(await list("installation=inst-1")).toEqual([transaction]);
    expect(await list("parsed=false")).toEqual([unparsed]);
    expect(await list("parsed=true")).toEqual([installed, transaction]);
    expect(await list("since=1h")).toEqual([unparsed, installed, transaction]);
    expect(await list("until=1h")).toEqual([]);
    expect(await list(`since=${new Date(Date.now() + 60_000).toISOString()}`)).toEqual([]);
    expect(await list(`since=${new Date(Date.now() - 60_000).toISOString()}&until=${new Date(Date.now() + 60_000).toISOString()}`)).toEqual([unparsed, installed, transaction]);
    const page = await (await get("/console/events?parsed=false", cookie)).text();
    expect(page).toContain('<span class="state warn">unparsed: ');
    expect(page).toContain('<option value="false" selected>unparsed only</option>');
  });

  test("a live list with a filter leaves out the events that do not match it", async () => {
    server = await startServer();
    const { cookie } = await session(server.url);
    const page = await (await get("/console/events?event=installed&limit=5", cookie)).text();
    const stream = await get(/data-stream="([^"]+)"/.exec(page)![1]!.replaceAll("&amp;", "&"), cookie);
    expect(stream.status).toBe(200);
    const other = await deliver();
    const installed = await deliver({ event: "installed" });
    const reader = stream.body!.getReader();
    let text = "";
    while (!text.includes(`id: ${installed}\n`)) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    expect(text).not.toContain(`id: ${other}\n`);
  });

  test("an event: envelope mismatch, the sender's address, the secret that matched", async () => {
    server = await startServer({ secrets: [{ label: "old", secret: "an older secret" }, { label: "current", secret: FIXTURE_SECRET }] });
    const { cookie } = await session(server.url);
    const payloadText = JSON.stringify({ event: "installed", installation: { id: "inst-1", organization: { id: "org-a" } } });
    const d = signDelivery(payloadText, FIXTURE_SECRET, { envelope: { event: "uninstalled" } });
    const { id } = (await (await server.post(d.body, d.headers)).json()) as { id: number };
    const page = await (await get(`/console/events/${id}`, cookie)).text();
    expect(page).toContain("<dt>From address</dt><dd>127.0.0.1</dd>");
    expect(page).toContain("<dt>Secret label</dt><dd>current</dd>");
    expect(page).toContain('<dt>Envelope</dt><dd><span class="state warn">mismatch: unsigned top-level fields disagree with the signed payload</span></dd>');
    expect(await (await get("/console/events", cookie)).text()).toContain('<span class="state warn">envelope mismatch</span>');
    const matching = await deliver();
    expect(await (await get(`/console/events/${matching}`, cookie)).text()).toContain("<dt>Envelope</dt><dd>matches the signed payload</dd>");
  });

  test("refused deliveries: the address column, and older pages by `before`", async () => {
    server = await startServer();
    const { cookie } = await session(server.url);
    const forged = signedDelivery({}, { secret: "forger" });
    for (let i = 0; i < 52; i++) expect((await server.post(forged.body, forged.headers)).status).toBe(403);
    await until(() => (server!.database.sqlite.query("SELECT count(*) AS n FROM rejections").get() as { n: number }).n === 52, 5000, "52 refusals recorded");
    const seqs = (text: string) => [...text.matchAll(/<td data-label="#">(\d+)<\/td>/g)].map((m) => Number(m[1]));
    const first = await (await get("/console/refused", cookie)).text();
    expect(seqs(first)).toEqual(Array.from({ length: 50 }, (_, i) => 52 - i));
    expect(first.split('<td data-label="Address">127.0.0.1</td>').length - 1).toBe(50);
    const older = /<a href="(\/console\/refused\?before=\d+)" rel="next">Older refusals<\/a>/.exec(first)![1]!;
    const second = await (await get(older, cookie)).text();
    expect(seqs(second)).toEqual([2, 1]);
    expect(second).toContain("No older refusals.");
    for (const before of ["0x10", "1.5", "0", "-3"]) expect((await get(`/console/refused?before=${before}`, cookie)).status).toBe(400);
  });

  test("health: ready or not and why; commits, latency, sizes, free disk, version, uptime", async () => {
    server = await startServer({}, { busyTimeoutMs: 200 });
    const { cookie } = await session(server.url);
    await deliver();
    const ready = await (await get("/console/health", cookie)).text();
    expect(ready).toContain("<strong>Ready:</strong> the log takes deliveries.");
    expect(ready).toMatch(/<dt>Commits per second<\/dt><dd>\d+\.\d\d \(over the last full minute\)<\/dd>/);
    expect(ready).toMatch(/<dt>Commit latency<\/dt><dd>(no commit in the last full minute|\d+\.\d ms on average)<\/dd>/);
    expect(ready).toMatch(/<dt>Database<\/dt><dd>\d+(\.\d)? (KiB|MiB), write-ahead log \d+(\.\d)? (B|KiB|MiB)<\/dd>/);
    expect(ready).toMatch(/<dt>Free disk<\/dt><dd>\d+(\.\d)? (KiB|MiB|GiB|TiB)<\/dd>/);
    const { version } = (await Bun.file(`${import.meta.dir}/../package.json`).json()) as { version: string };
    expect(ready).toContain(`<dt>Version</dt><dd>${version}</dd>`);
    expect(ready).toMatch(/<dt>Uptime<\/dt><dd>\d+ s \(since <time datetime="[^"]+">/);
    expect(ready).toContain("<dt>Rows</dt><dd>1 events, 1 deliveries, 0 refused deliveries kept</dd>");

    // Another process holds the write lock (as a sqlite3 shell left in a transaction would).
    const blocker = new Database(server.config.databasePath);
    blocker.run("BEGIN IMMEDIATE");
    try {
      let page = "";
      await until(async () => (page = await (await get("/console/health", cookie)).text()).includes("Not ready"), 5000, "not ready on the page");
      expect(page).toContain("<strong>Not ready:</strong> the log&#39;s write lock is held by another process");
    } finally {
      blocker.run("ROLLBACK");
      blocker.close();
    }
  });
});

describe("forwarding and consumers on the pages", () => {
  const secret = `whsec_${Buffer.from("a forwarding secret of 32 bytes!").toString("base64")}`;

  test("dead letters on the event page; replay all of one destination, then all dead letters, each reaching its app", async () => {
    const app = startSink([secret]);
    const audit = startSink([secret]);
    let failing = true;
    for (const sink of [app, audit]) sink.answer = () => ({ status: failing ? 503 : 200 });
    try {
      server = await startServer({
        forwarding: {
          destinations: [
            { name: "app", url: app.url, events: null },
            { name: "audit", url: audit.url, events: null },
          ],
          secrets: [secret],
          timeoutMs: 2000,
          backoffMs: 50,
          maxBackoffMs: 100,
          maxAgeMs: 400,
          concurrency: 2,
        },
      });
      const { cookie, csrf } = await session(server.url);
      const ids: number[] = [];
      for (const installation of ["inst-a", "inst-b"]) {
        const d = signedDelivery({ installation: { id: installation, organization: { id: "org-a" } } });
        ids.push(((await (await server.post(d.body, d.headers)).json()) as { id: number }).id);
      }
      await until(async () => ((await (await server!.query("/forward/dead")).json()) as { deadLetters: unknown[] }).deadLetters.length === 4, 10_000, "four dead letters");
      const event = await (await get(`/console/events/${ids[0]}`, cookie)).text();
      expect(event.split('<span class="state bad">dead letter</span>').length - 1).toBe(2);
      expect(event).toContain("HTTP 503");
      for (const label of ["Replay to app", "Replay to audit", "Replay to every destination"]) expect(event).toContain(`>${label}</button>`);
      const forwarding = await (await get("/console/forwarding", cookie)).text();
      expect(forwarding).toContain(">Replay all of app</button>");
      expect(forwarding).toContain(">Replay all dead letters</button>");
      expect(forwarding.split("<td data-label=\"Destination\">").length - 1).toBe(2 + 4); // two destinations, four dead letters

      failing = false;
      const sent = (sink: typeof app) => new Set(sink.received.map((r) => r.eventId));
      expect((await post("/console/forwarding/replay", { csrf, destination: "app" }, cookie)).status).toBe(303);
      expect(await (await get("/console/forwarding", cookie)).text()).toContain("Replay requested: 2 sends;");
      await until(() => ids.every((id) => sent(app).has(id)), 10_000, "both replays at the app");
      // The sink records the requests it took (answered 2xx): the audit app's are still dead letters.
      expect(audit.received).toEqual([]);
      expect((await post("/console/forwarding/replay", { csrf }, cookie)).status).toBe(303);
      expect(await (await get("/console/forwarding", cookie)).text()).toContain("Replay requested: 2 sends;");
      await until(() => ids.every((id) => sent(audit).has(id)), 10_000, "both replays at the audit app");
      await until(async () => (await (await get("/console/forwarding", cookie)).text()).includes("No dead letters."), 5000, "no dead letters left");
    } finally {
      app.stop();
      audit.stop();
    }
  });

  test("the oldest undelivered event's age; consumers and their lag", async () => {
    const sink = startSink([secret]);
    sink.answer = () => ({ status: 500 });
    try {
      server = await startServer({
        forwarding: {
          destinations: [{ name: "app", url: sink.url, events: null }],
          secrets: [secret],
          timeoutMs: 2000,
          backoffMs: 60_000,
          maxBackoffMs: 60_000,
          maxAgeMs: 3_600_000,
          concurrency: 1,
        },
      });
      const { cookie } = await session(server.url);
      for (let i = 0; i < 3; i++) {
        const d = signedDelivery();
        expect((await server.post(d.body, d.headers)).status).toBe(202);
      }
      await until(async () => (await (await get("/console/forwarding", cookie)).text()).includes('<span class="state warn">retrying</span>'), 10_000, "a first failed attempt");
      await Bun.sleep(1100);
      const forwarding = await (await get("/console/forwarding", cookie)).text();
      expect(forwarding).toMatch(/<td data-label="Oldest undelivered">[1-9]\d* s old<\/td>/);
      expect(forwarding).toMatch(/<td data-label="Lag \(events\)">3<\/td>/);
      expect(forwarding).toContain("No named consumers");

      expect((await server.query("/consumers/reporting/events")).status).toBe(200);
      const ack = await fetch(`${server.url}/consumers/billing/ack`, { method: "POST", headers: { authorization: `Bearer ${QUERY_TOKEN}`, "content-type": "application/json" }, body: JSON.stringify({ through: 3 }) });
      expect(ack.status).toBe(200);
      const consumers = await (await get("/console/forwarding", cookie)).text();
      expect(consumers).toMatch(/<td data-label="Consumer">reporting<\/td><td data-label="Position">0<\/td><td data-label="Lag \(events\)">3<\/td>/);
      expect(consumers).toMatch(/<td data-label="Consumer">billing<\/td><td data-label="Position">3<\/td><td data-label="Lag \(events\)">0 <span class="state ok">caught up<\/span><\/td>/);
    } finally {
      sink.stop();
    }
  });
});
