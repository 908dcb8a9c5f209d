// `icr-receiver events`: one page of the log, filtered as GET /events, read straight from the file.
import type { EventFilter } from "../log/event-log.ts";
import {
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
  stderrLine,
  UsageError,
} from "./common.ts";
import { FILTER_HELP, FILTER_OPTIONS, parseCursor, toFilter, type FilterValues } from "./filters.ts";
import { formatNdjson, formatTable } from "./format.ts";

const OPTIONS = {
  ...HELP_OPTION,
  ...DATABASE_OPTIONS,
  ...FILTER_OPTIONS,
  limit: { type: "string" },
  order: { type: "string" },
  after: { type: "string" },
  ndjson: { type: "boolean" },
} as const;

const HELP = `Usage: icr-receiver events [options]

Lists events from the event log file, read-only (safe while the server writes it), newest first
by default, one page at a time as GET /events does. When there is a next page, its --after cursor
is printed on stderr.

Options:
  --limit N                events per page, 1-1000 (default 50)
  --order asc|desc         by id, i.e. arrival order (default desc)
  --after ID               the cursor of the previous page (the last id it showed)
  --ndjson                 one JSON object per event (as GET /events returns them) instead of a table

${FILTER_HELP}

${DATABASE_HELP}`;

/** The options as the EventFilter GET /events would build from the same query parameters. */
export function eventsFilter(values: FilterValues & { limit?: string; order?: string; after?: string }): EventFilter {
  const order = values.order ?? "desc";
  if (order !== "asc" && order !== "desc") throw new UsageError(`--order: "${order}" is neither asc nor desc`);
  return {
    ...toFilter(values),
    order,
    limit: positiveInteger(values.limit, "--limit", 50, 1000),
    after: parseCursor(values.after),
  };
}

export const eventsCommand = command("events", "list events (read-only, filters as GET /events)", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  const filter = eventsFilter(values);
  const log = openReadOnly(databasePath(values, env));
  try {
    const page = log.list(filter);
    const out = new Output(process.stdout);
    await out.write(values.ndjson ? formatNdjson(page.events) : formatTable(page.events));
    if (page.next !== null) stderrLine(`more: --after ${page.next}`);
    return EXIT.ok;
  } finally {
    log.close();
  }
});
