// `icr-receiver migrate`: apply pending migrations, as `serve` does at start, and say what ran.
import { migrateEventLog } from "../log/event-log.ts";
import { command, DATABASE_HELP, DATABASE_OPTIONS, databasePath, EXIT, HELP_OPTION, parse } from "./common.ts";

const OPTIONS = { ...HELP_OPTION, ...DATABASE_OPTIONS } as const;

const HELP = `Usage: icr-receiver migrate [options]

Applies the migrations bundled in this binary that the event log has not had yet (creating the
database if there is none), then prints what was applied. Safe while the server runs: it waits for
the server's write lock like any writer. No secret is needed.

${DATABASE_HELP}`;

function describeMigration(path: string, applied: readonly string[], total: number): string {
  return applied.length === 0
    ? `${path}: up to date (${total} migrations bundled)\n`
    : applied.map((tag) => `applied ${tag}\n`).join("") + `${path}: ${applied.length} of ${total} migrations applied now\n`;
}

export const migrateCommand = command("migrate", "apply pending database migrations", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  const path = databasePath(values, env);
  const { applied, bundled } = migrateEventLog(path);
  process.stdout.write(describeMigration(path, applied, bundled));
  return EXIT.ok;
});
