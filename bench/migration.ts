// The upgrade from the last release (issue 17): a log written by the real 0.4.0 receiver, built
// from git (`git archive` of 0.4.0's last commit, compiled against this repository's node_modules),
// is migrated by the current binary's `icr-receiver migrate`, then verified by its `check`.
//
// The 0.4.0 log is made as the long-lived app's log is (big-log.ts: `import -` of the same generated
// signed deliveries, then 0.4.0's own `check`) and cached beside it, keyed by the events count, the
// 0.4.0 commit and the generator: later runs neither build 0.4.0 nor import again. Each run migrates
// a copy in its own directory, so the cached log stays at 0.4.0's schema.
import { Database } from "bun:sqlite";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import { cachedLog, checkLog, GENERATOR_FILES, type BuiltLog, type CacheOptions } from "./big-log.ts";
import type { LogSpec } from "./log-generator.ts";
import { run } from "./processes.ts";

const REPO_DIR = resolve(import.meta.dir, "..");

/** Events in the 0.4.0 log (issue 17: "tested on a 1,000,000-event log"), and of every ten how many
 * are the queried pair (it does not change what the migration does). */
export const MIGRATION_LOG = { full: { events: 1_000_000, matchingPerTen: 2 }, quick: { events: 200_000, matchingPerTen: 2 } } as const satisfies Record<string, LogSpec>;

/** The last commit of 0.4.0 on main: the release whose logs 0.5.0 upgrades. */
export const OLD_RELEASE = { version: "0.4.0", commit: "9473e549bf4f2bfac91b0d96d649b59564831eb9" } as const;

function cacheKey(spec: LogSpec): string {
  const hash = new Bun.CryptoHasher("sha256").update(JSON.stringify(spec)).update(OLD_RELEASE.commit);
  for (const path of GENERATOR_FILES) hash.update(path.slice(REPO_DIR.length)).update(readFileSync(path));
  return hash.digest("hex").slice(0, 16);
}

/**
 * The old release's source must build with this repository's node_modules: every dependency it
 * declares must be installed here at the exact version it pins (the newer ones, playwright-core,
 * are not in its bundle).
 */
function assertSameDependencies(oldSource: string): void {
  const manifest = JSON.parse(readFileSync(join(oldSource, "package.json"), "utf8")) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
  const differing: string[] = [];
  for (const [name, pinned] of Object.entries({ ...manifest.dependencies, ...manifest.devDependencies })) {
    const installedManifest = join(REPO_DIR, "node_modules", name, "package.json");
    const installed = existsSync(installedManifest) ? (JSON.parse(readFileSync(installedManifest, "utf8")) as { version: string }).version : "missing";
    if (installed !== pinned) differing.push(`${name} ${pinned} (installed: ${installed})`);
  }
  if (differing.length > 0) {
    throw new Error(`${OLD_RELEASE.version} pins dependencies that this repository's node_modules does not have: ${differing.join(", ")}`);
  }
}

/** `git archive` of the old release into `dir`, built there with `bun run build`; returns its binary. */
async function buildOldReceiver(dir: string, log: (line: string) => void): Promise<string> {
  log(`  building the ${OLD_RELEASE.version} receiver from git (${OLD_RELEASE.commit.slice(0, 7)})`);
  const source = join(dir, "source");
  mkdirSync(source, { recursive: true });
  const archive = join(dir, "source.tar");
  await run(["git", "archive", "--format=tar", "-o", archive, OLD_RELEASE.commit], { cwd: REPO_DIR });
  await run(["tar", "-xf", archive, "-C", source]);
  rmSync(archive);
  assertSameDependencies(source);
  symlinkSync(join(REPO_DIR, "node_modules"), join(source, "node_modules"));
  await run([process.execPath, "run", "build"], { cwd: source, timeoutMs: 300_000 });
  const binary = join(source, "dist", "icr-receiver");
  const { stdout } = await run([binary, "--version"], { env: { PATH: process.env.PATH } });
  if (stdout.trim() !== OLD_RELEASE.version) throw new Error(`the receiver built from ${OLD_RELEASE.commit} says it is ${stdout.trim()}, not ${OLD_RELEASE.version}`);
  return binary;
}

/** The 0.4.0 log for `spec`: from the cache, or built now by the 0.4.0 receiver (built into `workDir`). */
export function oldReleaseLog(spec: LogSpec, workDir: string, options: CacheOptions): Promise<BuiltLog> {
  const prefix = `log-${OLD_RELEASE.version}-${spec.events}-`;
  return cachedLog(() => buildOldReceiver(join(workDir, `receiver-${OLD_RELEASE.version}`), options.log), spec, prefix, cacheKey(spec), options);
}

/** What the log holds that the migrations are about: `event_keys.digest` filled and indexed (0009), then
 * every copied digest in `event_digests` (0010). */
export interface DigestState {
  events: number;
  /** Events whose keys were copied into `event_keys` (the rest, a tail, the receiver copies later). */
  keyRows: number;
  hasDigestColumn: boolean;
  hasDigestIndex: boolean;
  /** Copied rows still without a digest (the migration must leave none). */
  missingDigests: number;
  /** Rows of `event_digests` (NaN before 0010), and how far it counts as complete. */
  digestRows: number;
  digestsThrough: number;
  appliedMigrations: number;
}

function digestState(database: string): DigestState {
  const sqlite = new Database(database, { readonly: true });
  try {
    const count = (sql: string) => sqlite.query<{ n: number }, []>(sql).get()?.n ?? NaN;
    const hasDigestColumn = sqlite.query("SELECT 1 FROM pragma_table_info('event_keys') WHERE name = 'digest'").get() !== null;
    const tableExists = (name: string) => sqlite.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== null;
    return {
      events: count("SELECT count(*) AS n FROM events"),
      keyRows: count("SELECT count(*) AS n FROM event_keys"),
      hasDigestColumn,
      hasDigestIndex: sqlite.query("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'event_keys_digest'").get() !== null,
      missingDigests: hasDigestColumn ? count("SELECT count(*) AS n FROM event_keys WHERE digest IS NULL") : NaN,
      digestRows: tableExists("event_digests") ? count("SELECT count(*) AS n FROM event_digests") : NaN,
      digestsThrough: tableExists("event_digests_progress") ? count("SELECT coalesce(max(through), 0) AS n FROM event_digests_progress") : NaN,
      appliedMigrations: count("SELECT count(*) AS n FROM __drizzle_migrations"),
    };
  } finally {
    sqlite.close();
  }
}

export interface MigrationResult {
  log: BuiltLog;
  before: DigestState;
  after: DigestState | null;
  /** The tags `migrate` printed as applied. */
  applied: string[];
  /** Wall clock of `icr-receiver migrate` (NaN when it failed). */
  migrateSeconds: number;
  /** Wall clock of the current `icr-receiver check` after it (NaN when it failed or did not run). */
  checkSeconds: number;
  /** Why the upgrade is not proven, if it is not: a failed command or what the log holds. */
  failure: string | null;
}

function firstLines(text: string, lines = 12): string {
  return text.trim().split("\n").slice(0, lines).join("\n");
}

/** Copies the cached 0.4.0 log into `workDir`, migrates it with the current binary, checks it;
 * removes the copy. */
export async function measureMigration(receiverBinary: string, oldLog: BuiltLog, workDir: string, log: (line: string) => void): Promise<MigrationResult> {
  mkdirSync(workDir, { recursive: true });
  try {
    return await migrateCopy(receiverBinary, oldLog, workDir, log);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

async function migrateCopy(receiverBinary: string, oldLog: BuiltLog, workDir: string, log: (line: string) => void): Promise<MigrationResult> {
  const database = join(workDir, "icr-receiver.db");
  for (const suffix of ["", "-wal"]) if (existsSync(`${oldLog.database}${suffix}`)) copyFileSync(`${oldLog.database}${suffix}`, `${database}${suffix}`);
  const before = digestState(database);
  const result: MigrationResult = { log: oldLog, before, after: null, applied: [], migrateSeconds: NaN, checkSeconds: NaN, failure: null };
  if (before.hasDigestColumn) {
    result.failure = `the ${OLD_RELEASE.version} log already has event_keys.digest: not a log of that release`;
    return result;
  }
  const env = { PATH: process.env.PATH };
  try {
    const started = performance.now();
    const { stdout } = await run([receiverBinary, "migrate", "--db", database], { env, timeoutMs: 3_600_000 });
    result.migrateSeconds = (performance.now() - started) / 1000;
    result.applied = [...stdout.matchAll(/^applied (\S+)$/gm)].map((m) => m[1]!);
    log(`  migrate: ${result.migrateSeconds.toFixed(2)} s, applied ${result.applied.join(", ") || "nothing"}`);
  } catch (error) {
    result.failure = `icr-receiver migrate failed: ${firstLines(error instanceof Error ? error.message : String(error))}`;
    return result;
  }
  const after = digestState(database);
  result.after = after;
  const wrong = [
    after.hasDigestColumn ? null : "event_keys has no digest column",
    after.hasDigestIndex ? null : "no event_keys_digest index",
    after.missingDigests === 0 ? null : `${after.missingDigests} copied rows without a digest`,
    after.keyRows > 0 ? null : "event_keys is empty (nothing was filled)",
    after.digestRows === after.keyRows && after.digestsThrough === after.keyRows ? null : `event_digests holds ${after.digestRows} rows, complete through ${after.digestsThrough}, for ${after.keyRows} copied events`,
    after.events === before.events ? null : `events went from ${before.events} to ${after.events}`,
    after.appliedMigrations === before.appliedMigrations + result.applied.length ? null : "__drizzle_migrations does not record what migrate said it applied",
  ].filter((problem) => problem !== null);
  if (wrong.length > 0) {
    result.failure = `after the migration: ${wrong.join("; ")}`;
    return result;
  }
  try {
    result.checkSeconds = await checkLog(receiverBinary, database);
    log(`  check after the migration: ${result.checkSeconds.toFixed(1)} s, passes`);
  } catch (error) {
    result.failure = `icr-receiver check failed after the migration: ${firstLines(error instanceof Error ? error.message : String(error))}`;
  }
  return result;
}
