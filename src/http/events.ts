// The query API over the log: GET /events (filtered, keyset-paginated) and GET /events/:id.
import { Elysia, t } from "elysia";
import { eventJson, FILTER_PARAMETERS, FilterError, pageJson, parseEventFilter, type EventReader } from "../log/event-log.ts";
import { bearerAuth } from "./auth.ts";
import { HttpError } from "./errors.ts";
import { queryParameters } from "./query-parameters.ts";

// Strings here; what each may be is the filter parser's (shared with the CLI), so that both refuse
// the same values with the same words.
const EventsQuery = t.Object(Object.fromEntries(FILTER_PARAMETERS.map((parameter) => [parameter, t.Optional(t.String())])));

const json = (text: string) => new Response(text, { headers: { "content-type": "application/json" } });

interface EventsApiOptions {
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
        let filter;
        try {
          filter = parseEventFilter(query);
        } catch (error) {
          if (error instanceof FilterError) throw new HttpError(400, "invalid_parameter", error.message);
          throw error;
        }
        return json(pageJson(events.list(filter)));
      },
      // On transform, before validation: a repeated parameter must be named, not fail as a type.
      { query: EventsQuery, transform: ({ request }) => void queryParameters(request, FILTER_PARAMETERS) },
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
