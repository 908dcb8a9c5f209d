// The console in a real browser: Debian's Chromium, headless, driven by playwright-core (never a
// browser of its own). Logs in (and fails to), filters, follows an event, watches a delivery
// appear live, opens the refused deliveries, replays a dead letter into a real sink, checks the
// phone width and the keyboard, logs out; every request the pages make is recorded and must stay
// on loopback. Screenshots go to a temporary directory (printed); with
// ICR_CONSOLE_SCREENSHOTS=docs the events page and an event are also written to docs/ for the README.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Locator, type Page } from "playwright-core";
import { SECURITY_HEADERS } from "../src/console/console.ts";
import { QUERY_TOKEN, signedDelivery, startServer, tempDir, type TestServer } from "./support/server.ts";
import { startSink, type Sink } from "./support/sink.ts";
import { until } from "./support/until.ts";

const CHROMIUM = "/usr/bin/chromium";
// This machine's network is closed: without these, Chromium reaches for Google's hosts.
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const FORWARD_SECRET = `whsec_${randomBytes(32).toString("base64")}`;
const shots = mkdtempSync(join(tmpdir(), "icr-console-screenshots-"));

let server: TestServer;
let sink: Sink;
let context: BrowserContext;
let page: Page;
/** Every request any page of the browser made, and every console answer's headers. */
const requests: string[] = [];
const answers: { url: string; status: number; headers: Record<string, string> }[] = [];
/** Every Content-Security-Policy violation a page reported, and every message it logged. */
const violations: string[] = [];
const messages: string[] = [];
let sinkFails = true;

async function deliver(payload: Record<string, unknown>): Promise<number> {
  const d = signedDelivery(payload);
  const response = await server.post(d.body, d.headers);
  expect(response.status).toBe(202);
  return ((await response.json()) as { id: number }).id;
}

const installation = (id: string, organization: string, name: string) => ({ id, organization: { id: organization, name }, appId: "app-carbon-ledger" });

beforeAll(async () => {
  sink = startSink([FORWARD_SECRET]);
  // The app is down for "suspended" events until the test says otherwise: they become dead letters.
  sink.answer = (received) => ({ status: sinkFails && received.event === "suspended" ? 503 : 200 });
  server = await startServer({
    forwarding: {
      destinations: [{ name: "app", url: sink.url, events: null }],
      secrets: [FORWARD_SECRET],
      timeoutMs: 2000,
      backoffMs: 50,
      maxBackoffMs: 100,
      maxAgeMs: 400,
      concurrency: 4,
    },
  }, { console: { sessionCheckMs: 100 } });
  await deliver({ event: "installed", installation: installation("inst-7f3a", "org-nordic-forest", "Nordic Forest Trust"), transaction: undefined });
  await deliver({ installation: installation("inst-7f3a", "org-nordic-forest", "Nordic Forest Trust"), transaction: { id: "tx-1001", status: "processed", type: "retire", amount: 120 } });
  await deliver({ installation: installation("inst-2c91", "org-andes-carbon", "Andes Carbon"), transaction: { id: "tx-1002", status: "pending_queue", type: "transfer", amount: 40 } });
  await deliver({ event: "suspended", installation: installation("inst-2c91", "org-andes-carbon", "Andes Carbon"), transaction: undefined });
  await deliver({ installation: installation("inst-7f3a", "org-nordic-forest", "Nordic Forest Trust"), transaction: { id: "tx-1003", status: "processed", type: "transfer_retire", amount: 15.5 } });

  context = await chromium.launchPersistentContext(tempDir("icr-chromium-"), {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1200, height: 860 },
  });
  context.on("request", (request) => void requests.push(request.url()));
  context.on("console", (message) => void messages.push(`${message.type()}: ${message.text()} (${message.location().url})`));
  await context.exposeBinding("reportViolation", (_source, text: string) => void violations.push(text));
  await context.addInitScript(
    'document.addEventListener("securitypolicyviolation", (e) => window.reportViolation(`${location.pathname}: ${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`))',
  );
  context.on("response", (response) => {
    if (new URL(response.url()).pathname.startsWith("/console")) answers.push({ url: response.url(), status: response.status(), headers: response.headers() });
  });
  page = await context.newPage();
}, 30_000);

afterAll(async () => {
  await context?.close();
  await server?.stop();
  sink?.stop();
  console.log(`console screenshots: ${shots}`);
});

/** Waits (up to 5 s) for the first element of `locator` to contain `text` (or be exactly it). */
async function contains(locator: Locator, text: string, exact = false) {
  let last: string | null = null;
  try {
    await until(async () => {
      last = await locator.first().textContent({ timeout: 5000 });
      return exact ? last?.trim() === text : (last?.includes(text) ?? false);
    }, 5000, `${exact ? "exactly" : "text"} "${text}"`);
  } catch (error) {
    throw new Error(`${(error as Error).message}; last seen: ${last}; page ${page.url()}: ${(await page.content()).slice(0, 3000)}`);
  }
}

async function screenshot(name: string, options: { fullPage?: boolean } = {}) {
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: options.fullPage ?? true });
  return path;
}

/** To docs/ too, for the README, when asked (ICR_CONSOLE_SCREENSHOTS=docs). */
function forTheReadme(path: string, name: string) {
  if (process.env.ICR_CONSOLE_SCREENSHOTS === "docs") copyFileSync(path, join(import.meta.dir, "..", "docs", name));
}

test("the console in Chromium: login, filters, an event, live events, refusals, a replay, health, phone width, logout", async () => {
  // Login: the form, a wrong token, then the right one.
  await page.goto(`${server.url}/console`);
  expect(new URL(page.url()).pathname).toBe("/console/login");
  // The violation report works: markup the CSP forbids, put in by the test, is reported.
  await page.evaluate('document.body.insertAdjacentHTML("beforeend", `<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="">`)');
  await until(() => violations.length === 1, 5000, "the test's own violation reported");
  expect(violations[0]).toStartWith("/console/login: img-src blocked data");
  expect(messages.some((m) => m.includes("Content Security Policy"))).toBe(true);
  violations.length = 0;
  messages.length = 0;
  await page.reload();
  await page.getByLabel("Query token").fill("not-the-token");
  await page.getByRole("button", { name: "Log in" }).click();
  await contains(page.getByRole("alert"), "that is not the query token");
  expect(await context.cookies()).toEqual([]);
  await page.getByLabel("Query token").fill(QUERY_TOKEN);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL("**/console/events");

  const cookies = await context.cookies();
  expect(cookies).toHaveLength(1);
  expect(cookies[0]).toMatchObject({ name: "icr_console", path: "/console", httpOnly: true, secure: false, sameSite: "Strict", expires: -1 });
  expect(cookies[0]!.value).not.toContain(QUERY_TOKEN);
  // HttpOnly: the page's own script cannot read it. (Page scripts are given as text: the tests are
  // typed without the DOM's library.)
  expect(await page.evaluate<string>("document.cookie")).toBe("");

  // Filters: one organization's events only.
  const ids = () => page.locator("#event-rows tr td:first-child a").allTextContents();
  expect(await ids()).toEqual(["5", "4", "3", "2", "1"]);
  await page.getByLabel("Organization").fill("org-andes-carbon");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/organization=org-andes-carbon/);
  expect(await ids()).toEqual(["4", "3"]);
  await page.getByRole("link", { name: "Clear" }).click();
  await page.waitForURL((url) => url.search === "");

  // Live: a new delivery appears at the top, without a reload.
  await page.locator('#live[data-state="connected"]').waitFor();
  let navigations = 0;
  page.on("framenavigated", () => navigations++);
  const live = await deliver({ installation: installation("inst-9d04", "org-mekong-mangroves", "Mekong Mangroves"), transaction: { id: "tx-1004", status: "processed", type: "retire", amount: 75 } });
  await contains(page.locator("#event-rows tr").first(), `${live}`);
  await contains(page.locator("#event-rows tr").first(), "org-mekong-mangroves");
  expect(navigations).toBe(0);
  expect(await ids()).toEqual([`${live}`, "5", "4", "3", "2", "1"]);
  forTheReadme(await screenshot("events", { fullPage: false }), "console-events.png");

  // An event: its payload, its deliveries, its forwarding.
  await page.getByRole("link", { name: "2", exact: true }).click();
  await page.waitForURL("**/console/events/2");
  await contains(page.getByRole("heading", { level: 1 }), "Event 2", true);
  await contains(page.locator("pre.payload"), '"id": "tx-1001"');
  await page.getByRole("heading", { name: "Delivery 1" }).waitFor({ state: "visible" });
  await until(async () => (await page.reload(), (await page.locator("td[data-label=State]").first().textContent()) === "delivered"), 10_000, "event 2 delivered to the sink");
  forTheReadme(await screenshot("event", { fullPage: false }), "console-event.png");
  await screenshot("event-full");

  // Refused deliveries: a forgery, on the page with its reason and size.
  const forged = signedDelivery({}, { secret: "a forger's secret" });
  expect((await server.post(forged.body, forged.headers)).status).toBe(403);
  await page.getByRole("link", { name: "Refused deliveries" }).click();
  await until(async () => (await page.reload(), (await page.locator("table.refused tbody tr").count()) > 0), 5000, "the refusal on the page");
  await contains(page.locator("table.refused tbody tr").first(), "invalid_signature");
  await screenshot("refused");

  // Forwarding: the suspended event is a dead letter; the app is back; replay it from the page.
  await until(async () => ((await (await server.query("/forward/dead")).json()) as { deadLetters: unknown[] }).deadLetters.length === 1, 10_000, "a dead letter");
  sinkFails = false;
  await page.getByRole("link", { name: "Forwarding" }).click();
  await until(async () => (await page.locator("table.dead tbody tr").count()) === 1, 5000, "one dead letter on the page");
  await contains(page.locator("table.dead"), "HTTP 503");
  await screenshot("forwarding");
  await page.getByRole("button", { name: "Replay event 4" }).click();
  await contains(page.getByRole("status"), "Replay requested: 1 send");
  await until(() => sink.received.some((r) => r.eventId === 4), 10_000, "the replayed dead letter at the sink");
  await page.reload();
  await page.getByText("No dead letters.").waitFor({ state: "visible" });

  // Health.
  await page.getByRole("link", { name: "Health" }).click();
  await contains(page.getByRole("status"), "Ready");
  await page.locator("figure.chart svg").waitFor({ state: "visible" });
  await screenshot("health");

  // The keyboard: the first Tab reaches the skip link, which is then visible; focus shows.
  await page.keyboard.press("Tab");
  expect(await page.evaluate<string>("document.activeElement.textContent")).toBe("Skip to content");
  expect(await page.evaluate<string>("getComputedStyle(document.activeElement).outlineStyle")).toBe("solid");

  // Phone width: no sideways scrolling on any page.
  await page.setViewportSize({ width: 375, height: 740 });
  const noSidewaysScrolling = async (path: string) => {
    const { scrollWidth, clientWidth } = await page.evaluate<{ scrollWidth: number; clientWidth: number }>(
      "({ scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth })",
    );
    expect(`${path}: ${scrollWidth}`).toBe(`${path}: ${clientWidth}`);
  };
  for (const path of ["/console/events", "/console/events/1", "/console/refused", "/console/forwarding", "/console/health"]) {
    await page.goto(server.url + path);
    await noSidewaysScrolling(path);
    if (path === "/console/events/1") await screenshot("phone-event");
  }
  await page.goto(`${server.url}/console/events`);
  await screenshot("phone-events");

  // Logout ends the session, and the live list open in another tab says it has stopped.
  const other = await context.newPage();
  await other.goto(`${server.url}/console/events`);
  await other.locator('#live[data-state="connected"]').waitFor();
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL("**/console/login");
  expect(await context.cookies()).toEqual([]);
  await page.goto(`${server.url}/console/events`);
  expect(new URL(page.url()).pathname).toBe("/console/login");
  // The login form, still at phone width, with its error shown.
  await page.getByLabel("Query token").fill("not-the-token");
  await page.getByRole("button", { name: "Log in" }).click();
  await contains(page.getByRole("alert"), "that is not the query token");
  await noSidewaysScrolling("/console/login");
  await screenshot("phone-login");
  await other.locator('#live[data-state="stopped"]').waitFor({ timeout: 10_000 });
  expect(await other.locator("#live").textContent()).toBe("Live: stopped — reload or log in again.");
  await other.close();

  // No page broke its Content-Security-Policy, or logged anything but the refusals the test made.
  expect(violations).toEqual([]);
  expect(messages.filter((m) => !/^error: Failed to load resource: the server responded with a status of 40[13] /.test(m))).toEqual([]);
  console.log(`console messages of the pages: ${JSON.stringify(messages)}`);

  // Nothing left loopback, and every console answer had the security headers.
  expect(requests.length).toBeGreaterThan(20);
  for (const url of requests) expect(new URL(url).hostname).toBe("127.0.0.1");
  // The console's own icon, not the receiver's /favicon.ico.
  expect(requests.some((url) => new URL(url).pathname === "/favicon.ico")).toBe(false);
  for (const answer of answers) {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(`${answer.url} ${name}: ${answer.headers[name]}`).toBe(`${answer.url} ${name}: ${value}`);
  }
}, 60_000);
