// What the migrations left of a table's indexes, for tests of what a commit writes.
import type { Database } from "bun:sqlite";

/** The indexes of `table` made by the schema (not those SQLite makes for a key), by name. */
export const indexesOf = (sqlite: Database, table: string): string[] =>
  sqlite
    .query<{ name: string }, [string]>("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name")
    .all(table)
    .map((i) => i.name);
