// Turning events into text: a table for people, NDJSON for programs. Pure functions, no I/O.
import { eventJson, type DeliveryView, type EventView } from "../log/event-log.ts";

/** Control characters (a payload can hold anything) shown escaped, so a table cannot drive the terminal. */
export function printable(value: string): string {
  return value.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

interface Column {
  title: string;
  /** Minimum width, so rows printed in separate batches (tail -f) still line up. */
  width: number;
  cell(event: EventView): string;
}

const COLUMNS: Column[] = [
  { title: "ID", width: 6, cell: (e) => String(e.id) },
  { title: "RECEIVED", width: 24, cell: (e) => e.receivedAt },
  { title: "EVENT", width: 23, cell: (e) => e.event ?? `(unparsed: ${e.unparsedReason})` },
  { title: "INSTALLATION", width: 12, cell: (e) => e.installationId ?? "-" },
  { title: "ORGANIZATION", width: 12, cell: (e) => e.organizationId ?? "-" },
  {
    title: "TRANSACTION",
    width: 24,
    cell: ({ transaction: t }) =>
      t === null ? "-" : [t.type ?? "?", t.status ?? "?", t.amount === null ? "?" : String(t.amount)].join(" "),
  },
  { title: "DELIVERIES", width: 10, cell: (e) => String(e.deliveryCount) },
  { title: "SECRET", width: 7, cell: (e) => e.secretLabel },
  { title: "NOTE", width: 0, cell: (e) => (e.envelopeMismatch ? "unsigned copy differs" : "") },
];

function line(cells: string[], widths: number[]): string {
  return cells
    .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
    .join("  ")
    .trimEnd();
}

/** Table lines (header first when `header`), each ending in a newline; empty for no events without header. */
export function formatTable(events: readonly EventView[], { header = true } = {}): string {
  const rows = events.map((event) => COLUMNS.map((column) => printable(column.cell(event))));
  const widths = COLUMNS.map((column, i) => Math.max(column.width, column.title.length, ...rows.map((row) => row[i]!.length)));
  const lines = [...(header ? [COLUMNS.map((c) => c.title)] : []), ...rows].map((cells) => line(cells, widths));
  return lines.map((l) => `${l}\n`).join("");
}

/** One JSON object per line. */
export function formatNdjson(records: readonly (EventView & { deliveries?: DeliveryView[] })[]): string {
  return records.map((record) => `${eventJson(record)}\n`).join("");
}

/** Bytes in binary units; `fractionDigits` of the scaled value (one by default). */
export function formatBytes(bytes: number, fractionDigits: (scaled: number) => number = () => 1): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(fractionDigits(value))} ${units[unit]}`;
}

export function formatSeconds(seconds: number): string {
  return `${seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(1)} s`;
}

export function plural(count: number, noun: string, nouns = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : nouns}`;
}
