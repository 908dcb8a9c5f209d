// Tamper evidence: every row of the log carries SHA-256(previous row's chain_hash ‖ this row), per
// table, so an edit made behind the triggers' back (or a row removed from the middle) breaks the
// chain at that row. Computed by the writer inside the transaction that inserts the row.
import type { Database } from "bun:sqlite";
import { CHAIN_LAYOUT, CHAINED_TABLES, type ChainedTable, type Column } from "./columns.ts";

export { CHAINED_TABLES, type ChainedTable } from "./columns.ts";

export const GENESIS = "0".repeat(64);

/** A value of a column chained only when set: hashed with its column's name, so it cannot pass for another column. */
class Named {
  constructor(
    readonly column: string,
    readonly value: unknown,
  ) {}
}

/** A row's values in the order its chain covers them (see ChainLayout in columns.ts). */
export function chainedValues(table: ChainedTable, get: (column: Column) => unknown): unknown[] {
  const { chained, chainedWhenSet } = CHAIN_LAYOUT[table];
  const values = chained.map((column) => get(column) ?? null);
  for (const column of chainedWhenSet) {
    const value = get(column);
    if (value !== null && value !== undefined) values.push(new Named(column.name, value));
  }
  return values;
}

/**
 * SHA-256 over the previous hash and each value as `\n<type><length>:<text>` (n: NULL, d: number,
 * s: text), a value chained when set preceded by `\nk<length>:<column name>`: no two different
 * rows share it. Not JSON.stringify: escaping a 2 KB raw body cost more than hashing it.
 */
export function chainHash(previous: string, row: readonly unknown[]): string {
  // Joined once rather than grown with +=: hashing a string of a few dozen concatenated pieces
  // first copies them into one, piece by piece.
  const parts = [previous];
  for (let value of row) {
    if (value instanceof Named) {
      parts.push(`\nk${value.column.length}:${value.column}`);
      value = value.value;
    }
    const text = value === null || value === undefined ? "" : String(value);
    const type = value === null || value === undefined ? "n" : typeof value === "number" ? "d" : "s";
    parts.push(`\n${type}${text.length}:`, text);
  }
  return Bun.CryptoHasher.hash("sha256", parts.join(""), "hex");
}

type ChainCheck =
  | { ok: true; table: ChainedTable; rows: number }
  | { ok: false; table: ChainedTable; rows: number; firstBadId: number };

/** Recomputes a table's chain in id order; names the first row whose hash does not match. */
export function verifyChain(sqlite: Database, table: ChainedTable): ChainCheck {
  const { chained, chainedWhenSet } = CHAIN_LAYOUT[table];
  const names = [...chained, ...chainedWhenSet].map((column) => `"${column.name}"`);
  const rows = sqlite
    .query<Record<string, unknown>, []>(`SELECT ${names.join(", ")}, chain_hash FROM "${table}" ORDER BY id`)
    .iterate();
  let previous = GENESIS;
  let count = 0;
  for (const row of rows) {
    count++;
    const expected = chainHash(previous, chainedValues(table, (column) => row[column.name]));
    if (expected !== row.chain_hash) return { ok: false, table, rows: count, firstBadId: row.id as number };
    previous = expected;
  }
  return { ok: true, table, rows: count };
}

/** Every table whose rows are chained. */
export const CHAINED_TABLE_NAMES = Object.keys(CHAINED_TABLES) as ChainedTable[];
