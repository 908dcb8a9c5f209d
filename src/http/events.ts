// The query API over the log: GET /events (filtered, keyset-paginated) and GET /events/:id.
import { Elysia, t } from "elysia";
import { eventJson, pageJson, type EventReader } from "../log/event-log.ts";
import { ISO_TIME_PATTERN, toLogTime } from "../log/time.ts";
import { bearerAuth } from "./auth.ts";
import { HttpError } from "./errors.ts";

const CURSOR = "^[1-9][0-9]{0,15}$";
// Each schema carries its own error text: Elysia's validation errors do not always say which
// parameter failed (a coerced number's error has an empty path).
const name = (parameter: string) =>
  t.Optional(t.String({ minLength: 1, maxLength: 256, error: `${parameter} must be 1 to 256 characters` }));
const isoTime = (parameter: string) =>
  t.Optional(t.String({ pattern: ISO_TIME_PATTERN, error: `${parameter} must be an ISO-8601 time` }));

export const EventsQuery = t.Object({
  event: name("event"),
  installation: name("installation"),
  organization: name("organization"),
  since: isoTime("since"),
  until: isoTime("until"),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 50, error: "limit must be an integer from 1 to 1000" })),
  order: t.Optional(t.UnionEnum(["asc", "desc"], { default: "desc", error: "order must be asc or desc" })),
  after: t.Optional(t.String({ pattern: CURSOR, error: "after must be the next cursor of a previous page" })),
  parsed: t.Optional(t.UnionEnum(["true", "false"], { error: "parsed must be true or false" })),
});

// Elysia drops unknown query parameters instead of refusing them, and a repeated one becomes an
// array or its last value: a typo must not silently widen a query, nor a repeat pick a value.
function refuseUnknownParameters(request: Request): void {
  const seen = new Set<string>();
  for (const key of new URL(request.url).searchParams.keys()) {
    if (!Object.hasOwn(EventsQuery.properties, key)) {
      throw new HttpError(400, "invalid_parameter", `unknown parameter: ${key}`);
    }
    if (seen.has(key)) throw new HttpError(400, "invalid_parameter", `repeated parameter: ${key}`);
    seen.add(key);
  }
}

/** ISO-8601 in, the log's own format out, so string comparison is time order. */
function logTime(value: string | undefined, parameter: string): string | undefined {
  if (value === undefined) return undefined;
  const time = toLogTime(value);
  if (time === null) throw new HttpError(400, "invalid_parameter", `${parameter} is not a valid time`);
  return time;
}

const json = (text: string) => new Response(text, { headers: { "content-type": "application/json" } });

export interface EventsApiOptions {
  events: EventReader;
  queryToken: string;
  /** Called for every successful answer, for the request log. */
  onServed?: (request: Request) => void;
}

export const eventsApi = ({ events, queryToken, onServed = () => {} }: EventsApiOptions) =>
  new Elysia({ name: "events-api" })
    .use(bearerAuth(queryToken))
    .onAfterHandle(({ request }) => onServed(request))
    .get(
      "/events",
      ({ query }) => {
        const page = events.list({
          event: query.event,
          installation: query.installation,
          organization: query.organization,
          since: logTime(query.since, "since"),
          until: logTime(query.until, "until"),
          limit: query.limit ?? 50,
          order: query.order ?? "desc",
          after: query.after === undefined ? undefined : Number(query.after),
          parsed: query.parsed === undefined ? undefined : query.parsed === "true",
        });
        return json(pageJson(page));
      },
      // On transform, before validation: a repeated parameter must be named, not fail as a type.
      { query: EventsQuery, transform: ({ request }) => refuseUnknownParameters(request) },
    )
    .get(
      "/events/:id",
      ({ params }) => {
        const event = events.get(params.id);
        if (event === null) throw new HttpError(404, "not_found", `no event ${params.id}`);
        return json(eventJson(event));
      },
      { params: t.Object({ id: t.Integer({ minimum: 1, error: "id must be a positive integer" }) }) },
    );
