// Forwarding over HTTP, behind the query token: each destination's progress, its dead letters,
// and replays (which the forwarder picks up within a second).
import { Elysia, t } from "elysia";
import { ForwardProgress, ReplayChoiceError, replaySelection, UnknownDestination, type ReplaySelection } from "../forward/progress.ts";
import { FilterError } from "../log/event-log.ts";
import { bearerAuth } from "./auth.ts";
import { HttpError } from "./errors.ts";

const ReplayRequest = t.Object({
  id: t.Optional(t.Integer({ minimum: 1, error: "id must be an event id" })),
  since: t.Optional(t.String()),
  until: t.Optional(t.String()),
  event: t.Optional(t.String()),
  dead: t.Optional(t.Literal(true, { error: "dead must be true" })),
  destination: t.Optional(t.String()),
});

function selection(body: typeof ReplayRequest.static): ReplaySelection {
  try {
    return replaySelection(body);
  } catch (error) {
    if (error instanceof ReplayChoiceError) throw new HttpError(400, "invalid_body", "give exactly one of id, since (with until and event if wanted) or dead");
    if (error instanceof FilterError) throw new HttpError(400, "invalid_body", error.message);
    throw error;
  }
}

function known<T>(read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof UnknownDestination) throw new HttpError(404, "not_found", error.message);
    throw error;
  }
}

export const forwardApi = ({ progress, queryToken }: { progress: ForwardProgress; queryToken: string }) =>
  new Elysia({ name: "forward-api" })
    .use(bearerAuth(queryToken))
    .get("/forward/status", () => ({ destinations: progress.status() }))
    .get("/forward/dead", ({ query }) => ({ deadLetters: known(() => progress.deadLetters(query.destination)) }), {
      query: t.Object({ destination: t.Optional(t.String()) }),
    })
    .post("/forward/replay", ({ body }) => ({ requested: known(() => progress.replay(selection(body), body.destination)) }), {
      body: ReplayRequest,
    });
