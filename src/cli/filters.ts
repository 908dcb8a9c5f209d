// The HTTP API's event filters (src/http/events.ts) as command-line options. Pure.
import type { EventFilter } from "../log/query.ts";
import { toLogTime } from "../log/time.ts";
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

export const FILTER_HELP = `Filters (as GET /events):
  --event NAME             event name, as signed
  --installation ID        installation id
  --organization ID        organization id
  --since TIME             received at or after TIME (inclusive)
  --until TIME             received before TIME (exclusive)
  --parsed                 only events whose signed data is a readable event
  --unparsed               only events stored unparsed (GET /events?parsed=false)
TIME is ISO-8601 (2025-01-31, 2025-01-31T12:00:00Z, …+01:00) or an age such as 90s, 15m, 2h, 7d.`;

// The times GET /events accepts, plus ages relative to `now`.
const AGE = /^(\d{1,9})(s|m|h|d)$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A TIME option in the log's own format (UTC ISO-8601 with milliseconds: string order is time order). */
export function parseTime(value: string, option: string, now: Date = new Date()): string {
  const age = AGE.exec(value);
  const time = age
    ? new Date(now.getTime() - Number(age[1]) * UNIT_MS[age[2] as keyof typeof UNIT_MS]).toISOString()
    : toLogTime(value);
  if (time === null) throw new UsageError(`${option}: "${value}" is neither an ISO-8601 time nor an age like 15m`);
  return time;
}

function name(value: string | undefined, option: string): string | undefined {
  if (value === undefined) return undefined;
  if (value.length < 1 || value.length > 256) throw new UsageError(`${option}: must be 1 to 256 characters`);
  return value;
}

export type FilterValues = Partial<Record<Exclude<keyof typeof FILTER_OPTIONS, "parsed" | "unparsed">, string>> & {
  parsed?: boolean;
  unparsed?: boolean;
};

/** The filter part of an EventFilter (order, limit and cursor are each command's business). */
export function toFilter(values: FilterValues, now: Date = new Date()): Omit<EventFilter, "order" | "limit" | "after"> {
  return {
    event: name(values.event, "--event"),
    installation: name(values.installation, "--installation"),
    organization: name(values.organization, "--organization"),
    since: values.since === undefined ? undefined : parseTime(values.since, "--since", now),
    until: values.until === undefined ? undefined : parseTime(values.until, "--until", now),
    parsed: parsedFilter(values),
  };
}

function parsedFilter({ parsed, unparsed }: FilterValues): boolean | undefined {
  if (parsed && unparsed) throw new UsageError("--parsed and --unparsed exclude each other");
  return parsed ? true : unparsed ? false : undefined;
}

/** An `--after` cursor: the id of the last event already seen. */
export function parseCursor(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9][0-9]{0,15}$/.test(value)) throw new UsageError(`--after: "${value}" is not an event id`);
  return Number(value);
}
