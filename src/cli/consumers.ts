// `icr-receiver consumers [--json]` and `consumers reset NAME --to ID`: the named consumers'
// positions, read from the log's file, and a reset (safe while the receiver runs: it waits for the
// write lock like any writer).
import { ConsumerError, openConsumers } from "../log/event-log.ts";
import { CliError, command, DATABASE_HELP, DATABASE_OPTIONS, databasePath, EXIT, HELP_OPTION, parse, UsageError } from "./common.ts";

const OPTIONS = { ...HELP_OPTION, ...DATABASE_OPTIONS, json: { type: "boolean" }, to: { type: "string" } } as const;

const HELP = `Usage: icr-receiver consumers [--json] [options]
       icr-receiver consumers reset NAME --to ID [options]

Lists the named consumers (GET /consumers/NAME/events pulls, POST /consumers/NAME/ack moves the
position): each one's position, its lag in events, and when it was created and last moved. reset
sets a consumer's position to ID, backwards too (0: it reads the whole log again), creating it if
there is none of that name.

Options:
  --json                   one JSON object instead of a table
  --to ID                  with reset: the new position (an event id, or 0)

${DATABASE_HELP}`;

export const consumersCommand = command("consumers", "named consumers: positions and lag; reset one", HELP, async (argv, env) => {
  const { values, positionals } = parse(argv, OPTIONS, true);
  const path = databasePath(values, env);
  const [action, name, ...rest] = positionals;
  if (action !== undefined && (action !== "reset" || name === undefined || rest.length > 0)) throw new UsageError("expected no argument, or reset NAME --to ID (see --help)");
  if (action === "reset" && (values.to === undefined || !/^(0|[1-9][0-9]{0,15})$/.test(values.to))) throw new UsageError("reset needs --to ID, an event id or 0");
  let opened;
  try {
    opened = openConsumers(path);
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  try {
    if (action === "reset") {
      const position = opened.consumers.ack(name!, Number(values.to), true);
      process.stdout.write(`${name}: position ${position}\n`);
      return EXIT.ok;
    }
    const list = opened.consumers.list();
    if (values.json) process.stdout.write(`${JSON.stringify({ consumers: list })}\n`);
    else for (const c of list) process.stdout.write(`${c.name}  position ${c.position}  lag ${c.lag}  moved ${c.updatedAt}\n`);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof ConsumerError) throw new UsageError(error.message);
    throw error;
  } finally {
    opened.close();
  }
});
