// Named consumers over HTTP, behind the query token: an app that cannot take an incoming request
// pulls the events after its position and acknowledges how far it got.
import { Elysia, t } from "elysia";
import { ConsumerError, FILTER_PARAMETERS, FilterError, pageJson, parseEventFilter, type Consumers, type EventReader } from "../log/event-log.ts";
import { bearerAuth } from "./auth.ts";
import { HttpError } from "./errors.ts";
import { queryParameters } from "./query-parameters.ts";

/** GET /events' filters and page size; the position is the cursor, and the order is the log's. */
const PULL_PARAMETERS: readonly string[] = [...FILTER_PARAMETERS.filter((p) => p !== "after" && p !== "order"), "from"];

function refused(error: unknown): never {
  if (error instanceof ConsumerError) throw new HttpError(400, error.reason, error.message);
  if (error instanceof FilterError) throw new HttpError(400, "invalid_parameter", error.message);
  throw error;
}

export const consumersApi = ({ consumers, events, queryToken }: { consumers: Consumers; events: EventReader; queryToken: string }) =>
  new Elysia({ name: "consumers-api" })
    .use(bearerAuth(queryToken))
    .get("/consumers", () => ({ consumers: consumers.list() }))
    .get("/consumers/:name/events", ({ params, request }) => {
      const { from, ...filterValues } = queryParameters(request, PULL_PARAMETERS);
      if (from !== undefined && from !== "latest") throw new HttpError(400, "invalid_parameter", "from: must be latest");
      try {
        const filter = parseEventFilter(filterValues);
        const position = consumers.open(params.name, from === "latest");
        return new Response(pageJson(events.list({ ...filter, order: "asc", after: position })), { headers: { "content-type": "application/json" } });
      } catch (error) {
        refused(error);
      }
    })
    .post(
      "/consumers/:name/ack",
      ({ params, body }) => {
        try {
          return { name: params.name, position: consumers.ack(params.name, body.through, body.reset === true) };
        } catch (error) {
          refused(error);
        }
      },
      {
        body: t.Object({
          through: t.Integer({ minimum: 0, error: "through must be an event id (0 or more)" }),
          reset: t.Optional(t.Boolean({ error: "reset must be true or false" })),
        }),
      },
    )
    .delete("/consumers/:name", ({ params, set }) => {
      try {
        if (!consumers.remove(params.name)) throw new HttpError(404, "not_found", `no consumer ${params.name}`);
      } catch (error) {
        refused(error);
      }
      set.status = 204;
      return null;
    });
