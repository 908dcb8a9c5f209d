// `icr-receiver backup FILE`: a consistent snapshot of the live log with VACUUM INTO, which reads
// one transaction's view (the server keeps writing meanwhile) into a fresh, compact database file.
import { rmSync, statSync } from "node:fs";
import { resolve } from "node:path";
import {
  checkDestination,
  command,
  DATABASE_HELP,
  DATABASE_OPTIONS,
  databasePath,
  EXIT,
  HELP_OPTION,
  openReadOnly,
  parse,
  publish,
  temporaryPath,
  UsageError,
} from "./common.ts";
import { formatBytes, formatSeconds, plural } from "./format.ts";

const OPTIONS = { ...HELP_OPTION, ...DATABASE_OPTIONS, force: { type: "boolean" } } as const;

const HELP = `Usage: icr-receiver backup [options] FILE

Writes a consistent snapshot of the event log to FILE while the server keeps running
(SQLite's VACUUM INTO from a read-only connection: the server is never blocked). The snapshot is
written beside FILE, synced, checked (PRAGMA quick_check) and only then given its name, so FILE
is either absent or complete. Prints one summary line (size, rows, seconds).

Options:
  --force                  replace FILE if it exists (otherwise an existing FILE is refused)

${DATABASE_HELP}`;

interface BackupStats {
  file: string;
  bytes: number;
  events: number;
  deliveries: number;
  seconds: number;
}

function formatBackupSummary(stats: BackupStats): string {
  return `backup: ${stats.file}, ${formatBytes(stats.bytes)}, ${plural(stats.events, "event")}, ${plural(stats.deliveries, "delivery", "deliveries")} in ${formatSeconds(stats.seconds)}`;
}

export const backupCommand = command("backup", "consistent online snapshot of the database to FILE", HELP, async (argv, env) => {
  const { values, positionals } = parse(argv, OPTIONS, true);
  if (positionals.length !== 1) throw new UsageError("expected exactly one FILE (see --help)");
  const destination = resolve(positionals[0]!);
  const source = databasePath(values, env);
  if (destination === source) throw new UsageError("FILE is the event log itself");
  const force = values.force === true;
  checkDestination(destination, force);

  const started = performance.now();
  const log = openReadOnly(source);
  const temporary = temporaryPath(destination);
  try {
    const counts = log.copyTo(temporary);
    publish(temporary, destination, force);
    const seconds = (performance.now() - started) / 1000;
    const summary = formatBackupSummary({ file: destination, bytes: statSync(destination).size, ...counts, seconds });
    process.stdout.write(`${summary}\n`);
    return EXIT.ok;
  } finally {
    rmSync(temporary, { force: true });
    log.close();
  }
});
