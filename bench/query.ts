// The query benchmark: a log of 1,000,000 events, the receiver's start-up time and idle RSS on it,
// and GET /events pages (filtered by event and organization, 100 per page) from the first to the
// 1,000th through the cursor.
import { Database } from "bun:sqlite";
import { closeSync, fsyncSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { EVENTS, ORGANIZATIONS, postDelivery, signedDelivery, type DeliverySpec } from "./deliveries.ts";
import { memoryOf, RssSampler, sleep, stop } from "./processes.ts";
import { serverLogTail, startServer, type Paths, type Secrets } from "./servers.ts";

/** The (event, organization) pair the pages are filtered by. */
export const QUERY_EVENT = "warehouseTransaction";
export const QUERY_ORGANIZATION = "org-1";
const PAGE_SIZE = 100;
const BASE_TIME = Date.parse("2025-01-01T00:00:00.000Z");

export interface QueryResult {
  events: number;
  matching: number;
  buildSeconds: number;
  databaseBytes: number;
  startupMs: number;
  /** Spawn to the 202 of a new delivery posted as soon as /healthz answered. */
  firstAcceptMs: number;
  idleRssBytes: number;
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

/** Event i of the synthetic log: `matchingPerTen` of every ten are the queried pair, the rest
 * spread over every other (event, organization) combination. */
function specOf(i: number, matchingPerTen: number): DeliverySpec {
  if (i % 10 < matchingPerTen) return { event: QUERY_EVENT, organization: QUERY_ORGANIZATION, uid: `q-${i.toString(36)}`, n: i };
  let event: string = EVENTS[i % EVENTS.length]!;
  const organization = ORGANIZATIONS[Math.floor(i / EVENTS.length) % ORGANIZATIONS.length]!;
  if (event === QUERY_EVENT && organization === QUERY_ORGANIZATION) event = "organizationTransaction";
  return { event, organization, uid: `q-${i.toString(36)}`, n: i };
}

/** Starts the receiver once on an empty data directory so that its own migrations create the schema. */
async function createSchema(paths: Paths, secrets: Secrets, dataDir: string): Promise<string> {
  const server = await startServer("receiver", paths, secrets, dataDir);
  const exit = await stop(server.child);
  if (exit !== 0) throw new Error(`the receiver exited ${exit} after creating the schema\n${await serverLogTail(server)}`);
  return server.receiverDb!;
}

/** The columns the benchmark knows how to fill, per src/log/schema.ts. */
const KNOWN_COLUMNS = {
  events: [
    "id", "received_at", "event", "installation_id", "organization_id", "app_id", "transaction_id",
    "transaction_status", "transaction_type", "transaction_amount", "payload", "payload_sha256",
    "secret_label", "envelope_mismatch",
  ],
  deliveries: ["id", "event_id", "received_at", "remote_address", "headers", "raw_body", "secret_label", "envelope_mismatch", "duplicate"],
} as const;
type Table = keyof typeof KNOWN_COLUMNS;

/** The receiver's tamper-evidence chain (src/log/chain.ts, its layout from src/log/columns.ts), when
 * its schema has one: the rows loaded here must carry the same chain_hash the receiver's writer
 * would have computed. */
interface ChainModule {
  GENESIS: string;
  chainedValues(table: Table, get: (column: { key: string; name: string }) => unknown): unknown[];
  chainHash(previous: string, row: readonly unknown[]): string;
  /** The columns every row's chain covers, by SQL name (columns chained only when set are left NULL here). */
  chained: Record<Table, string[]>;
}

async function loadChainModule(): Promise<ChainModule> {
  const path = join(import.meta.dir, "..", "src", "log", "chain.ts");
  const layoutPath = join(import.meta.dir, "..", "src", "log", "columns.ts");
  const module = (await import(path)) as Partial<ChainModule>;
  const layout = ((await import(layoutPath)) as { CHAIN_LAYOUT?: Record<Table, { chained: { name: string }[] }> }).CHAIN_LAYOUT;
  if (typeof module.chainHash !== "function" || typeof module.GENESIS !== "string" || typeof module.chainedValues !== "function" || layout === undefined) {
    throw new Error(`${path} no longer exports GENESIS, chainedValues and chainHash (or ${layoutPath} CHAIN_LAYOUT): update bench/query.ts`);
  }
  const chained = { events: layout.events.chained.map((c) => c.name), deliveries: layout.deliveries.chained.map((c) => c.name) };
  return { GENESIS: module.GENESIS, chainedValues: module.chainedValues, chainHash: module.chainHash, chained };
}

interface InsertPlan {
  table: Table;
  columns: string[];
  statement: ReturnType<Database["prepare"]>;
  /** chain_hash of the previous row, when the table is chained. */
  previous: string | null;
}

/**
 * The INSERT for one table, from the schema the receiver's migrations actually created: the known
 * columns, chain_hash if present, and a clear error for any other column that must be filled.
 */
function planInsert(db: Database, table: Table, chain: ChainModule | null): InsertPlan {
  const info = db.query<{ name: string; notnull: number; dflt_value: unknown; pk: number }, []>(`PRAGMA table_info(${table})`).all();
  const known = new Set<string>(KNOWN_COLUMNS[table]);
  const columns: string[] = [];
  for (const column of info) {
    if (known.has(column.name)) columns.push(column.name);
    else if (column.name === "chain_hash" && chain !== null) columns.push(column.name);
    else if (column.notnull && column.dflt_value === null && !column.pk) {
      throw new Error(`${table}.${column.name} is NOT NULL and the benchmark does not know how to fill it: update bench/query.ts`);
    }
  }
  const chained = columns.includes("chain_hash");
  if (chained) {
    const missing = chain!.chained[table].filter((c) => !known.has(c));
    if (missing.length > 0) throw new Error(`the ${table} chain covers ${missing.join(", ")}, unknown to bench/query.ts`);
  }
  const statement = db.prepare(`INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`);
  return { table, columns, statement, previous: chained ? chain!.GENESIS : null };
}

function insertRow(plan: InsertPlan, chain: ChainModule | null, row: Record<string, string | number | null>): void {
  if (plan.previous !== null) {
    const hash = chain!.chainHash(plan.previous, chain!.chainedValues(plan.table, (c) => row[c.name]));
    row.chain_hash = hash;
    plan.previous = hash;
  }
  plan.statement.run(...plan.columns.map((c) => row[c] ?? null));
}

/**
 * Bulk-inserts `count` events, each with its one delivery, straight into the receiver's tables
 * (the append-only triggers forbid only UPDATE and DELETE). No journal and synchronous=OFF while
 * loading, then back to WAL and one fsync of the file, so that the later measurements are not
 * disturbed by writeback.
 */
async function bulkLoad(dbPath: string, count: number, matchingPerTen: number, secret: string): Promise<number> {
  const db = new Database(dbPath, { strict: true });
  let matching = 0;
  try {
    const hasChain = db.query<{ n: number }, []>("SELECT count(*) AS n FROM pragma_table_info('events') WHERE name = 'chain_hash'").get()!.n > 0;
    const chain = hasChain ? await loadChainModule() : null;
    const events = planInsert(db, "events", chain);
    const deliveries = planInsert(db, "deliveries", chain);
    db.run("PRAGMA journal_mode = OFF");
    db.run("PRAGMA synchronous = OFF");
    db.run("PRAGMA cache_size = -524288"); // 512 MiB: fewer trips to the file while the indexes grow
    const insertBatch = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const spec = specOf(i, matchingPerTen);
        if (spec.event === QUERY_EVENT && spec.organization === QUERY_ORGANIZATION) matching++;
        const delivery = signedDelivery(spec, secret);
        const payload = JSON.parse(delivery.payload) as {
          installation: { id: string };
          transaction?: { id: string; status: string; type: string; amount: number };
        };
        const tx = payload.transaction;
        const id = i + 1;
        const receivedAt = new Date(BASE_TIME + i * 50).toISOString();
        insertRow(events, chain, {
          id,
          received_at: receivedAt,
          event: spec.event,
          installation_id: payload.installation.id,
          organization_id: spec.organization,
          app_id: "1",
          transaction_id: tx?.id ?? null,
          transaction_status: tx?.status ?? null,
          transaction_type: tx?.type ?? null,
          transaction_amount: tx?.amount ?? null,
          payload: delivery.payload,
          payload_sha256: new Bun.CryptoHasher("sha256").update(delivery.payload).digest("hex"),
          secret_label: "default",
          envelope_mismatch: 0,
        });
        insertRow(deliveries, chain, {
          id,
          event_id: id,
          received_at: receivedAt,
          remote_address: "127.0.0.1",
          headers: JSON.stringify({
            "content-length": String(delivery.body.length),
            "content-type": "application/json",
            host: "127.0.0.1",
            "x-icr-signature-256": delivery.signature,
          }),
          // Canonical bodies, which the receiver stores as NULL (rebuilt from the payload).
          raw_body: null,
          secret_label: "default",
          envelope_mismatch: 0,
          duplicate: 0,
        });
      }
    });
    const BATCH = 50_000;
    for (let from = 0; from < count; from += BATCH) insertBatch(from, Math.min(count, from + BATCH));
    // Since 0003 the filter indexes live in event_keys, which the receiver fills behind the log:
    // a log it wrote has every key copied, and so does this one.
    if (db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_keys'").get() !== null) {
      db.run("INSERT INTO event_keys (event_id, event, organization_id, installation_id) SELECT id, event, organization_id, installation_id FROM events ORDER BY id");
    }
    db.run("PRAGMA journal_mode = WAL");
  } finally {
    db.close();
  }
  const fd = openSync(dbPath, "r+");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return matching;
}

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

export async function measureQueries(
  paths: Paths,
  secrets: Secrets,
  dir: string,
  { events, matchingPerTen, pages, repeats }: { events: number; matchingPerTen: number; pages: number; repeats: number },
  log: (line: string) => void,
): Promise<QueryResult> {
  const problems: string[] = [];
  const dataDir = join(dir, "query");
  mkdirSync(dataDir, { recursive: true });
  const buildStarted = performance.now();
  const dbPath = await createSchema(paths, secrets, dataDir);
  const matching = await bulkLoad(dbPath, events, matchingPerTen, secrets.webhookSecret);
  const buildSeconds = (performance.now() - buildStarted) / 1000;
  const databaseBytes = Bun.file(dbPath).size;
  log(`  built ${events} events (${matching} matching) in ${buildSeconds.toFixed(1)} s, ${(databaseBytes / 2 ** 30).toFixed(2)} GiB`);

  const server = await startServer("receiver", paths, secrets, dataDir);
  const startupMs = server.readyAt - server.spawnedAt;
  const sampler = new RssSampler(server.child.pid);
  try {
    const base = `http://127.0.0.1:${server.port}`;
    // The writer builds its index of the log's payload digests after the port opens: the first
    // delivery waits for it. One not in the log must be new; one of the loaded ones a repeat.
    const post = async (spec: DeliverySpec) => {
      const response = await postDelivery(server.port, signedDelivery(spec, secrets.webhookSecret));
      return { status: response.status, answer: (await response.json()) as { id?: number; duplicate?: boolean } };
    };
    const fresh = await post({ event: "installed", organization: "org-new", uid: "after-start", n: 0 });
    const firstAcceptMs = performance.now() - server.spawnedAt;
    if (fresh.status !== 202 || fresh.answer.duplicate !== false || fresh.answer.id !== events + 1) {
      problems.push(`query: a new delivery after start-up got ${fresh.status} ${JSON.stringify(fresh.answer)} (expected 202, id ${events + 1}, not a duplicate)`);
    }
    const repeat = await post(specOf(events - 1, matchingPerTen));
    if (repeat.status !== 202 || repeat.answer.duplicate !== true || repeat.answer.id !== events) {
      problems.push(`query: a loaded delivery posted again got ${repeat.status} ${JSON.stringify(repeat.answer)} (expected 202, id ${events}, a duplicate)`);
    }
    await sleep(1000); // idle: started, nothing asked since
    const idleRssBytes = memoryOf(server.child.pid)?.rss ?? NaN;
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
    for (let i = 0; i < repeats && lastCursor !== null; i++) lastPageMs.push((await getPage(base, token, lastCursor)).ms);

    const peakRssBytes = sampler.finish();
    const exit = await stop(server.child);
    if (exit !== 0) problems.push(`query: the receiver exited ${exit} on SIGTERM (expected 0)\n${await serverLogTail(server)}`);
    return {
      events,
      matching,
      buildSeconds,
      databaseBytes,
      startupMs,
      firstAcceptMs,
      idleRssBytes,
      peakRssBytes,
      firstPage: summarize(firstPageMs),
      walk: { ...summarize(walkMs), pages: walkMs.length },
      lastPage: { ...summarize(lastPageMs), page: pages },
      problems,
    };
  } finally {
    sampler.finish();
    await stop(server.child);
  }
}
