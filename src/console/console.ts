// The operator's console at /console: server-rendered pages over the event log, behind a login
// with the query token. The session is a random id in an HttpOnly, SameSite=Strict cookie held in
// memory; every state-changing form carries the session's CSRF token and must come from the
// console's own origin. Wrong tokens count toward the webhook's per-client refusal limit.
import type { Server } from "bun";
import { statfsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { Elysia, t } from "elysia";
import { ReplayChoiceError, UnknownDestination, type ForwardProgress, type ReplaySelection } from "../forward/progress.ts";
import type { MinuteSeries } from "../http/activity.ts";
import { sameSecret } from "../http/auth.ts";
import { isLoopback, limitedAddress } from "../http/client-address.ts";
import type { ErrorPages } from "../http/errors.ts";
import type { RejectionLimiter } from "../http/rejection-limit.ts";
import { STREAM_PARAMETERS } from "../http/stream.ts";
import { FILTER_PARAMETERS, FilterError, parseEventFilter, type Consumers, type EventReader, type FilterValues, type LogInspection } from "../log/event-log.ts";
import type { Logger } from "../logger.ts";
import script from "./assets/console.js" with { type: "text" };
import stylesheet from "./assets/console.css" with { type: "text" };
import icon from "./assets/icon.svg" with { type: "text" };
import { BASE, errorPage, eventPage, eventsPage, forwardingPage, FORWARDING_STATE, healthPage, layout, loginPage, REPLAYABLE, refusedPage, replayNotice, type FilterForm, type HealthFacts, type Section } from "./pages.ts";
import { html } from "./html.ts";
import { Sessions, type Session } from "./sessions.ts";

export const SESSION_COOKIE = "icr_console";

/**
 * Sent with every console response, errors and redirects included. Nothing inline: scripts and
 * styles come from the console's own paths; the chart is SVG markup; the live list reads the
 * event stream on the same origin.
 */
export const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  // Not no-referrer: under it browsers send "Origin: null" on the console's own posts, and one
  // without Sec-Fetch-Site (Safari before 16.4) could not log in. The pages link nowhere else.
  "referrer-policy": "same-origin",
  "cache-control": "no-store",
};

export interface ConsoleOptions {
  queryToken: string;
  events: EventReader;
  consumers: Consumers;
  /** The rejection ring and row counts, opened on first use. */
  inspection: () => LogInspection;
  /** Shared with the webhook: a wrong token is a refusal like a forged delivery. */
  limiter: RejectionLimiter;
  /** Opens an event stream for an authenticated request (the query API's hub). */
  openStream: (request: Request, server: Server<unknown> | null, options: { named: boolean }) => Response;
  forwardProgress?: ForwardProgress;
  health: {
    databasePath: string;
    version: string;
    /** Unix seconds. */
    startedAt: number;
    writable: () => boolean;
    commitFailing: () => boolean;
    openStreams: () => number;
    perMinute: MinuteSeries;
  };
  sessions?: Sessions;
  /** How often a live stream checks that its session goes on (ms). */
  sessionCheckMs?: number;
  logger: Logger;
}

/** The peer's address; behind a reverse proxy on the same machine, that proxy's (loopback). */
const peerOf = (request: Request, server: Server<unknown> | null) => server?.requestIP(request)?.address ?? "unknown";

/**
 * Whether the browser reached the console over HTTPS: the request's own scheme, or a reverse
 * proxy on this machine (a loopback peer) saying so in X-Forwarded-Proto. The header is believed
 * from loopback only: anyone else could send it.
 */
export function overHttps(request: Request, peer: string): boolean {
  if (new URL(request.url).protocol === "https:") return true;
  return isLoopback(peer) && request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase() === "https";
}

/**
 * A state-changing request must come from the console's own pages. A browser says where a request
 * comes from in Sec-Fetch-Site, which pages cannot forge: it decides when present. Otherwise the
 * Origin is compared with the Host the browser used (or, from a proxy on this machine,
 * X-Forwarded-Host); "Origin: null" (a sandboxed frame, a redirect across origins) proves nothing
 * and is refused. Clients that send neither (curl) are not browsers carrying someone else's
 * cookie, and still need the CSRF token.
 */
export function sameOrigin(request: Request, peer: string): boolean {
  const site = request.headers.get("sec-fetch-site");
  if (site !== null) return site === "same-origin" || site === "none";
  const origin = request.headers.get("origin");
  if (origin === null) return true;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  const forwardedHost = isLoopback(peer) ? request.headers.get("x-forwarded-host")?.split(",")[0]?.trim() : undefined;
  return host !== "" && host === (forwardedHost ?? request.headers.get("host"));
}

function cookieValue(request: Request, name: string): string | undefined {
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return undefined;
}

const htmlResponse = (body: string, status = 200, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { "content-type": "text/html; charset=utf-8", ...headers } });
const redirect = (location: string, headers: Record<string, string> = {}) => new Response(null, { status: 303, headers: { location, ...headers } });

/**
 * The filter fields the form sent: empty ones are not filters, unknown ones are ignored. `query`
 * carries them to the next page; `streamQuery` to the live stream, which takes its own parameters
 * only (no page size) and refuses any other.
 */
function filterValues(url: URL): { values: FilterValues; form: FilterForm; query: URLSearchParams; streamQuery: URLSearchParams } {
  const values: FilterValues = {};
  const query = new URLSearchParams();
  const streamQuery = new URLSearchParams();
  // Always newest first: the order is not the page's to change.
  for (const name of FILTER_PARAMETERS.filter((p) => p !== "order")) {
    const value = url.searchParams.get(name);
    if (value === null || value === "") continue;
    values[name] = value;
    if (name === "after") continue;
    query.set(name, value);
    if (STREAM_PARAMETERS.includes(name)) streamQuery.set(name, value);
  }
  const { event, organization, installation, since, until, parsed } = values;
  return { values, form: { event, organization, installation, since, until, parsed }, query, streamQuery };
}

function freeDisk(path: string): number | null {
  try {
    const fs = statfsSync(dirname(path));
    return fs.bavail * fs.bsize;
  } catch {
    return null;
  }
}

/**
 * The stream's body for as long as `stillValid` holds, checked every `checkMs`: a live list must
 * stop when its session ends (a logout elsewhere, the absolute limit), not go on for days.
 */
function whileValid(stream: Response, stillValid: () => boolean, checkMs: number): Response {
  const reader = stream.body!.getReader();
  let timer: Timer | undefined;
  let open = true;
  const end = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    clearInterval(timer);
    if (open) controller.close();
    open = false;
    void reader.cancel();
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      timer = setInterval(() => stillValid() || end(controller), checkMs);
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) end(controller);
      else if (open) controller.enqueue(value);
    },
    cancel() {
      clearInterval(timer);
      open = false;
      return reader.cancel();
    },
  });
  return new Response(body, { status: stream.status, headers: stream.headers });
}

/** An event id or a refusal's number as the pages write it: no sign, exponent, fraction, hex or leading zero. */
const PositiveId = t.String({ pattern: "^[1-9][0-9]{0,15}$" });
const EventParams = t.Object({ id: PositiveId });

const fileSize = (path: string) => statSync(path, { throwIfNoEntry: false })?.size ?? 0;

export function operatorConsole(options: ConsoleOptions) {
  const { queryToken, events, consumers, limiter, forwardProgress, health, logger } = options;
  const sessions = options.sessions ?? new Sessions();
  const sessionCheckMs = options.sessionCheckMs ?? 10_000;
  let inspection: LogInspection | undefined;
  const inspect = () => (inspection ??= options.inspection());

  const cookie = (value: string, request: Request, peer: string, maxAgeSeconds?: number) =>
    [
      `${SESSION_COOKIE}=${value}`,
      "HttpOnly",
      "SameSite=Strict",
      `Path=${BASE}`,
      ...(maxAgeSeconds === undefined ? [] : [`Max-Age=${maxAgeSeconds}`]),
      ...(overHttps(request, peer) ? ["Secure"] : []),
    ].join("; ");

  const sessionOf = (request: Request) => sessions.use(cookieValue(request, SESSION_COOKIE));

  /** A page for a logged-in operator, or the way to the login form. */
  const page =
    (
      render: (context: {
        request: Request;
        url: URL;
        session: Session;
        server: Server<unknown> | null;
        params: Record<string, string>;
        query: Record<string, string | undefined>;
      }) => Response,
    ) =>
    ({ request, server, params, query }: { request: Request; server: Server<unknown> | null; params?: Record<string, string>; query?: Record<string, string | undefined> }) => {
      const session = sessionOf(request);
      if (session === null) return redirect(`${BASE}/login`);
      return render({ request, url: new URL(request.url), session, server, params: params ?? {}, query: query ?? {} });
    };

  /** A state-changing form's post: a session, its CSRF token and the console's own origin. */
  const action =
    <B extends { csrf?: string }>(perform: (context: { body: B; session: Session; params: Record<string, string> }) => Response) =>
    ({ request, server, body, params }: { request: Request; server: Server<unknown> | null; body: B | null | undefined; params?: Record<string, string> }) => {
      const session = sessionOf(request);
      if (session === null) return htmlResponse(errorPage(401, "Your session has ended: log in again."), 401);
      if (!body || !sameOrigin(request, peerOf(request, server)) || !sameSecret(body.csrf ?? "", session.csrfToken)) {
        logger("warn", "console request refused", { path: new URL(request.url).pathname, reason: "csrf" });
        return htmlResponse(errorPage(403, "This form did not come from this console (a missing or wrong CSRF token, or another origin). Reload the page and try again."), 403);
      }
      return perform({ body, session, params: params ?? {} });
    };

  const render = (section: Section, title: string, session: Session, body: Parameters<typeof layout>[0]["body"], status = 200) => {
    const notice = session.flash;
    session.flash = null;
    return htmlResponse(layout({ title, section, csrfToken: session.csrfToken, notice, body }), status);
  };

  const replay = (selection: ReplaySelection, destination: string | undefined): number | Response => {
    if (forwardProgress === undefined) return htmlResponse(errorPage(404, "Forwarding is off: no destination is configured."), 404);
    try {
      return forwardProgress.replay(selection, destination);
    } catch (error) {
      if (error instanceof UnknownDestination) return htmlResponse(errorPage(404, error.message), 404);
      if (error instanceof ReplayChoiceError) return htmlResponse(errorPage(400, "Nothing to replay was named."), 400);
      throw error;
    }
  };

  // Routes take it as t.Optional(ReplayForm): a form with no field at all is then refused for its
  // missing CSRF token (403), not as a body that failed its schema.
  const ReplayForm = t.Object({ csrf: t.Optional(t.String()), destination: t.Optional(t.String({ minLength: 1 })), id: t.Optional(PositiveId) });

  // Small plugins, composed below under the one prefix and the one set of security headers.
  const assetFiles = new Elysia({ name: "console-assets" })
    .get("/assets/console.css", () => new Response(stylesheet, { headers: { "content-type": "text/css; charset=utf-8" } }))
    // Without an icon of its own, the browser asks for /favicon.ico, outside the console.
    .get("/assets/icon.svg", () => new Response(icon, { headers: { "content-type": "image/svg+xml" } }))
    .get("/assets/console.js", () => new Response(script, { headers: { "content-type": "text/javascript; charset=utf-8" } }));

  const signIn = new Elysia({ name: "console-login" })
    .get("/login", ({ request }) => (sessionOf(request) === null ? htmlResponse(loginPage()) : redirect(`${BASE}/events`)))
    .post(
      "/login",
      ({ request, server, body }) => {
        const peer = peerOf(request, server);
        const client = limitedAddress(request, peer);
        const tooMany = () =>
          htmlResponse(loginPage({ error: "too many refused attempts from this address; wait a minute." }), 429, { "retry-after": String(limiter.retryAfter(client)) });
        if (!sameOrigin(request, peer)) return htmlResponse(errorPage(403, "This login form did not come from this console."), 403);
        // Over the limit, even the right token is not tried: the answer must not tell.
        if (limiter.exhausted(client)) return tooMany();
        if (!sameSecret(body?.token ?? "", queryToken)) {
          logger("warn", "console login refused", { remoteAddress: peer, client });
          // Counted; never over the limit here, since an exhausted client was answered above.
          limiter.allow(client);
          return htmlResponse(loginPage({ error: "that is not the query token." }), 401);
        }
        const session = sessions.start();
        logger("info", "console login", { remoteAddress: peer });
        return redirect(`${BASE}/events`, { "set-cookie": cookie(session.id, request, peer) });
      },
      { body: t.Optional(t.Object({ token: t.Optional(t.String()) })) },
    )
    .post(
      "/logout",
      ({ request, server, body }) => {
        const peer = peerOf(request, server);
        const session = sessionOf(request);
        if (session !== null) {
          if (!sameOrigin(request, peer) || !sameSecret(body?.csrf ?? "", session.csrfToken)) return htmlResponse(errorPage(403, "This form did not come from this console."), 403);
          sessions.end(session.id);
        }
        return redirect(`${BASE}/login`, { "set-cookie": cookie("", request, peer, 0) });
      },
      { body: t.Optional(t.Object({ csrf: t.Optional(t.String()) })) },
    );

  const pages = new Elysia({ name: "console-pages" })
    .get("", () => redirect(`${BASE}/events`))
    .get("/", () => redirect(`${BASE}/events`))
    .get(
      "/events",
      page(({ url, session }) => {
        const { values, form, query, streamQuery } = filterValues(url);
        // Read before the page, so that an event committed in between comes over the stream
        // (the page's script drops one it already shows).
        const newest = events.list({ order: "desc", limit: 1 }).events[0]?.id ?? 0;
        let filter;
        try {
          filter = parseEventFilter({ ...values, order: "desc" });
        } catch (error) {
          if (!(error instanceof FilterError)) throw error;
          return render("events", "Events", session, eventsPage({ events: [], filters: form, query, next: null, stream: null, error: error.message }), 400);
        }
        const listed = events.list(filter);
        const stream = values.after === undefined ? new URLSearchParams([...streamQuery, ["after", String(newest)]]) : null;
        return render("events", "Events", session, eventsPage({ events: listed.events, filters: form, query, next: listed.next, stream }));
      }),
    )
    .get("/events/stream", ({ request, server }) => {
      const session = sessionOf(request);
      if (session === null) return htmlResponse(errorPage(401, "Log in first."), 401);
      // A page showing the live list is in use: each check restarts the idle time; the absolute
      // limit and a logout still end it.
      const stream = whileValid(options.openStream(request, server, { named: false }), () => sessions.use(session.id) !== null, sessionCheckMs);
      // The same headers as every console answer: its own (no-cache) would win over them.
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) stream.headers.set(name, value);
      return stream;
    })
    .get(
      "/events/:id",
      page(({ session, params }) => {
        const event = events.get(Number(params.id));
        if (event === null) return render("events", "No such event", session, errorBody(`There is no event ${params.id}.`), 404);
        return render("events", `Event ${event.id}`, session, eventPage({ event, forwarding: forwardProgress?.ofEvent(event.id) ?? null, csrfToken: session.csrfToken }));
      }),
      { params: EventParams },
    )
    .get(
      "/refused",
      page(({ session, query }) => {
        const before = query.before === undefined ? undefined : Number(query.before);
        return render("refused", "Refused deliveries", session, refusedPage(inspect().rejections({ limit: 50, before })));
      }),
      { query: t.Object({ before: t.Optional(PositiveId) }) },
    )
    .get(
      "/forwarding",
      page(({ session }) =>
        render(
          "forwarding",
          "Forwarding",
          session,
          forwardingPage({
            destinations: forwardProgress?.status() ?? null,
            deadLetters: forwardProgress?.deadLetters() ?? [],
            consumers: consumers.list(),
            csrfToken: session.csrfToken,
          }),
        ),
      ),
    )
    .get(
      "/health",
      page(({ session }) => {
        const ready = health.writable();
        const facts: HealthFacts = {
          ready,
          notReadyBecause: ready ? null : health.commitFailing() ? "the last commit failed (a full disk, or a lock held too long)." : "the log's write lock is held by another process (a sqlite3 shell, a migration?).",
          version: health.version,
          uptimeSeconds: Date.now() / 1000 - health.startedAt,
          startedAt: new Date(health.startedAt * 1000).toISOString(),
          rows: inspect().rows(),
          databaseBytes: fileSize(health.databasePath),
          walBytes: fileSize(`${health.databasePath}-wal`),
          freeDiskBytes: freeDisk(health.databasePath),
          openStreams: health.openStreams(),
          minutes: health.perMinute.last(),
        };
        return render("health", "Health", session, healthPage(facts));
      }),
    );

  const actions = new Elysia({ name: "console-actions" })
    .post(
      "/events/:id/replay",
      action<typeof ReplayForm.static>(({ body, session, params }) => {
        const id = Number(params.id);
        if (events.get(id) === null) return htmlResponse(errorPage(404, `There is no event ${params.id}.`), 404);
        // The page offers a replay only where it cannot send the event twice; a post says the same.
        const inFlight = forwardProgress
          ?.ofEvent(id)
          ?.filter((f) => (body.destination === undefined || f.destination === body.destination) && f.state !== "not_sent" && !REPLAYABLE.has(f.state));
        if (inFlight !== undefined && inFlight.length > 0) {
          const where = inFlight.map((f) => `${f.destination} (${FORWARDING_STATE[f.state]})`).join(", ");
          return htmlResponse(errorPage(409, `Event ${id} is still being sent to ${where}: a replay now could send it twice.`), 409);
        }
        const asked = replay({ id }, body.destination);
        if (asked instanceof Response) return asked;
        session.flash = replayNotice(asked);
        return redirect(`${BASE}/events/${id}`);
      }),
      { params: EventParams, body: t.Optional(ReplayForm) },
    )
    .post(
      "/forwarding/replay",
      action<typeof ReplayForm.static>(({ body, session }) => {
        const asked = replay(body.id === undefined ? { dead: true } : { id: Number(body.id) }, body.destination);
        if (asked instanceof Response) return asked;
        session.flash = replayNotice(asked);
        return redirect(`${BASE}/forwarding`);
      }),
      { body: t.Optional(ReplayForm) },
    );

  const plugin = new Elysia({ name: "console", prefix: BASE })
    .mapResponse(({ set }) => {
      Object.assign(set.headers, SECURITY_HEADERS);
    })
    .use(assetFiles)
    .use(signIn)
    .use(pages)
    .use(actions)
    .all("/*", ({ request }) => htmlResponse(errorPage(404, `Nothing at ${new URL(request.url).pathname}.`), 404));
  return { plugin, close: () => inspection?.close() };
}

/** The receiver's errors (a path or form field failing its schema, a body that does not parse) under /console, as pages. */
export const consoleErrorPages: ErrorPages = {
  prefix: `${BASE}/`,
  render: (status, message) => htmlResponse(errorPage(status, `${message[0]!.toUpperCase()}${message.slice(1)}.`), status),
};

const errorBody = (message: string) => html`<p class="notice error" role="alert">${message}</p>`;
