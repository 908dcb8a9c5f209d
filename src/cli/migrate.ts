// `icr-receiver migrate`: apply pending migrations, as `serve` does at start, and say what ran.
import { Database } from "bun:sqlite";
import { configureForWriting } from "../log/database.ts";
import { bundledMigrations, migrate } from "../log/migrations.ts";
import { CliError, command, DATABASE_HELP, DATABASE_OPTIONS, databasePath, EXIT, HELP_OPTION, parse } from "./common.ts";

const OPTIONS = { ...HELP_OPTION, ...DATABASE_OPTIONS } as const;

const HELP = `Usage: icr-receiver migrate [options]

Applies the migrations bundled in this binary that the event log has not had yet (creating the
database if there is none), then prints what was applied. Safe while the server runs: it waits for
the server's write lock like any writer. No secret is needed.

${DATABASE_HELP}`;

export function describeMigration(path: string, applied: readonly string[], total: number): string {
  return applied.length === 0
    ? `${path}: up to date (${total} migrations bundled)\n`
    : applied.map((tag) => `applied ${tag}\n`).join("") + `${path}: ${applied.length} of ${total} migrations applied now\n`;
}

export const migrateCommand = command("migrate", "apply pending database migrations", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  const path = databasePath(values, env);
  let sqlite: Database;
  try {
    sqlite = new Database(path, { create: true, strict: true });
  } catch (error) {
    throw new CliError(`cannot open the event log ${path}: ${(error as Error).message}`);
  }
  try {
    // The settings serve uses, so a database created here is a normal one.
    configureForWriting(sqlite);
    const applied = migrate(sqlite);
    process.stdout.write(describeMigration(path, applied, bundledMigrations().length));
    return EXIT.ok;
  } catch (error) {
    throw new CliError(`migrating ${path} failed: ${(error as Error).message}`);
  } finally {
    sqlite.close();
  }
});
