// `icr-receiver tail [-f]`: the latest events, then (with -f) each new one as it is committed.
import type { EventFilter, EventReader, EventView } from "../log/event-log.ts";
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
  UsageError,
} from "./common.ts";
import { FILTER_HELP, FILTER_OPTIONS, toFilter } from "./filters.ts";
import { formatNdjson, formatTable } from "./format.ts";

const OPTIONS = {
  ...HELP_OPTION,
  ...DATABASE_OPTIONS,
  ...FILTER_OPTIONS,
  lines: { type: "string", short: "n" },
  follow: { type: "boolean", short: "f" },
  interval: { type: "string" },
  ndjson: { type: "boolean" },
} as const;

const HELP = `Usage: icr-receiver tail [-f] [options]

Prints the latest events of the log, oldest first, read-only (safe while the server writes it).
With -f, keeps polling the file for events with a higher id and prints each one as it arrives,
until SIGINT (Ctrl-C) or SIGTERM, which end it cleanly (exit status 0).

Options:
  -n, --lines N            how many of the latest events to print first, 0-1000 (default 10)
  -f, --follow             keep printing new events
  --interval MS            how often -f polls, 50-60000 milliseconds (default 500)
  --ndjson                 one JSON object per event instead of a table

${FILTER_HELP}

${DATABASE_HELP}`;

const BATCH = 1000;

/** Resolves after `ms`, or as soon as `stopped` settles. */
function pause(ms: number, stopped: Promise<void>): Promise<void> {
  let timer: Timer | undefined;
  return Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), stopped]).finally(() =>
    clearTimeout(timer),
  );
}

/** Every event after `afterId` that matches, oldest first, a batch at a time. */
function* newEvents(events: EventReader, filter: Omit<EventFilter, "order" | "limit" | "after">, afterId: number) {
  for (let after = afterId; ; ) {
    const page = events.list({ ...filter, order: "asc", limit: BATCH, after });
    if (page.events.length > 0) yield page.events;
    if (page.next === null) return;
    after = Number(page.next);
  }
}

export const tailCommand = command("tail", "print the latest events; -f follows new ones", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  const filter = toFilter(values);
  const lines = values.lines === "0" ? 0 : positiveInteger(values.lines, "--lines", 10, 1000);
  const interval = positiveInteger(values.interval, "--interval", 500, 60_000);
  if (interval < 50) throw new UsageError(`--interval: "${values.interval}" is below 50 milliseconds`);
  const log = openReadOnly(databasePath(values, env));
  const out = new Output(process.stdout);
  const print = (events: EventView[], header: boolean) =>
    out.write(values.ndjson ? formatNdjson(events) : formatTable(events, { header }));

  let stop = () => {};
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  let stopping = false;
  const onSignal = () => {
    stopping = true;
    stop();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    // Ids only grow (the log is append-only and commits are serialised), so "after the highest id
    // seen" misses nothing. Reading the newest id of the whole log (matching or not) *before* the
    // filtered query lets a filtered follow skip past events that did not match.
    const newestId = () => log.list({ order: "desc", limit: 1 }).events[0]?.id ?? 0;
    let lastId = newestId();
    // In descending order `after` means "id below": the latest matching events up to lastId.
    const latest = lines === 0 ? [] : log.list({ ...filter, order: "desc", limit: lines, after: lastId + 1 }).events;
    await print(latest.reverse(), true);
    if (!values.follow) return EXIT.ok;
    while (!stopping && !out.closed) {
      const seen = newestId();
      for (const batch of newEvents(log, filter, lastId)) {
        await print(batch, false);
        lastId = batch[batch.length - 1]!.id;
        if (stopping || out.closed) break;
      }
      if (!stopping) lastId = Math.max(lastId, seen);
      await pause(interval, stopped);
    }
    return EXIT.ok;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    log.close();
  }
});
