// The event filters of GET /events as command-line options, parsed by the same parser (with the
// same defaults and the same words for what is wrong) as the HTTP API.
import { FILTER_DEFAULTS, FilterError, parseEventFilter, type EventFilter } from "../log/event-log.ts";
import { UsageError } from "./common.ts";

export const FILTER_OPTIONS = {
  event: { type: "string" },
  installation: { type: "string" },
  organization: { type: "string" },
  since: { type: "string" },
  until: { type: "string" },
  parsed: { type: "boolean" },
  unparsed: { type: "boolean" },
} as const;

/** `events` pages as GET /events does. */
export const PAGE_OPTIONS = {
  limit: { type: "string" },
  order: { type: "string" },
  after: { type: "string" },
} as const;

export const FILTER_HELP = `Filters (as GET /events):
  --event NAME             event name, as signed
  --installation ID        installation id
  --organization ID        organization id
  --since TIME             received at or after TIME (inclusive)
  --until TIME             received before TIME (exclusive)
  --parsed                 only events whose signed data is a readable event
  --unparsed               only events stored unparsed (GET /events?parsed=false)
TIME is ISO-8601 (2025-01-31, 2025-01-31T12:00:00Z, …+01:00) or an age such as 90s, 15m, 2h, 7d.`;

export const PAGE_HELP = `  --limit N                events per page, 1-${FILTER_DEFAULTS.maxLimit} (default ${FILTER_DEFAULTS.limit})
  --order asc|desc         by id, i.e. arrival order (default ${FILTER_DEFAULTS.order})
  --after ID               the cursor of the previous page (the last id it showed)`;

type StringOption = Exclude<keyof typeof FILTER_OPTIONS | keyof typeof PAGE_OPTIONS, "parsed" | "unparsed">;
type FilterOptionValues = Partial<Record<StringOption, string>> & { parsed?: boolean; unparsed?: boolean };

/** The EventFilter these options ask for; a wrong one is a usage error naming its option. */
export function toFilter({ parsed, unparsed, ...strings }: FilterOptionValues, now: Date = new Date()): EventFilter {
  if (parsed && unparsed) throw new UsageError("--parsed and --unparsed exclude each other");
  try {
    return parseEventFilter({ ...strings, parsed: parsed ? "true" : unparsed ? "false" : undefined }, now);
  } catch (error) {
    if (error instanceof FilterError) throw new UsageError(`--${error.message}`);
    throw error;
  }
}
