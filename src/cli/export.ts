// `icr-receiver export`: NDJSON of events (optionally with their raw deliveries), page by page from
// one consistent snapshot of the log, to stdout or a file that appears only once it is complete.
import { closeSync, createWriteStream, openSync, rmSync } from "node:fs";
import { resolve } from "node:path";
import type { DeliveryView, EventView } from "../log/event-log.ts";
import {
  checkDestination,
  CliError,
  command,
  DATABASE_HELP,
  DATABASE_OPTIONS,
  databasePath,
  EXIT,
  HELP_OPTION,
  openReadOnly,
  Output,
  parse,
  positiveInteger,
  publish,
  stderrLine,
  temporaryPath,
} from "./common.ts";
import { FILTER_HELP, FILTER_OPTIONS, toFilter } from "./filters.ts";
import { formatBytes, formatNdjson, formatSeconds, plural } from "./format.ts";

const OPTIONS = {
  ...HELP_OPTION,
  ...DATABASE_OPTIONS,
  ...FILTER_OPTIONS,
  deliveries: { type: "boolean" },
  output: { type: "string", short: "o" },
  force: { type: "boolean" },
  "page-size": { type: "string" },
  quiet: { type: "boolean", short: "q" },
} as const;

const HELP = `Usage: icr-receiver export [options] [--since TIME] [--until TIME]

Writes the events of the log as NDJSON, oldest first, one JSON object per line (the shape of
GET /events/:id). Reads one consistent snapshot, read-only, page by page: safe while the server
runs, and memory stays flat however large the log. Progress (every few seconds) and a summary
line (count, bytes, seconds) go to stderr.

Options:
  --deliveries             include each event's raw deliveries ("deliveries": [...], headers and body as received)
  -o, --output FILE        write to FILE (mode 0600; it appears only once complete) instead of stdout
  --force                  replace FILE if it exists
  --page-size N            events read per query, 1-10000 (default 500)
  -q, --quiet              no progress or summary on stderr

${FILTER_HELP}

${DATABASE_HELP}`;

interface ExportStats {
  events: number;
  deliveries: number | null;
  bytes: number;
  seconds: number;
}

function formatExportSummary(stats: ExportStats, destination: string): string {
  const parts = [plural(stats.events, "event")];
  if (stats.deliveries !== null) parts.push(plural(stats.deliveries, "delivery", "deliveries"));
  return `export: ${parts.join(", ")}, ${formatBytes(stats.bytes)} in ${formatSeconds(stats.seconds)} to ${destination}`;
}

const PROGRESS_EVERY_MS = 2000;

export const exportCommand = command("export", "NDJSON of events (and deliveries) for a time range", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  const filter = toFilter(values);
  const pageSize = positiveInteger(values["page-size"], "--page-size", 500, 10_000);
  const destination = values.output === undefined ? null : resolve(values.output);
  if (destination !== null) checkDestination(destination, values.force === true);
  const log = openReadOnly(databasePath(values, env));

  const temporary = destination === null ? null : temporaryPath(destination);
  let fd: number | null = null;
  try {
    if (temporary !== null) fd = openSync(temporary, "wx", 0o600);
    const out = new Output(fd === null ? process.stdout : createWriteStream("", { fd, autoClose: false }));

    const started = performance.now();
    let lastProgress = started;
    const stats: ExportStats = { events: 0, deliveries: values.deliveries ? 0 : null, bytes: 0, seconds: 0 };
    // One snapshot for the whole export: pages cannot disagree.
    await log.snapshot(async () => {
      for (let after: number | undefined; ; ) {
        const page = log.list({ ...filter, order: "asc", limit: pageSize, after });
        let records: (EventView & { deliveries?: DeliveryView[] })[] = page.events;
        if (values.deliveries && page.events.length > 0) {
          const byEvent = log.deliveriesOf(page.events.map((e) => e.id));
          records = page.events.map((event) => ({ ...event, deliveries: byEvent.get(event.id) ?? [] }));
          stats.deliveries! += records.reduce((sum, r) => sum + r.deliveries!.length, 0);
        }
        await out.write(formatNdjson(records));
        if (out.closed) throw new CliError("the output was closed before the export finished");
        stats.events += records.length;
        const now = performance.now();
        if (!values.quiet && now - lastProgress >= PROGRESS_EVERY_MS) {
          lastProgress = now;
          stderrLine(`export: ${plural(stats.events, "event")} so far, ${formatBytes(out.bytes)}, ${formatSeconds((now - started) / 1000)}`);
        }
        if (page.next === null) break;
        after = Number(page.next);
      }
    });
    if (fd !== null && temporary !== null && destination !== null) {
      await out.end();
      closeSync(fd);
      fd = null;
      publish(temporary, destination, values.force === true);
    }
    stats.bytes = out.bytes;
    stats.seconds = (performance.now() - started) / 1000;
    if (!values.quiet) stderrLine(formatExportSummary(stats, destination ?? "stdout"));
    return EXIT.ok;
  } finally {
    if (fd !== null) closeSync(fd);
    if (temporary !== null) rmSync(temporary, { force: true });
    log.close();
  }
});
