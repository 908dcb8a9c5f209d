// `icr-receiver forward status|dead|replay`: forwarding's progress read from the log's file, and
// replays written to it (a running receiver picks them up within a second or two; a stopped one
// when it starts).
import { loadDestinations } from "../config.ts";
import { openForwardProgress, ReplayChoiceError, replaySelection, UnknownDestination, type ReplaySelection } from "../forward/progress.ts";
import { FilterError } from "../log/event-log.ts";
import { command, DATABASE_HELP, DATABASE_OPTIONS, databasePath, EXIT, HELP_OPTION, parse, UsageError, type Env } from "./common.ts";
import { plural } from "./format.ts";

const DESTINATION_OPTIONS = {
  "forward-url": { type: "string" },
  "forwards-file": { type: "string" },
} as const;

const DESTINATION_HELP = `Destinations (as for serve):
  --forward-url URL        one destination, "default" ICR_RECEIVER_FORWARD_URL
  --forwards-file FILE     name=url [events=a,b] lines ICR_RECEIVER_FORWARDS_FILE`;

const OPTIONS = {
  ...HELP_OPTION,
  ...DATABASE_OPTIONS,
  ...DESTINATION_OPTIONS,
  json: { type: "boolean" },
  id: { type: "string" },
  since: { type: "string" },
  until: { type: "string" },
  event: { type: "string" },
  dead: { type: "boolean" },
  destination: { type: "string" },
} as const;

const HELP = `Usage: icr-receiver forward status [--json] [options]
       icr-receiver forward dead [--json] [--destination NAME] [options]
       icr-receiver forward replay (--id N | --since T [--until T] [--event E] | --dead) [--destination NAME] [options]

status: per destination, events delivered, pending (the lag, in events), retrying, dead letters,
and the age of the oldest event not yet delivered. dead: the dead letters, with their last error.
replay: sends events again, with the same webhook-id, to one destination or every one (each only
the events its filter takes); replayed dead letters stop being dead letters. Works against a
running receiver (which picks the replay up within a second or two) and a stopped one.

Options:
  --json                   one JSON object instead of a table
  --id N                   replay one event
  --since T, --until T     replay the events received in [T, T) (ISO-8601 or an age such as 2h)
  --event E                only events named E (with --since)
  --dead                   replay every dead letter
  --destination NAME       only this destination

${DESTINATION_HELP}

${DATABASE_HELP}`;

function destinations(values: { "forward-url"?: string; "forwards-file"?: string }, env: Env) {
  const configured = loadDestinations(values, env);
  if (configured === null) throw new UsageError("no destination configured (--forward-url, --forwards-file or their ICR_RECEIVER_* variables)");
  return configured;
}

function selection(values: { id?: string; since?: string; until?: string; event?: string; dead?: boolean }): ReplaySelection {
  if (values.id !== undefined && !/^[1-9][0-9]{0,15}$/.test(values.id)) throw new UsageError(`--id: "${values.id}" is not an event id`);
  try {
    return replaySelection({ ...values, id: values.id === undefined ? undefined : Number(values.id) });
  } catch (error) {
    if (error instanceof ReplayChoiceError) throw new UsageError("give exactly one of --id N, --since T (with --until and --event if wanted) or --dead");
    if (error instanceof FilterError) throw new UsageError(`--${error.message}`);
    throw error;
  }
}

const age = (seconds: number | null) => (seconds === null ? "-" : seconds < 120 ? `${Math.round(seconds)}s` : seconds < 7200 ? `${Math.round(seconds / 60)}m` : `${(seconds / 3600).toFixed(1)}h`);

export const forwardCommand = command("forward", "forwarding: status, dead letters, replay", HELP, async (argv, env) => {
  const { values, positionals } = parse(argv, OPTIONS, true);
  const [action, ...rest] = positionals;
  if (rest.length > 0 || !["status", "dead", "replay"].includes(action ?? "")) throw new UsageError("expected status, dead or replay (see --help)");
  const progress = openForwardProgress(databasePath(values, env), destinations(values, env));
  try {
    if (action === "status") {
      const status = progress.status();
      if (values.json) process.stdout.write(`${JSON.stringify({ destinations: status })}\n`);
      else {
        for (const d of status) {
          process.stdout.write(
            `${d.name}  ${d.url}\n  delivered ${d.delivered}, pending ${d.pending}, retrying ${d.retrying}, dead letters ${d.deadLetters}, oldest undelivered ${age(d.oldestUndeliveredAgeSeconds)}\n`,
          );
        }
      }
      return EXIT.ok;
    }
    if (action === "dead") {
      const letters = progress.deadLetters(values.destination);
      if (values.json) process.stdout.write(`${JSON.stringify({ deadLetters: letters })}\n`);
      else for (const l of letters) process.stdout.write(`${l.destination}  event ${l.eventId}  ${l.event ?? "(unparsed)"}  ${l.attempts} attempts  dead ${l.deadAt}  ${l.lastError}\n`);
      return EXIT.ok;
    }
    const requested = progress.replay(selection(values), values.destination);
    process.stdout.write(`replay: ${plural(requested, "send")} asked for\n`);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof UnknownDestination) throw new UsageError(error.message);
    throw error;
  } finally {
    progress.close();
  }
});
