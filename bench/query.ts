// The long-lived app (issue 17): on a log of millions of events (big-log.ts) against the same
// receiver on an empty log, in the same run, start-up to the first 202 and idle RSS; then GET
// /events pages (filtered by event and organization, 100 per page) from the first to the 1,000th
// through the cursor, every page checked; then `icr-receiver check` on that log.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { checkLog, type BuiltLog } from "./big-log.ts";
import { eventSpec, logDelivery, LOG_FIXTURE_SECRET, QUERY_EVENT, QUERY_ORGANIZATION, type EventSpec } from "./log-generator.ts";
import { memoryOf, RssSampler, sleep, stop } from "./processes.ts";
import { serverLogTail, startServer, type Paths, type RunningServer, type Secrets } from "./servers.ts";

const PAGE_SIZE = 100;

/** Receiver starts on each log, alternating empty and large; the figures are their medians. */
const STARTS = 3;

export interface StartFigures {
  /** Spawn to /healthz 200. */
  readyMs: number;
  /** Spawn to the 202 of a new delivery posted as soon as /healthz answered. */
  firstAcceptMs: number;
  /** VmRSS 1 s after that 202, nothing asked meanwhile. */
  idleRssBytes: number;
}

export interface QueryResult {
  log: BuiltLog;
  /** `icr-receiver check` on the log at the end of this run (the runs add to the cached log). */
  checkSeconds: number;
  /** Bytes of the database (and WAL) at the end of this run, per event. */
  bytesPerEvent: number;
  /** Medians of the STARTS starts on each log, and each start. */
  empty: StartFigures & { starts: StartFigures[] };
  large: StartFigures & { starts: StartFigures[] };
  peakRssBytes: number;
  firstPage: LatencySummary;
  walk: LatencySummary & { pages: number };
  lastPage: LatencySummary & { page: number };
  problems: string[];
}

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  max: number;
}

export function summarize(samples: number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
  return { count: sorted.length, p50: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1] ?? NaN };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

interface Page {
  events: { id: number; event: string; organizationId: string | null }[];
  next: string | null;
}

/** One GET /events; the time covers the request and reading the whole body. */
async function getPage(base: string, token: string, after: string | null): Promise<{ ms: number; page: Page }> {
  const query = new URLSearchParams({ event: QUERY_EVENT, organization: QUERY_ORGANIZATION, limit: String(PAGE_SIZE) });
  if (after !== null) query.set("after", after);
  const started = performance.now();
  const response = await fetch(`${base}/events?${query}`, { headers: { authorization: `Bearer ${token}` } });
  const text = await response.text();
  const ms = performance.now() - started;
  if (response.status !== 200) throw new Error(`GET /events answered ${response.status}: ${text.slice(0, 300)}`);
  return { ms, page: JSON.parse(text) as Page };
}

/** What a correct page looks like: full, only the filtered pair, ids descending below the cursor. */
function pageProblem(page: Page, after: string | null, pageNumber: number): string | null {
  if (page.events.length !== PAGE_SIZE) return `page ${pageNumber} has ${page.events.length} events (expected ${PAGE_SIZE})`;
  let previous = after === null ? Infinity : Number(after);
  for (const event of page.events) {
    if (event.event !== QUERY_EVENT || event.organizationId !== QUERY_ORGANIZATION) {
      return `page ${pageNumber} holds event ${event.id} (${event.event}, ${event.organizationId}) outside the filter`;
    }
    if (!(event.id < previous)) return `page ${pageNumber}: ids not strictly descending below the cursor at ${event.id}`;
    previous = event.id;
  }
  if (page.next === null) return `page ${pageNumber} has no next cursor although more matching events exist`;
  return null;
}

async function post(server: RunningServer, spec: EventSpec) {
  const { body, headers } = logDelivery(spec);
  const response = await fetch(`http://127.0.0.1:${server.port}/webhook`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return { status: response.status, answer: (await response.json()) as { id?: number; duplicate?: boolean } };
}

/**
 * Starts the receiver on a log of `events` events and measures its start: a new delivery (a random
 * uid, new in every run) posted as soon as /healthz answers must be a new event past the loaded
 * ones; on a non-empty log, a repeat of the newest loaded delivery must be its duplicate. Returns the
 * running server (the caller stops it).
 */
async function measureStart(
  paths: Paths,
  secrets: Secrets,
  dataDir: string,
  log: { database: string; events: number; matchingPerTen: number } | null,
  problems: string[],
): Promise<{ server: RunningServer; figures: StartFigures }> {
  const server = await startServer("receiver", paths, secrets, dataDir, log === null ? {} : { ICR_RECEIVER_DB: log.database });
  const what = log === null ? "empty log" : `${log.events}-event log`;
  const fresh = await post(server, { event: "installed", organization: "org-new", uid: `start-${crypto.randomUUID()}`, n: 0 });
  const firstAcceptMs = performance.now() - server.spawnedAt;
  const loaded = log?.events ?? 0;
  if (fresh.status !== 202 || fresh.answer.duplicate !== false || !(Number(fresh.answer.id) > loaded)) {
    problems.push(`query, ${what}: a new delivery after start-up got ${fresh.status} ${JSON.stringify(fresh.answer)} (expected 202, a new event past id ${loaded})`);
  }
  if (log !== null) {
    const repeat = await post(server, eventSpec(log.events - 1, log.matchingPerTen));
    if (repeat.status !== 202 || repeat.answer.duplicate !== true || repeat.answer.id !== log.events) {
      problems.push(`query, ${what}: a loaded delivery posted again got ${repeat.status} ${JSON.stringify(repeat.answer)} (expected 202, id ${log.events}, a duplicate)`);
    }
  }
  await sleep(1000); // idle: started, nothing asked since
  return { server, figures: { readyMs: server.readyAt - server.spawnedAt, firstAcceptMs, idleRssBytes: memoryOf(server.child.pid)?.rss ?? NaN } };
}

async function stopChecked(server: RunningServer, what: string, problems: string[]): Promise<void> {
  const exit = await stop(server.child);
  if (exit !== 0) problems.push(`query, ${what}: the receiver exited ${exit} on SIGTERM (expected 0)\n${await serverLogTail(server)}`);
}

function medians(starts: StartFigures[]): StartFigures & { starts: StartFigures[] } {
  return {
    readyMs: median(starts.map((s) => s.readyMs)),
    firstAcceptMs: median(starts.map((s) => s.firstAcceptMs)),
    idleRssBytes: median(starts.map((s) => s.idleRssBytes)),
    starts,
  };
}

export async function measureQueries(
  paths: Paths,
  secrets: Secrets,
  dir: string,
  built: BuiltLog,
  { pages, repeats }: { pages: number; repeats: number },
  log: (line: string) => void,
): Promise<QueryResult> {
  const problems: string[] = [];
  const { events, matchingPerTen } = built;
  const logSecrets = { ...secrets, webhookSecret: LOG_FIXTURE_SECRET };
  const large = { database: built.database, events, matchingPerTen };

  const emptyStarts: StartFigures[] = [];
  const largeStarts: StartFigures[] = [];
  let server: RunningServer | null = null;
  try {
    for (let n = 0; n < STARTS; n++) {
      const emptyDir = join(dir, "query", `empty-${n}`);
      mkdirSync(emptyDir, { recursive: true });
      const empty = await measureStart(paths, logSecrets, emptyDir, null, problems);
      emptyStarts.push(empty.figures);
      await stopChecked(empty.server, "empty log", problems);
      const largeDir = join(dir, "query", `large-${n}`);
      mkdirSync(largeDir, { recursive: true });
      const started = await measureStart(paths, logSecrets, largeDir, large, problems);
      largeStarts.push(started.figures);
      if (n < STARTS - 1) await stopChecked(started.server, `${events}-event log`, problems);
      else server = started.server; // the last one serves the queries
    }
    const both = medians(largeStarts);
    log(`  first 202 ${Math.round(both.firstAcceptMs)} ms (empty log ${Math.round(median(emptyStarts.map((s) => s.firstAcceptMs)))} ms), idle RSS ${(both.idleRssBytes / 1e6).toFixed(1)} MB (empty ${(median(emptyStarts.map((s) => s.idleRssBytes)) / 1e6).toFixed(1)} MB)`);

    const sampler = new RssSampler(server!.child.pid);
    const base = `http://127.0.0.1:${server!.port}`;
    const token = secrets.queryToken;
    for (let i = 0; i < 20; i++) await getPage(base, token, null); // warm-up: JIT, connection, page cache
    const firstPageMs: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const { ms, page } = await getPage(base, token, null);
      firstPageMs.push(ms);
      if (i === 0) {
        const problem = pageProblem(page, null, 1);
        if (problem !== null) problems.push(`query: ${problem}`);
      }
    }
    // Walk from page 1 to page `pages` through the cursor; keep the cursor that leads to the last.
    const walkMs: number[] = [];
    let after: string | null = null;
    let lastCursor: string | null = null;
    for (let n = 1; n <= pages; n++) {
      const { ms, page } = await getPage(base, token, after);
      walkMs.push(ms);
      const problem = pageProblem(page, after, n);
      if (problem !== null) {
        problems.push(`query: ${problem}`);
        break;
      }
      lastCursor = after;
      after = page.next;
    }
    const lastPageMs: number[] = [];
    for (let i = 0; i < repeats && lastCursor !== null; i++) {
      const { ms, page } = await getPage(base, token, lastCursor);
      lastPageMs.push(ms);
      if (i === 0) {
        const problem = pageProblem(page, lastCursor, pages);
        if (problem !== null) problems.push(`query: ${problem}`);
      }
    }
    const peakRssBytes = sampler.finish();
    await stopChecked(server!, `${events}-event log`, problems);
    server = null;

    log(`  icr-receiver check on the ${events}-event log`);
    let checkSeconds = NaN;
    try {
      checkSeconds = await checkLog(paths.receiverBinary, built.database);
    } catch (error) {
      problems.push(`query: icr-receiver check failed on the ${events}-event log: ${(error as Error).message.slice(0, 2000)}`);
    }
    const bytes = Bun.file(built.database).size + (await Bun.file(`${built.database}-wal`).exists() ? Bun.file(`${built.database}-wal`).size : 0);
    return {
      log: built,
      checkSeconds,
      bytesPerEvent: bytes / events,
      empty: medians(emptyStarts),
      large: both,
      peakRssBytes,
      firstPage: summarize(firstPageMs),
      walk: { ...summarize(walkMs), pages: walkMs.length },
      lastPage: { ...summarize(lastPageMs), page: pages },
      problems,
    };
  } finally {
    if (server !== null) await stop(server.child);
  }
}
