import { Database } from "bun:sqlite";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { statSync } from "node:fs";
import { dirname } from "node:path";
import { migrate } from "./migrations.ts";
import * as schema from "./schema.ts";

export type Drizzle = BunSQLiteDatabase<typeof schema>;

export interface EventLogDatabase {
  sqlite: Database;
  db: Drizzle;
  /** The file, for the writer thread's own connection. */
  path: string;
  busyTimeoutMs: number;
  /** Who checkpoints the WAL: this process (the default) or Litestream (see below). */
  checkpoints?: Checkpoints;
}

/**
 * "receiver": the receiver's checkpointer thread, its writer's automatic backstop and a TRUNCATE at
 * close. "litestream": none of these; Litestream, replicating the log, must be the only process that
 * checkpoints (its "Disable autocheckpoints" caveat), so connections open with wal_autocheckpoint=0.
 */
export type Checkpoints = "receiver" | "litestream";

interface OpenOptions {
  /** How long a write waits for a lock held by another process before it fails (ms). */
  busyTimeoutMs?: number;
  /** Apply pending migrations (the main thread does; the writer thread opens a migrated log). */
  migrate?: boolean;
  checkpoints?: Checkpoints;
}

/**
 * Opens (creating if needed) a connection that writes the log: WAL so readers such as `sqlite3
 * -readonly` never block the receiver, synchronous=FULL so a commit has reached the disk when it
 * returns (the promise behind every 2xx), then applies pending migrations.
 */
export function openDatabase(
  path: string,
  { busyTimeoutMs = 5000, migrate: migrating = true, checkpoints = "receiver" }: OpenOptions = {},
): EventLogDatabase {
  requireDirectory(dirname(path));
  const sqlite = new Database(path, { create: true, strict: true });
  try {
    configureForWriting(sqlite, busyTimeoutMs);
    if (checkpoints === "litestream") sqlite.run("PRAGMA wal_autocheckpoint = 0");
    if (migrating) migrate(sqlite);
    assertWritable(sqlite);
  } catch (error) {
    sqlite.close();
    throw error;
  }
  return { sqlite, db: drizzle({ client: sqlite, schema }), path, busyTimeoutMs, checkpoints };
}

/** The settings every writing connection uses, whoever opens it (the receiver, `migrate`). */
export function configureForWriting(sqlite: Database, busyTimeoutMs = 5000): void {
  sqlite.run(`PRAGMA busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
  sqlite.run("PRAGMA journal_mode = WAL");
  sqlite.run("PRAGMA synchronous = FULL");
}

/**
 * The log's directory must already exist: creating a missing one could put a fresh, empty log on
 * the root file system while the volume that holds the real one is not mounted.
 */
function requireDirectory(dir: string): void {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(dir).isDirectory();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(code === "ENOENT" ? `directory ${dir} does not exist (is its volume mounted?)` : `directory ${dir}: ${code}`);
  }
  if (!isDirectory) throw new Error(`${dir} is not a directory`);
}

/**
 * A write-protected file (chattr +i, a read-only mount, another user's 0444 file) is opened
 * read-only without a word, and under WAL even BEGIN IMMEDIATE succeeds: only a real write tells,
 * here one that is rolled back. Better to refuse to start than to answer every delivery 503.
 */
function assertWritable(sqlite: Database): void {
  sqlite.run("BEGIN IMMEDIATE");
  try {
    sqlite.run("CREATE TABLE __write_probe (x)");
  } finally {
    if (sqlite.inTransaction) sqlite.run("ROLLBACK");
  }
}

/** Opens the log read-only, as the CLI does while the server writes. */
export function openDatabaseReadOnly(path: string): EventLogDatabase {
  const sqlite = new Database(path, { readonly: true, strict: true });
  sqlite.run("PRAGMA busy_timeout = 5000");
  return { sqlite, db: drizzle({ client: sqlite, schema }), path, busyTimeoutMs: 5000 };
}

/**
 * Folds the WAL back into the main file and closes, so a stopped receiver leaves one tidy file;
 * under Litestream's checkpoints it only closes (a TRUNCATE would wait out busy_timeout on the
 * read transaction Litestream holds, and folding the WAL is Litestream's to do).
 */
export function closeDatabase({ sqlite, checkpoints }: EventLogDatabase): void {
  try {
    if (checkpoints !== "litestream") sqlite.run("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch {
    // No room to fold it back (a full disk): the WAL stays beside the file and the next open
    // replays it, so nothing is lost. Throwing here would leave the writer thread's close, and
    // with it a graceful stop, waiting for ever.
  } finally {
    sqlite.close();
  }
}
