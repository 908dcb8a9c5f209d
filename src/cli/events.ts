// `icr-receiver events`: one page of the log, filtered as GET /events, read straight from the file.
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
  stderrLine,
} from "./common.ts";
import { FILTER_HELP, FILTER_OPTIONS, PAGE_HELP, PAGE_OPTIONS, toFilter } from "./filters.ts";
import { formatNdjson, formatTable } from "./format.ts";

const OPTIONS = {
  ...HELP_OPTION,
  ...DATABASE_OPTIONS,
  ...FILTER_OPTIONS,
  ...PAGE_OPTIONS,
  ndjson: { type: "boolean" },
} as const;

const HELP = `Usage: icr-receiver events [options]

Lists events from the event log file, read-only (safe while the server writes it), newest first
by default, one page at a time as GET /events does. When there is a next page, its --after cursor
is printed on stderr.

Options:
${PAGE_HELP}
  --ndjson                 one JSON object per event (as GET /events returns them) instead of a table

${FILTER_HELP}

${DATABASE_HELP}`;

export const eventsCommand = command("events", "list events (read-only, filters as GET /events)", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  const filter = toFilter(values);
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
