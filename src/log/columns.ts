// The column lists the log works with, each derived from the Drizzle schema (schema.ts), so that a
// column added there is in every list that needs it without a second place to remember it.
import { getTableColumns } from "drizzle-orm";
import type { SQLiteColumn, SQLiteTable } from "drizzle-orm/sqlite-core";
import { deliveries, events } from "./schema.ts";

/** A column as the code (`key`, camelCase) and as SQL (`name`, snake_case) call it. */
export interface Column {
  key: string;
  name: string;
}

const columnsOf = (table: SQLiteTable): Column[] =>
  Object.entries(getTableColumns(table) as Record<string, SQLiteColumn>).map(([key, column]) => ({ key, name: column.name }));

export const CHAINED_TABLES = { events, deliveries } as const;
export type ChainedTable = keyof typeof CHAINED_TABLES;

/**
 * What a chained table's hash chain covers: its columns in schema order up to `chain_hash` (the
 * columns of the first release), then those declared after `chain_hash`, added since, each chained
 * under its name and only when set, so that every row written before it existed keeps its hash.
 */
export interface ChainLayout {
  chained: Column[];
  chainedWhenSet: Column[];
}

function chainLayout(table: SQLiteTable): ChainLayout {
  const columns = columnsOf(table);
  const at = columns.findIndex((column) => column.name === "chain_hash");
  if (at < 0) throw new Error("a chained table needs a chain_hash column");
  return { chained: columns.slice(0, at), chainedWhenSet: columns.slice(at + 1) };
}

export const CHAIN_LAYOUT: Record<ChainedTable, ChainLayout> = {
  events: chainLayout(events),
  deliveries: chainLayout(deliveries),
};

/** Every column of a table, for its insert statement. */
export const TABLE_COLUMNS: Record<ChainedTable, Column[]> = {
  events: columnsOf(events),
  deliveries: columnsOf(deliveries),
};

/** Columns the appender fills itself: ids, the link between the tables, the repeat flag, the chain. */
const ASSIGNED_BY_THE_WRITER = new Set(["id", "eventId", "duplicate", "chainHash"]);

/** The fields of an AcceptedDelivery, in one fixed order (how a batch travels to the writer). */
export const DELIVERY_FIELDS: readonly string[] = [
  ...new Set([...TABLE_COLUMNS.events, ...TABLE_COLUMNS.deliveries].map((c) => c.key).filter((key) => !ASSIGNED_BY_THE_WRITER.has(key))),
];
