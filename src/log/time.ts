// The log's time format: ISO-8601 UTC with milliseconds (Date.toISOString), so that string order
// is time order in SQL. Filters accept any ISO-8601 date or date-time and are normalised to it.

/** A date, or a date-time with an explicit zone (Z or ±hh:mm); the form GET /events and the CLI accept. */
export const ISO_TIME_PATTERN = "^\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2}))?$";
const ISO_TIME = new RegExp(ISO_TIME_PATTERN);

/** `value` in the log's own format, or null when it is not a valid ISO-8601 time. */
export function toLogTime(value: string): string | null {
  if (!ISO_TIME.test(value)) return null;
  const time = new Date(value);
  return Number.isNaN(time.getTime()) ? null : time.toISOString();
}
