// Tamper evidence: every row of the log carries SHA-256(previous row's chain_hash ‖ this row), per
// table, so an edit made behind the triggers' back (or a row removed from the middle) breaks the
// chain at that row. Computed by the writer inside the transaction that inserts the row.
import type { Database } from "bun:sqlite";

export const GENESIS = "0".repeat(64);

/** The columns each table's chain covers, in order: everything but chain_hash itself. */
export const CHAINED_COLUMNS = {
  events: [
    "id", "received_at", "event", "installation_id", "organization_id", "app_id", "transaction_id",
    "transaction_status", "transaction_type", "transaction_amount", "payload", "payload_sha256",
    "secret_label", "envelope_mismatch",
  ],
  deliveries: [
    "id", "event_id", "received_at", "remote_address", "headers", "raw_body", "secret_label",
    "envelope_mismatch", "duplicate",
  ],
} as const;

/**
 * Columns added to a chained table after rows were written: each is chained after the others,
 * under its name, and only when not NULL, so that every older row keeps the hash it was given.
 */
export const CHAINED_WHEN_SET = {
  events: ["unparsed_reason"],
  deliveries: [],
} as const satisfies Record<keyof typeof CHAINED_COLUMNS, readonly string[]>;

export type ChainedTable = keyof typeof CHAINED_COLUMNS;

/** A row's values in the order its chain covers them; `get` reads one column by its SQL name. */
export function chainedValues(table: ChainedTable, get: (column: string) => unknown): unknown[] {
  const values = CHAINED_COLUMNS[table].map((column) => get(column) ?? null);
  for (const column of CHAINED_WHEN_SET[table] as readonly string[]) {
    const value = get(column);
    if (value !== null && value !== undefined) values.push(new Named(column, value));
  }
  return values;
}

/** A CHAINED_WHEN_SET value: hashed with its column's name, so it cannot pass for another column. */
class Named {
  constructor(
    readonly column: string,
    readonly value: unknown,
  ) {}
}

/**
 * SHA-256 over the previous hash and each value as `\n<type><length>:<text>` (n: NULL, d: number,
 * s: text), which no two different rows share. Not JSON.stringify: escaping a 2 KB raw body
 * cost more than hashing it.
 */
export function chainHash(previous: string, row: readonly unknown[]): string {
  let input = previous;
  for (let value of row) {
    if (value instanceof Named) {
      input += `\nk${value.column.length}:${value.column}`;
      value = value.value;
    }
    const text = value === null || value === undefined ? "" : String(value);
    const type = value === null || value === undefined ? "n" : typeof value === "number" ? "d" : "s";
    input += `\n${type}${text.length}:${text}`;
  }
  return new Bun.CryptoHasher("sha256").update(input).digest("hex");
}

export type ChainCheck =
  | { ok: true; table: ChainedTable; rows: number }
  | { ok: false; table: ChainedTable; rows: number; firstBadId: number };

/** Recomputes a table's chain in id order; names the first row whose hash does not match. */
export function verifyChain(sqlite: Database, table: ChainedTable): ChainCheck {
  const columns = [...CHAINED_COLUMNS[table], ...CHAINED_WHEN_SET[table]];
  const rows = sqlite
    .query<Record<string, unknown>, []>(`SELECT ${columns.join(", ")}, chain_hash FROM ${table} ORDER BY id`)
    .iterate();
  let previous = GENESIS;
  let count = 0;
  for (const row of rows) {
    count++;
    const expected = chainHash(previous, chainedValues(table, (column) => row[column]));
    if (expected !== row.chain_hash) return { ok: false, table, rows: count, firstBadId: row.id as number };
    previous = expected;
  }
  return { ok: true, table, rows: count };
}
