// `icr-receiver reconcile`: compares the log with what ICR's API says (active installations and
// their transactions) and reports what the log is missing, by kind. It reports; it never writes an
// event. Each run is kept beside the log (reconcile_runs), a failed one too.
import { ICR_API_HELP_LINES, loadIcrApi, ConfigError } from "../config.ts";
import { FilterError, openReconcileRuns, parseEventFilter, type ReconcileRunRecord } from "../log/event-log.ts";
import { IcrApi, IcrApiError } from "../reconcile/icr-api.ts";
import { GAP_KINDS, reconcile, runRecord, type Gap, type ReconcileResult } from "../reconcile/reconcile.ts";
import pkg from "../../package.json";
import { CliError, command, DATABASE_HELP, DATABASE_OPTIONS, databasePath, EXIT, HELP_OPTION, openReadOnly, parse, positiveInteger, stderrLine, UsageError } from "./common.ts";
import { plural, printable } from "./format.ts";

const OPTIONS = {
  ...HELP_OPTION,
  ...DATABASE_OPTIONS,
  "icr-app-id": { type: "string" },
  "icr-private-key-file": { type: "string" },
  "icr-api-url": { type: "string" },
  since: { type: "string" },
  concurrency: { type: "string" },
  json: { type: "boolean" },
} as const;

const HELP = `Usage: icr-receiver reconcile [--since T] [--json] [options]

Asks ICR's API, as the app, which installations are active and which transactions each one has,
and compares that with the event log. Reports, by kind:
  missed_installation    ICR lists the installation as active; the log never saw its installed
                         event (or holds it as uninstalled)
  missed_uninstallation  the log holds the installation as installed; ICR no longer lists it
  missed_transaction     ICR has the transaction; the log has no event for it, or only an older state
It never writes an event (only ICR can sign one): what to do with a gap is in the README. Each run
is kept in the log's file (table reconcile_runs). Changes on ICR's side in the last 2 minutes are
left for the next run (their webhook may be on its way).

Options:
  --since T                compare transactions (and installations) created or updated since T
                           (ISO-8601 or an age such as 7d; default: the log's first event)
  --concurrency N          installations read at once (default 4)
  --json                   one JSON object: the counts and each gap with what ICR and the log say

ICR's API (as for serve):
${ICR_API_HELP_LINES}

${DATABASE_HELP}

Exit status 1 also means: gaps were found. A credential ICR refuses (401) exits 78.`;

function sinceOption(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  try {
    return parseEventFilter({ since: value }).since;
  } catch (error) {
    if (error instanceof FilterError) throw new UsageError(`--${error.message}`);
    throw error;
  }
}

const describeIcr = (gap: Gap) => {
  if (gap.icr === null) return "not listed as active";
  if (gap.kind === "missed_installation") return `active, created ${gap.icr.createdAt ?? "?"}`;
  return `${gap.icr.state ?? "?"} ${gap.icr.action ?? ""} ${gap.icr.amount ?? ""}, updated ${gap.icr.updatedAt ?? "?"}`.replace(/\s+/g, " ");
};
const describeLog = (gap: Gap) =>
  gap.log === null ? "no event" : `${gap.log.status ?? gap.log.event} (event ${gap.log.eventId}, ${gap.log.receivedAt})`;

function table(result: ReconcileResult): string {
  const rows = result.gaps.map((g) => [g.kind, g.installationId, g.transactionId ?? "-", describeIcr(g), describeLog(g)].map(printable));
  const header = ["KIND", "INSTALLATION", "TRANSACTION", "ICR SAYS", "LOG HAS"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  const counts = GAP_KINDS.map((kind) => `${kind} ${result.counts[kind]}`).join(", ");
  const summary = `reconcile: ${plural(result.gaps.length, "gap")} (${counts}); ICR lists ${plural(result.installationsChecked, "active installation")}, ${plural(result.transactionsChecked, "transaction")}; compared since ${result.since ?? "the start (empty log)"}\n`;
  return summary + (rows.length === 0 ? "" : [header, ...rows].map(line).join("\n") + "\n");
}

export const reconcileCommand = command("reconcile", "compare the log with ICR's API: missed installations and transactions", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  const since = sinceOption(values.since);
  const concurrency = positiveInteger(values.concurrency, "--concurrency", 4, 64);
  const config = loadIcrApi(values, env);
  if (config === null) throw new ConfigError("no ICR app configured: give --icr-app-id / ICR_RECEIVER_ICR_APP_ID and the app's private key");
  const path = databasePath(values, env);
  const reader = openReadOnly(path);
  const startedAt = new Date().toISOString();
  let outcome: { result: ReconcileResult } | { startedAt: string; error: string };
  try {
    const api = new IcrApi(config, { userAgent: `icr-receiver/${pkg.version}` });
    outcome = { result: await reconcile(api, reader, { since, concurrency }) };
  } catch (error) {
    if (!(error instanceof IcrApiError)) throw error;
    outcome = { startedAt, error: error.message };
    keep(path, runRecord("cli", outcome));
    throw new CliError(error.message, error.credential === null ? EXIT.failed : EXIT.config);
  } finally {
    reader.close();
  }
  const { result } = outcome;
  keep(path, runRecord("cli", outcome));
  process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : table(result));
  return result.gaps.length === 0 ? EXIT.ok : EXIT.failed;
});

/** Keeps the run; a log that cannot take it (not migrated, read-only) loses only the record, said on stderr. */
function keep(path: string, run: ReconcileRunRecord): void {
  try {
    const { runs, close } = openReconcileRuns(path);
    try {
      runs.record(run);
    } finally {
      close();
    }
  } catch (error) {
    const message = (error as Error).message.split("\n")[0] ?? "";
    stderrLine(`icr-receiver reconcile: the run was not kept (${/no such table/.test(message) ? "run icr-receiver migrate first" : message})`);
  }
}
