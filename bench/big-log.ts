// The long-lived app's log (issue 17): millions of events built by `icr-receiver import` (the
// compiled binary) from generated signed deliveries streamed into its stdin, checked by
// `icr-receiver check`, and cached, because building it takes minutes.
//
// The cache is keyed by what decides the log's content and layout: the events count, the share of
// the queried pair, the generator (log-generator.ts and the signer it uses) and every file in drizzle/
// (a new migration means a new schema, so a new log). Only a complete, checked build appears under
// its key; a build for the same count under another key is removed first (a 10,000,000-event log
// is several GB).
//
// Runs add to the cached log: each start-up measurement posts one new event (its uid random, so it
// is new in every run) and one repeat of a loaded delivery (a duplicate delivery row). The loaded
// events keep their ids (event i of the generator is id i + 1).
import type { Subprocess } from "bun";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { importLine, LOG_FIXTURE_SECRET, type LogSpec } from "./log-generator.ts";
import { run, track } from "./processes.ts";

const REPO_DIR = resolve(import.meta.dir, "..");
/** The files whose text decides the generated deliveries. */
export const GENERATOR_FILES = ["bench/log-generator.ts", "src/verify/sign-delivery.ts", "src/verify/signature.ts"].map((path) => join(REPO_DIR, path));

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile())
    .sort();
}

/** The cache key: the spec, the generator's text, every migration file. */
export function logKey(spec: LogSpec): string {
  const hash = new Bun.CryptoHasher("sha256").update(JSON.stringify(spec));
  for (const path of [...GENERATOR_FILES, ...filesUnder(join(REPO_DIR, "drizzle"))]) hash.update(path.slice(REPO_DIR.length)).update(readFileSync(path));
  return hash.digest("hex").slice(0, 16);
}

export interface BuiltLog {
  dir: string;
  database: string;
  events: number;
  matchingPerTen: number;
  matching: number;
  /** Whether this run found it in the cache (its build figures are then those of the run that built it). */
  cached: boolean;
  buildSeconds: number;
  importSeconds: number;
  /** `check` right after the build. */
  checkSeconds: number;
  /** Bytes of the database file (and WAL, if any) right after the build, per event. */
  bytesPerEvent: number;
  databaseBytes: number;
  builtAt: string;
  diskBefore: string;
}

const CACHE_ROOT = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "icr-receiver-bench");
const META = "build.json";
const DATABASE_FILE = "icr-receiver.db";

function databaseBytes(database: string): number {
  return [database, `${database}-wal`].reduce((sum, path) => sum + (existsSync(path) ? statSync(path).size : 0), 0);
}

/** `df -h /` as one line: the disk the cache and the run's files share. */
async function diskFree(): Promise<string> {
  const { stdout } = await run(["df", "-h", CACHE_ROOT]);
  const [, line] = stdout.trim().split("\n");
  const [, size, used, avail, use, mount] = (line ?? "").split(/\s+/);
  return `${avail} free of ${size} on ${mount} (${use} used, ${used})`;
}

/** Feeds `count` generated lines into the importer's stdin, in chunks that wait for the pipe. */
async function feed(child: Subprocess<"pipe", "ignore", "pipe">, { events, matchingPerTen }: LogSpec): Promise<void> {
  const CHUNK = 2000;
  for (let from = 0; from < events; from += CHUNK) {
    const parts: string[] = [];
    for (let i = from; i < Math.min(events, from + CHUNK); i++) parts.push(importLine(i, matchingPerTen));
    child.stdin.write(parts.join(""));
    await child.stdin.flush();
    if (child.exitCode !== null) return;
  }
  await child.stdin.end();
}

/** Runs `icr-receiver check` on the log; returns its time, throws with its report when it fails. */
export async function checkLog(binary: string, database: string): Promise<number> {
  const started = performance.now();
  await run([binary, "check", "--db", database], { env: { PATH: process.env.PATH }, timeoutMs: 3_600_000 });
  return (performance.now() - started) / 1000;
}

function matchingCount({ events, matchingPerTen }: LogSpec): number {
  let matching = 0;
  for (let i = 0; i < events; i++) if (i % 10 < matchingPerTen) matching++;
  return matching;
}

async function build(binary: string, spec: LogSpec, cachePrefix: string, target: string, log: (line: string) => void): Promise<void> {
  const diskBefore = await diskFree();
  log(`  building the log: ${spec.events.toLocaleString("en-US")} events by \`icr-receiver import -\`; disk before: ${diskBefore}`);
  mkdirSync(CACHE_ROOT, { recursive: true });
  const staging = mkdtempSync(join(CACHE_ROOT, `staging-${cachePrefix}`));
  try {
    const database = join(staging, DATABASE_FILE);
    const started = performance.now();
    const child = track(
      Bun.spawn([binary, "import", "--db", database, "--batch-size", "10000", "-"], {
        env: { PATH: process.env.PATH, ICR_RECEIVER_SECRET: LOG_FIXTURE_SECRET },
        stdin: "pipe",
        stdout: "ignore",
        stderr: "pipe",
      }),
    );
    const stderr = new Response(child.stderr).text();
    await feed(child, spec);
    const exit = await child.exited;
    const importSeconds = (performance.now() - started) / 1000;
    const output = await stderr;
    if (exit !== 0) throw new Error(`icr-receiver import exited ${exit}:\n${output.slice(-2000)}`);
    log(`  imported in ${importSeconds.toFixed(0)} s: ${output.trim().split("\n").at(-1)}`);
    const checkSeconds = await checkLog(binary, database);
    const bytes = databaseBytes(database);
    const meta = {
      events: spec.events,
      matchingPerTen: spec.matchingPerTen,
      matching: matchingCount(spec),
      buildSeconds: (performance.now() - started) / 1000,
      importSeconds,
      checkSeconds,
      databaseBytes: bytes,
      bytesPerEvent: bytes / spec.events,
      builtAt: new Date().toISOString(),
      diskBefore,
    };
    writeFileSync(join(staging, META), `${JSON.stringify(meta, null, 2)}\n`);
    renameSync(staging, target); // only a complete, checked log appears under the key
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

export interface CacheOptions {
  rebuild: boolean;
  log: (line: string) => void;
}

/**
 * The log `binary` builds from `spec`, cached under `<prefix><key>`: from the cache, or built now
 * (always with `rebuild`), removing first the other logs under `prefix`. `binary` is only asked
 * for when the log is built (it may have to be built itself).
 */
export async function cachedLog(binary: () => Promise<string>, spec: LogSpec, prefix: string, key: string, { rebuild, log }: CacheOptions): Promise<BuiltLog> {
  const dir = join(CACHE_ROOT, `${prefix}${key}`);
  const cached = existsSync(join(dir, META)) && !rebuild;
  if (!cached) {
    // Only this prefix's unfinished builds: another kind of log may be building beside this one.
    if (existsSync(CACHE_ROOT)) {
      for (const name of readdirSync(CACHE_ROOT)) {
        if (name.startsWith(prefix) || name.startsWith(`staging-${prefix}`)) rmSync(join(CACHE_ROOT, name), { recursive: true, force: true });
      }
    }
    await build(await binary(), spec, prefix, dir, log);
  }
  const meta = JSON.parse(readFileSync(join(dir, META), "utf8")) as Omit<BuiltLog, "dir" | "database" | "cached">;
  const built = { ...meta, dir, database: join(dir, DATABASE_FILE), cached };
  log(
    cached
      ? `  the cached log (built ${built.builtAt} in ${built.buildSeconds.toFixed(0)} s): ${dir}`
      : `  built in ${built.buildSeconds.toFixed(0)} s (import ${built.importSeconds.toFixed(0)} s, check ${built.checkSeconds.toFixed(0)} s), ` +
          `${(built.databaseBytes / 2 ** 30).toFixed(2)} GiB, ${Math.round(built.bytesPerEvent)} B/event: ${dir}`,
  );
  return built;
}

/** The long-lived app's log for `spec`, built by the current receiver. */
export function bigLog(binary: string, spec: LogSpec, options: CacheOptions): Promise<BuiltLog> {
  return cachedLog(async () => binary, spec, `log-${spec.events}-`, logKey(spec), options);
}
