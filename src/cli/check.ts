// `icr-receiver check`: is the event log sound? The checks are the log's own (src/log/check.ts);
// this prints their report.
import { APPEND_ONLY_TRIGGERS, type CheckReport } from "../log/event-log.ts";
import { command, DATABASE_HELP, DATABASE_OPTIONS, databasePath, EXIT, HELP_OPTION, openReadOnly, parse } from "./common.ts";
import { plural } from "./format.ts";

function formatReport(report: CheckReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines = [`${report.database}`];
  for (const check of report.checks) {
    lines.push(`  ${check.ok ? "ok  " : "FAIL"}  ${check.name.padEnd(width)}  ${check.summary}`);
    for (const problem of check.problems ?? []) lines.push(`        ${" ".repeat(width)}  - ${problem}`);
  }
  const failed = report.checks.filter((c) => !c.ok).length;
  lines.push(failed === 0 ? "all checks passed" : `${plural(failed, "check")} failed`);
  return lines.map((l) => `${l}\n`).join("");
}

const OPTIONS = { ...HELP_OPTION, ...DATABASE_OPTIONS, json: { type: "boolean" } } as const;

const HELP = `Usage: icr-receiver check [options]

Checks the event log, read-only (safe while the server runs): PRAGMA integrity_check, foreign
keys, the append-only triggers (${APPEND_ONLY_TRIGGERS.map((t) => t.name).join(", ")}),
the tamper-evidence hash chain of every row, migrations all applied, counts (events, unparsed
events, deliveries, duplicates; one first delivery per event, no payload stored as two events),
event_keys against the events it is copied from, deliveries stored before 0.4.0 that keep a
credential header (reported, not a failure: append-only rows cannot be rewritten), and
forwarding's progress (none past the log's end, no lane past its destination, no dead letter or
replay of an event not in the log).

Options:
  --json                   print the report as one JSON object

${DATABASE_HELP}`;

export const checkCommand = command("check", "check integrity, append-only triggers, hash chain, migrations, counts, event keys, forwarding", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  const path = databasePath(values, env);
  const log = openReadOnly(path);
  try {
    const report = log.check();
    process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : formatReport(report));
    return report.ok ? EXIT.ok : EXIT.failed;
  } finally {
    log.close();
  }
});
