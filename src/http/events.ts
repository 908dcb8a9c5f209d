// The query API over the log: GET /events (filtered, keyset-paginated) and GET /events/:id.
import { Elysia, t } from "elysia";
import type { EventQueries } from "../log/query.ts";
import { bearerAuth } from "./auth.ts";
import { HttpError } from "./errors.ts";

const ISO_TIME = "^\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2}))?$";
const CURSOR = "^[1-9][0-9]{0,15}$";
const name = (description: string) => t.Optional(t.String({ minLength: 1, maxLength: 256, description }));

export const EventsQuery = t.Object(
  {
    event: name("event name, as signed"),
    installation: name("installation id"),
    organization: name("organization id"),
    since: t.Optional(t.String({ pattern: ISO_TIME, description: "receive time, inclusive" })),
    until: t.Optional(t.String({ pattern: ISO_TIME, description: "receive time, exclusive" })),
    limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 50 })),
    order: t.Optional(t.UnionEnum(["asc", "desc"], { default: "desc" })),
    after: t.Optional(t.String({ pattern: CURSOR, description: "the `next` cursor of the previous page" })),
  },
  { additionalProperties: false },
);

/** ISO-8601 in, the log's own format (UTC, milliseconds) out, so string comparison is time order. */
function logTime(value: string | undefined, parameter: string): string | undefined {
  if (value === undefined) return undefined;
  const time = new Date(value);
  if (Number.isNaN(time.getTime())) throw new HttpError(400, "invalid_parameter", `invalid or unknown parameter: ${parameter}`);
  return time.toISOString();
}

export const eventsApi = ({ queries, queryToken }: { queries: EventQueries; queryToken: string }) =>
  new Elysia({ name: "events-api" })
    .use(bearerAuth(queryToken))
    .get(
      "/events",
      ({ query }) =>
        queries.list({
          event: query.event,
          installation: query.installation,
          organization: query.organization,
          since: logTime(query.since, "since"),
          until: logTime(query.until, "until"),
          limit: query.limit ?? 50,
          order: query.order ?? "desc",
          after: query.after === undefined ? undefined : Number(query.after),
        }),
      { query: EventsQuery },
    )
    .get(
      "/events/:id",
      ({ params }) => {
        const event = queries.get(params.id);
        if (event === null) throw new HttpError(404, "not_found", `no event ${params.id}`);
        return event;
      },
      { params: t.Object({ id: t.Integer({ minimum: 1 }) }) },
    );
