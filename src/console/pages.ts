// The console's pages, rendered on the server. Every value goes through `html`, which escapes it;
// states are said in words (and marked with a class for the stylesheet), never by colour alone.
import type { DestinationStatus, DeadLetter, EventForwarding } from "../forward/progress.ts";
import type { MinuteCounts } from "../http/activity.ts";
import type { ConsumerView, DeliveryView, EventView, RejectionView } from "../log/event-log.ts";
import { activityChart } from "./chart.ts";
import { bytes, duration, indentJson } from "./format.ts";
import { html, type Html } from "./html.ts";

export const BASE = "/console";

export type Section = "events" | "refused" | "forwarding" | "health";

const SECTIONS: [Section, string][] = [
  ["events", "Events"],
  ["refused", "Refused deliveries"],
  ["forwarding", "Forwarding"],
  ["health", "Health"],
];

/** The hidden field every state-changing form carries. */
const csrfField = (csrfToken: string) => html`<input type="hidden" name="csrf" value="${csrfToken}">`;

/** What the last action did, said once on the page it led to. */
export const replayNotice = (sends: number) => `Replay requested: ${sends} ${sends === 1 ? "send" : "sends"}; forwarding picks it up within a second.`;

export function layout({ title, section, csrfToken, notice, body }: { title: string; section: Section; csrfToken: string; notice: string | null; body: Html }): string {
  const nav = SECTIONS.map(
    ([name, label]) => html`<li><a href="${BASE}/${name}"${name === section ? html` aria-current="page"` : ""}>${label}</a></li>`,
  );
  return document(
    title,
    html`<header class="top">
  <a class="skip" href="#main">Skip to content</a>
  <p class="brand">icr-receiver</p>
  <nav aria-label="Console"><ul>${nav}</ul></nav>
  <form method="post" action="${BASE}/logout" class="logout">${csrfField(csrfToken)}<button type="submit">Log out</button></form>
</header>
<main id="main">
<h1>${title}</h1>
${notice !== null && html`<p class="notice ok" role="status">${notice}</p>`}
${body}
</main>`,
  );
}

function document(title: string, body: Html): string {
  return `<!doctype html>\n${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · icr-receiver console</title>
<link rel="stylesheet" href="${BASE}/assets/console.css">
<link rel="icon" href="${BASE}/assets/icon.svg" type="image/svg+xml">
<script src="${BASE}/assets/console.js" defer></script>
</head>
<body>
${body}
</body>
</html>`}`;
}

// The hidden username field lets a password manager file the token under this console (Chromium
// asks every password form for one); the login ignores it.
export function loginPage({ error }: { error?: string } = {}): string {
  return document(
    "Log in",
    html`<main id="main" class="login">
<h1>icr-receiver console</h1>
${error && html`<p class="notice error" role="alert"><strong>Not logged in:</strong> ${error}</p>`}
<form method="post" action="${BASE}/login">
  <input name="username" value="icr-receiver" autocomplete="username" hidden>
  <label for="token">Query token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  <p class="hint">The receiver's query token (the file <code>query-token</code>). The console keeps only a session cookie, never the token; your browser may offer to save the token as a password, which is yours to accept or not.</p>
  <button type="submit">Log in</button>
</form>
</main>`,
  );
}

export function errorPage(status: number, message: string): string {
  return document(
    `Error ${status}`,
    html`<main id="main"><h1>Error ${status}</h1><p class="notice error" role="alert">${message}</p><p><a href="${BASE}/events">Back to the events</a></p></main>`,
  );
}

const time = (iso: string | null) => (iso === null ? html`<span class="muted">none</span>` : html`<time datetime="${iso}">${iso.replace("T", " ").replace(/\.\d+Z$/, "Z")}</time>`);
const none = html`<span class="muted">none</span>`;
const text = (value: string | null | undefined) => (value === null || value === undefined ? none : value);
const eventName = (event: EventView) => (event.parsed ? event.event : html`<span class="state warn">unparsed: ${event.unparsedReason}</span>`);

/** The filters of GET /events, as the form shows them. */
export interface FilterForm {
  event?: string;
  organization?: string;
  installation?: string;
  since?: string;
  until?: string;
  parsed?: string;
}

function filterForm(values: FilterForm): Html {
  const field = (name: keyof FilterForm, label: string, hint: string) =>
    html`<div class="field"><label for="f-${name}">${label}</label><input id="f-${name}" name="${name}" value="${values[name] ?? ""}" placeholder="${hint}"></div>`;
  const option = (value: string, label: string) => html`<option value="${value}"${(values.parsed ?? "") === value ? html` selected` : ""}>${label}</option>`;
  return html`<form method="get" action="${BASE}/events" class="filters" role="search">
${field("event", "Event", "warehouseTransaction")}
${field("organization", "Organization", "organization id")}
${field("installation", "Installation", "installation id")}
${field("since", "Since", "2h, 7d or 2026-11-30T12:00Z")}
${field("until", "Until", "ISO-8601 or an age")}
<div class="field"><label for="f-parsed">Parsed</label><select id="f-parsed" name="parsed">${option("", "all events")}${option("true", "parsed only")}${option("false", "unparsed only")}</select></div>
<div class="actions"><button type="submit">Filter</button> <a href="${BASE}/events">Clear</a></div>
</form>`;
}

function eventRow(event: EventView): Html {
  return html`<tr>
<td data-label="Id"><a href="${BASE}/events/${event.id}">${event.id}</a></td>
<td data-label="Received">${time(event.receivedAt)}</td>
<td data-label="Event">${eventName(event)}</td>
<td data-label="Organization">${text(event.organizationId)}</td>
<td data-label="Installation">${text(event.installationId)}</td>
<td data-label="Deliveries">${event.deliveryCount}${event.envelopeMismatch ? html` <span class="state warn">envelope mismatch</span>` : ""}</td>
</tr>`;
}

export function eventsPage(page: {
  events: EventView[];
  filters: FilterForm;
  /** The query string of the filters, for the pager. */
  query: URLSearchParams;
  next: string | null;
  /** Set on the first page: the live stream's query (its filters, and the newest event when it was read). */
  stream: URLSearchParams | null;
  error?: string;
}): Html {
  const withQuery = (extra: Record<string, string>) => {
    const query = new URLSearchParams(page.query);
    for (const [k, v] of Object.entries(extra)) query.set(k, v);
    return query.toString();
  };
  const stream = page.stream === null ? null : `${BASE}/events/stream?${page.stream.toString()}`;
  return html`${filterForm(page.filters)}
${page.error && html`<p class="notice error" role="alert"><strong>Filter not applied:</strong> ${page.error}</p>`}
${
  stream === null
    ? html`<p class="live"><a href="${BASE}/events?${new URLSearchParams(page.query).toString()}">Newest events (live)</a></p>`
    : html`<p class="live" id="live" role="status" data-state="off">Live updates need JavaScript; reload for new events.</p>`
}
<table class="events">
<caption>Events, newest first</caption>
<thead><tr><th scope="col">Id</th><th scope="col">Received</th><th scope="col">Event</th><th scope="col">Organization</th><th scope="col">Installation</th><th scope="col">Deliveries</th></tr></thead>
<tbody id="event-rows"${stream === null ? "" : html` data-stream="${stream}"`}>
${page.events.map(eventRow)}
</tbody>
</table>
${page.events.length === 0 ? html`<p class="empty" id="no-events">No events match.</p>` : ""}
<nav class="pager" aria-label="Pages">${page.next === null ? html`<span class="muted">No older events.</span>` : html`<a href="${BASE}/events?${withQuery({ after: page.next })}" rel="next">Older events</a>`}</nav>`;
}

export const FORWARDING_STATE: Record<EventForwarding["state"], string> = {
  not_sent: "not sent (the destination's event filter skips it)",
  waiting: "waiting",
  retrying: "failed, retrying",
  replay: "replay requested",
  dead: "dead letter",
  delivered: "delivered",
};
/**
 * Where a replay cannot send something twice: the destination has given up on it or taken it.
 * While it is waiting, retrying or already replayed, the forwarder will send it anyway.
 */
export const REPLAYABLE: ReadonlySet<EventForwarding["state"]> = new Set(["dead", "delivered"]);

/** Whether "every destination" may be asked at once: more than one takes the event, and none has it in flight. */
const replayableEverywhere = (forwarding: EventForwarding[]) => {
  const taking = forwarding.filter((f) => f.state !== "not_sent");
  return taking.length > 1 && taking.every((f) => REPLAYABLE.has(f.state));
};

const stateClass = (state: EventForwarding["state"]) => (state === "delivered" ? "ok" : state === "dead" || state === "retrying" ? "bad" : "warn");

function delivery(d: DeliveryView, n: number): Html {
  const headers = Object.entries(d.headers).map(([name, value]) => html`<dt>${name}</dt><dd>${value}</dd>`);
  return html`<article class="delivery">
<h3>Delivery ${n}${d.duplicate ? " (a repeat)" : ""}</h3>
<dl class="facts">
<dt>Received</dt><dd>${time(d.receivedAt)}</dd>
<dt>From address</dt><dd>${text(d.remoteAddress)}</dd>
<dt>Secret label</dt><dd>${d.secretLabel}</dd>
<dt>Envelope</dt><dd>${d.envelopeMismatch ? html`<span class="state warn">mismatch: unsigned top-level fields disagree with the signed payload</span>` : "matches the signed payload"}</dd>
</dl>
<details><summary>Headers (${Object.keys(d.headers).length})</summary><dl class="headers">${headers}</dl></details>
<details><summary>Raw body (${bytes(Buffer.byteLength(d.rawBody))})</summary><pre class="wrap">${d.rawBody}</pre></details>
</article>`;
}

export function eventPage({
  event,
  forwarding,
  csrfToken,
}: {
  event: EventView & { deliveries: DeliveryView[] };
  forwarding: EventForwarding[] | null;
  csrfToken: string;
}): Html {
  const payload = event.payloadJson !== null ? indentJson(event.payloadJson) : event.payloadText;
  const replayForm = (destination: string | null, label: string) =>
    html`<form method="post" action="${BASE}/events/${event.id}/replay" class="inline">${csrfField(csrfToken)}${destination !== null && html`<input type="hidden" name="destination" value="${destination}">`}<button type="submit">${label}</button></form>`;
  return html`<dl class="facts">
<dt>Received</dt><dd>${time(event.receivedAt)}</dd>
<dt>Event</dt><dd>${eventName(event)}</dd>
<dt>Organization</dt><dd>${text(event.organizationId)}</dd>
<dt>Installation</dt><dd>${text(event.installationId)}</dd>
<dt>App</dt><dd>${text(event.appId)}</dd>
${event.transaction !== null && html`<dt>Transaction</dt><dd>${text(event.transaction.id)} · ${text(event.transaction.type)} · ${text(event.transaction.status)} · amount ${event.transaction.amount ?? "none"}</dd>`}
<dt>Secret label</dt><dd>${event.secretLabel}</dd>
<dt>Deliveries</dt><dd>${event.deliveryCount}</dd>
</dl>
<h2>Signed payload</h2>
${payload === null || payload === undefined ? html`<p class="muted">The signed data is not base64 or not UTF-8 text: see the raw body of a delivery.</p>` : html`<pre class="wrap payload">${payload}</pre>`}
<h2>Deliveries</h2>
${event.deliveries.map((d, i) => delivery(d, i + 1))}
<h2>Forwarding</h2>
${
  forwarding === null
    ? html`<p class="muted">Forwarding is off: no destination is configured.</p>`
    : html`<table>
<thead><tr><th scope="col">Destination</th><th scope="col">State</th><th scope="col">Failed attempts</th><th scope="col">Last error</th><th scope="col">Next attempt</th><th scope="col">Action</th></tr></thead>
<tbody>${forwarding.map(
        (f) => html`<tr>
<td data-label="Destination">${f.destination}</td>
<td data-label="State"><span class="state ${stateClass(f.state)}">${FORWARDING_STATE[f.state]}</span></td>
<td data-label="Failed attempts">${f.attempts}</td>
<td data-label="Last error">${text(f.lastError)}</td>
<td data-label="Next attempt">${time(f.nextAttemptAt)}</td>
<td data-label="Action">${REPLAYABLE.has(f.state) ? replayForm(f.destination, `Replay to ${f.destination}`) : f.state === "not_sent" ? none : html`<span class="muted">none while it is ${FORWARDING_STATE[f.state]}: a replay now could send it twice</span>`}</td>
</tr>`,
      )}</tbody>
</table>
${replayableEverywhere(forwarding) ? replayForm(null, "Replay to every destination") : ""}`
}`;
}

export function refusedPage({ rejections, next }: { rejections: RejectionView[]; next: number | null }): Html {
  return html`<p>Deliveries the receiver refused, newest first: nothing of them was stored but these facts (never the body: its size and SHA-256). The log keeps the last 10,000; refusals answered 429 (an address over its limit) are not kept.</p>
<table class="refused">
<thead><tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">Address</th><th scope="col">Status</th><th scope="col">Reason</th><th scope="col">Size</th><th scope="col">Body SHA-256</th></tr></thead>
<tbody>${rejections.map(
    (r) => html`<tr>
<td data-label="#">${r.seq}</td>
<td data-label="Time">${time(r.receivedAt)}</td>
<td data-label="Address">${text(r.remoteAddress)}</td>
<td data-label="Status">${r.status}</td>
<td data-label="Reason">${r.reason}</td>
<td data-label="Size">${bytes(r.bodySize)}</td>
<td data-label="Body SHA-256" class="hash">${text(r.bodySha256)}</td>
</tr>`,
  )}</tbody>
</table>
${rejections.length === 0 ? html`<p class="empty">No refused deliveries.</p>` : ""}
<nav class="pager" aria-label="Pages">${next === null ? html`<span class="muted">No older refusals.</span>` : html`<a href="${BASE}/refused?before=${next}" rel="next">Older refusals</a>`}</nav>`;
}

export function forwardingPage({
  destinations,
  deadLetters,
  consumers,
  csrfToken,
}: {
  destinations: DestinationStatus[] | null;
  deadLetters: DeadLetter[];
  consumers: ConsumerView[];
  csrfToken: string;
}): Html {
  const replayForm = (fields: Record<string, string>, label: string) =>
    html`<form method="post" action="${BASE}/forwarding/replay" class="inline">${csrfField(csrfToken)}${Object.entries(fields).map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}<button type="submit">${label}</button></form>`;
  return html`<h2>Destinations</h2>
${
  destinations === null
    ? html`<p class="muted">Forwarding is off: no destination is configured (--forward-url, --forwards-file).</p>`
    : html`<table>
<thead><tr><th scope="col">Destination</th><th scope="col">State</th><th scope="col">Lag (events)</th><th scope="col">Retrying</th><th scope="col">Oldest undelivered</th><th scope="col">Delivered</th><th scope="col">Dead letters</th></tr></thead>
<tbody>${destinations.map(
        (d) => html`<tr>
<td data-label="Destination">${d.name}<br><span class="muted url">${d.url}</span></td>
<td data-label="State">${d.deadLetters > 0 ? html`<span class="state bad">dead letters</span>` : d.retrying > 0 ? html`<span class="state warn">retrying</span>` : d.pending > 0 ? html`<span class="state warn">catching up</span>` : html`<span class="state ok">up to date</span>`}</td>
<td data-label="Lag (events)">${d.pending}</td>
<td data-label="Retrying">${d.retrying}</td>
<td data-label="Oldest undelivered">${d.oldestUndeliveredAgeSeconds === null ? none : `${duration(d.oldestUndeliveredAgeSeconds)} old`}</td>
<td data-label="Delivered">${d.delivered}</td>
<td data-label="Dead letters">${d.deadLetters}${d.deadLetters > 0 ? html` ${replayForm({ destination: d.name }, `Replay all of ${d.name}`)}` : ""}</td>
</tr>`,
      )}</tbody>
</table>`
}
<h2>Dead letters</h2>
${
  deadLetters.length === 0
    ? html`<p class="empty">No dead letters.</p>`
    : html`${replayForm({}, "Replay all dead letters")}
<table class="dead">
<thead><tr><th scope="col">Event</th><th scope="col">Destination</th><th scope="col">Received</th><th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col">Dead since</th><th scope="col">Action</th></tr></thead>
<tbody>${deadLetters.map(
        (d) => html`<tr>
<td data-label="Event"><a href="${BASE}/events/${d.eventId}">${d.eventId}</a> ${text(d.event)}</td>
<td data-label="Destination">${d.destination}</td>
<td data-label="Received">${time(d.receivedAt)}</td>
<td data-label="Attempts">${d.attempts}</td>
<td data-label="Last error">${d.lastError}</td>
<td data-label="Dead since">${time(d.deadAt)}</td>
<td data-label="Action">${replayForm({ id: String(d.eventId), destination: d.destination }, `Replay event ${d.eventId}`)}</td>
</tr>`,
      )}</tbody>
</table>`
}
<h2>Consumers</h2>
${
  consumers.length === 0
    ? html`<p class="empty">No named consumers (they appear with their first GET /consumers/:name/events).</p>`
    : html`<table>
<thead><tr><th scope="col">Consumer</th><th scope="col">Position</th><th scope="col">Lag (events)</th><th scope="col">Last acknowledged</th></tr></thead>
<tbody>${consumers.map(
        (c) => html`<tr><td data-label="Consumer">${c.name}</td><td data-label="Position">${c.position}</td><td data-label="Lag (events)">${c.lag === 0 ? html`0 <span class="state ok">caught up</span>` : c.lag}</td><td data-label="Last acknowledged">${time(c.updatedAt)}</td></tr>`,
      )}</tbody>
</table>`
}`;
}

export interface HealthFacts {
  ready: boolean;
  /** Why not ready, in words; null when ready. */
  notReadyBecause: string | null;
  version: string;
  uptimeSeconds: number;
  startedAt: string;
  rows: { events: number; deliveries: number; rejections: number };
  databaseBytes: number;
  walBytes: number;
  /** Free bytes on the log's file system (for an unprivileged user); null when unknown. */
  freeDiskBytes: number | null;
  openStreams: number;
  minutes: MinuteCounts[];
}

export function healthPage(facts: HealthFacts): Html {
  const lastFull = facts.minutes.at(-2) ?? facts.minutes.at(-1);
  const commitsPerSecond = lastFull ? lastFull.commits / 60 : 0;
  const latencyMs = lastFull && lastFull.commits > 0 ? (lastFull.commitSeconds / lastFull.commits) * 1000 : null;
  const accepted = facts.minutes.reduce((n, m) => n + m.accepted, 0);
  const refused = facts.minutes.reduce((n, m) => n + m.refused, 0);
  const hours = facts.minutes.length / 60;
  return html`<p class="notice ${facts.ready ? "ok" : "error"}" role="status"><strong>${facts.ready ? "Ready" : "Not ready"}:</strong> ${facts.ready ? "the log takes deliveries." : facts.notReadyBecause}</p>
<dl class="facts">
<dt>Commits per second</dt><dd>${commitsPerSecond.toFixed(2)} (over the last full minute)</dd>
<dt>Commit latency</dt><dd>${latencyMs === null ? "no commit in the last full minute" : `${latencyMs.toFixed(1)} ms on average`}</dd>
<dt>Rows</dt><dd>${facts.rows.events} events, ${facts.rows.deliveries} deliveries, ${facts.rows.rejections} refused deliveries kept</dd>
<dt>Database</dt><dd>${bytes(facts.databaseBytes)}, write-ahead log ${bytes(facts.walBytes)}</dd>
<dt>Free disk</dt><dd>${facts.freeDiskBytes === null ? "unknown" : bytes(facts.freeDiskBytes)}</dd>
<dt>Event streams open</dt><dd>${facts.openStreams}</dd>
<dt>Version</dt><dd>${facts.version}</dd>
<dt>Uptime</dt><dd>${duration(facts.uptimeSeconds)} (since ${time(facts.startedAt)})</dd>
</dl>
<h2>Deliveries and refusals per minute</h2>
<p>Over the last ${hours} hours${facts.uptimeSeconds < hours * 3600 ? " (counted since this receiver started)" : ""}: ${accepted} accepted, ${refused} refused.</p>
${activityChart(facts.minutes, Date.parse(facts.startedAt))}`;
}
