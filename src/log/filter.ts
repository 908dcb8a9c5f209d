// What GET /events and the CLI's `events`, `tail` and `export` may ask of the log, parsed from the
// strings they were given (query parameters, options) by one parser, with its defaults stated once.
// Pure: strings in, an EventFilter or the parameter that is wrong out.
import type { EventFilter } from "./query.ts";

/** Every parameter, as GET /events names it (the CLI's options have the same names). */
export const FILTER_PARAMETERS = ["event", "installation", "organization", "since", "until", "parsed", "limit", "order", "after"] as const;
type FilterParameter = (typeof FILTER_PARAMETERS)[number];
export type FilterValues = Partial<Record<FilterParameter, string>>;

export const FILTER_DEFAULTS = { limit: 50, maxLimit: 1000, order: "desc" } as const;

/** A parameter that cannot be used: its name, and why (a message that never repeats a long value). */
export class FilterError extends Error {
  constructor(
    readonly parameter: FilterParameter,
    message: string,
  ) {
    super(`${parameter}: ${message}`);
  }
}

/** A date, or a date-time with an explicit zone (Z or ±hh:mm). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;
/** An age: that long before now. */
const AGE = /^(\d{1,9})(s|m|h|d)$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const CURSOR = /^[1-9][0-9]{0,15}$/;
const INTEGER = /^\d{1,9}$/;

/**
 * An ISO-8601 time or an age (90s, 15m, 2h, 7d) in the log's own format: UTC ISO-8601 with
 * milliseconds, so that string order is time order.
 */
function parseTime(value: string, now: Date = new Date()): string | null {
  const age = AGE.exec(value);
  if (age) return new Date(now.getTime() - Number(age[1]) * UNIT_MS[age[2] as keyof typeof UNIT_MS]).toISOString();
  if (!ISO_TIME.test(value)) return null;
  const time = new Date(value);
  return Number.isNaN(time.getTime()) ? null : time.toISOString();
}

function name(values: FilterValues, parameter: "event" | "installation" | "organization"): string | undefined {
  const value = values[parameter];
  if (value === undefined) return undefined;
  if (value.length < 1 || value.length > 256) throw new FilterError(parameter, "must be 1 to 256 characters");
  return value;
}

function time(values: FilterValues, parameter: "since" | "until", now: Date): string | undefined {
  const value = values[parameter];
  if (value === undefined) return undefined;
  const parsed = parseTime(value, now);
  if (parsed === null) throw new FilterError(parameter, "must be an ISO-8601 time (2025-01-31, 2025-01-31T12:00:00Z, …+01:00) or an age such as 15m");
  return parsed;
}

/** The filter `values` ask for; throws FilterError naming the first parameter that is wrong. */
export function parseEventFilter(values: FilterValues, now: Date = new Date()): EventFilter {
  const { parsed, limit, order = FILTER_DEFAULTS.order, after } = values;
  if (parsed !== undefined && parsed !== "true" && parsed !== "false") throw new FilterError("parsed", "must be true or false");
  if (order !== "asc" && order !== "desc") throw new FilterError("order", "must be asc or desc");
  const count = limit === undefined ? FILTER_DEFAULTS.limit : INTEGER.test(limit) ? Number(limit) : NaN;
  if (!(count >= 1 && count <= FILTER_DEFAULTS.maxLimit)) throw new FilterError("limit", `must be a whole number from 1 to ${FILTER_DEFAULTS.maxLimit}`);
  if (after !== undefined && !CURSOR.test(after)) throw new FilterError("after", "must be the next cursor of a previous page (an event id)");
  return {
    event: name(values, "event"),
    installation: name(values, "installation"),
    organization: name(values, "organization"),
    since: time(values, "since", now),
    until: time(values, "until", now),
    parsed: parsed === undefined ? undefined : parsed === "true",
    order,
    limit: count,
    after: after === undefined ? undefined : Number(after),
  };
}
