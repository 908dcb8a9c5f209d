// The operator's commands of `icr-receiver`, by name (`serve` stays in src/main.ts). Each `run`
// takes the arguments after the command name and resolves with the process exit status.
import { backupCommand } from "./backup.ts";
import { checkCommand } from "./check.ts";
import { consumersCommand } from "./consumers.ts";
import type { Command } from "./common.ts";
import { eventsCommand } from "./events.ts";
import { exportCommand } from "./export.ts";
import { forwardCommand } from "./forward.ts";
import { importCommand } from "./import.ts";
import { migrateCommand } from "./migrate.ts";
import { reconcileCommand } from "./reconcile.ts";
import { sendCommand } from "./send.ts";
import { tailCommand } from "./tail.ts";
import { verifyCommand } from "./verify.ts";


export const commands: Record<string, Command> = {
  migrate: migrateCommand,
  check: checkCommand,
  events: eventsCommand,
  tail: tailCommand,
  export: exportCommand,
  backup: backupCommand,
  import: importCommand,
  forward: forwardCommand,
  consumers: consumersCommand,
  reconcile: reconcileCommand,
  verify: verifyCommand,
  send: sendCommand,
};

/** The command list for the top-level --help. */
export const COMMANDS_HELP = `Commands (each takes --help):
${Object.entries(commands)
  .map(([name, { summary }]) => `  ${name.padEnd(10)} ${summary}`)
  .join("\n")}`;
