// `icr-receiver import`: the deliveries of an `export --deliveries` (another host's log, a backup
// of this one) appended to the log in bulk, each verified again as the webhook route verifies it.
// The event is rebuilt from the verified delivery; nothing unsigned in the export is trusted
// except the receive time, remote address and headers, which are facts of the request, not of ICR.
import { closeSync, openSync, statSync } from "node:fs";
import { ConfigError, loadConfig } from "../config.ts";
import { openEventLogImporter, type EventLogImporter, type ImportedDelivery } from "../log/event-log.ts";
import { parseEnvelope } from "../verify/delivery.ts";
import { sign, SIGNATURE_HEADER, type LabelledSecret } from "../verify/signature.ts";
import { verifyDelivery, type VerifiedDelivery } from "../verify/verify-delivery.ts";
import {
  CliError,
  command,
  DATABASE_HELP,
  DATABASE_OPTIONS,
  databasePath,
  type Env,
  EXIT,
  HELP_OPTION,
  loadSecrets,
  parse,
  positiveInteger,
  SECRET_HELP,
  SECRET_OPTIONS,
  stderrLine,
  UsageError,
} from "./common.ts";
import { formatSeconds, printable } from "./format.ts";

/** The secret label of a delivery taken with --trust-source: its signature matched no configured secret. */
export const UNVERIFIED_LABEL = "imported-unverified";

const OPTIONS = {
  ...HELP_OPTION,
  ...DATABASE_OPTIONS,
  ...SECRET_OPTIONS,
  "query-token-file": { type: "string" },
  "trust-source": { type: "boolean" },
  "batch-size": { type: "string" },
  checkpoints: { type: "string" },
  quiet: { type: "boolean", short: "q" },
} as const;

const DEFAULT_BATCH = 2000;

const HELP = `Usage: icr-receiver import [options] FILE|-

Appends the deliveries of NDJSON as \`export --deliveries\` writes it (FILE, or - for stdin) to the
log, creating and migrating the log if there is none. Each line's "deliveries" (each with
"rawBody", "headers" holding ${SIGNATURE_HEADER}, and optionally "receivedAt" and
"remoteAddress") are verified again with the configured secrets, exactly as the webhook route
verifies them; every other field of the line is ignored: the event is rebuilt from the signed
payload. The receive time (a valid ISO-8601 "receivedAt", else now) and the remote address are
kept; credential headers (and the query token) are redacted as the receiver does.

Appended through the writer's rules, ${DEFAULT_BATCH} deliveries per transaction: a repeat of a
payload already in the log is a duplicate delivery of its event, as always; a delivery the log
already holds (same payload, same receive time, same body) is skipped, so importing the same
file twice adds nothing. Safe beside a running receiver (each transaction waits for the write
lock, as the receiver's writer does). A line that is not JSON, has no deliveries, or holds a
delivery that fails verification is refused (reported on stderr with its line number) and the
rest is imported. Progress every few seconds and a summary go to stderr.

Options:
  --trust-source           also accept deliveries whose signature matches no configured secret
                           (the source log verified them): stored with secret_label
                           "${UNVERIFIED_LABEL}"; the body must still be a signed delivery
  --query-token-file FILE  the query token, redacted from stored headers   ICR_RECEIVER_QUERY_TOKEN_FILE
                           (or ICR_RECEIVER_QUERY_TOKEN=value; also found as for serve)
  --batch-size N           deliveries per transaction, 1-50000 (default ${DEFAULT_BATCH})
  --checkpoints WHO        as for serve: receiver (default) or litestream   ICR_RECEIVER_CHECKPOINTS
                           (litestream: this connection never checkpoints the WAL)
  -q, --quiet              no progress or summary on stderr (refusals are still reported)

${SECRET_HELP}

${DATABASE_HELP}

Exit status 1 here: some lines or deliveries were refused (the rest is imported), or the import
stopped (what was committed before stays; run it again: what is in the log is skipped).`;

/** The environment that locates secrets and the query token (nothing else of serve's matters). */
const CREDENTIAL_ENV = [
  "ICR_RECEIVER_SECRET",
  "ICR_RECEIVER_SECRET_FILE",
  "ICR_RECEIVER_SECRETS_FILE",
  "ICR_RECEIVER_QUERY_TOKEN",
  "ICR_RECEIVER_QUERY_TOKEN_FILE",
  "ICR_RECEIVER_DATA_DIR",
  "CREDENTIALS_DIRECTORY",
] as const;

/** The query token from serve's sources, if one is configured: stored headers never carry it. */
function queryToken(values: Record<string, string | boolean | undefined>, env: Env): string | null {
  const argv = (["secret-file", "secrets-file", "data-dir", "query-token-file"] as const).flatMap((name) =>
    typeof values[name] === "string" ? [`--${name}`, values[name] as string] : [],
  );
  const scoped: Env = Object.fromEntries(CREDENTIAL_ENV.map((name) => [name, env[name]]));
  try {
    return loadConfig(argv, scoped, { generateMissing: false }).config.queryToken;
  } catch (error) {
    if (error instanceof ConfigError && /^no query token configured/.test(error.message)) return null;
    throw error;
  }
}

const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i;

/** The receive time as the receiver writes it (UTC, milliseconds), or null when not a valid ISO-8601 time. */
function receiveTime(value: unknown): string | null {
  if (typeof value !== "string" || !ISO_8601.test(value)) return null;
  const time = Date.parse(value);
  return Number.isNaN(time) ? null : new Date(time).toISOString();
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

interface Verifier {
  secrets: readonly LabelledSecret[];
  trustSource: boolean;
}

/**
 * A delivery of the export verified again, or why it is refused. With trustSource, a body whose
 * signature matches no configured secret goes through the very same verifyDelivery under a
 * one-off secret that signs its signedData, labelled UNVERIFIED_LABEL.
 */
function verify(body: Uint8Array, signature: string, { secrets, trustSource }: Verifier): VerifiedDelivery | string {
  const verified = verifyDelivery(body, signature, secrets);
  if (verified.ok) return verified;
  if (verified.reason !== "invalid_signature") return verified.message;
  if (!trustSource) return "the signature matches no configured secret (--trust-source accepts it)";
  const envelope = parseEnvelope(body);
  if (!envelope.ok) return envelope.message;
  const oneOff = crypto.randomUUID();
  const trusted = verifyDelivery(body, sign(oneOff, envelope.envelope.signedData), [{ label: UNVERIFIED_LABEL, secret: oneOff }]);
  return trusted.ok ? trusted : trusted.message;
}

const encoder = new TextEncoder();

/** One delivery of a line, checked: ready to append, or why not. */
function readDelivery(value: unknown, verifier: Verifier, now: string): { delivery: ImportedDelivery; stamped: boolean } | string {
  if (!isObject(value)) return "not an object";
  const { rawBody, headers, receivedAt, remoteAddress } = value;
  if (typeof rawBody !== "string") return 'no "rawBody" string';
  if (!isObject(headers)) return 'no "headers" object';
  let requestHeaders: Headers;
  try {
    requestHeaders = new Headers(headers as Record<string, string>);
  } catch {
    return '"headers" are not valid HTTP headers';
  }
  const signature = requestHeaders.get(SIGNATURE_HEADER);
  if (!signature) return `no ${SIGNATURE_HEADER} header`;
  const verified = verify(encoder.encode(rawBody), signature, verifier);
  if (typeof verified === "string") return verified;
  const time = receiveTime(receivedAt);
  return {
    delivery: {
      verified,
      request: {
        receivedAt: time ?? now,
        remoteAddress: typeof remoteAddress === "string" && remoteAddress !== "" ? remoteAddress : null,
        headers: requestHeaders,
      },
    },
    stamped: time === null,
  };
}

/** The lines of a stream (without their line breaks), however large, chunk by chunk. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8");
  let rest = "";
  for await (const chunk of stream) {
    const text = rest + decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let end = text.indexOf("\n"); end >= 0; end = text.indexOf("\n", start)) {
      yield text.slice(start, end);
      start = end + 1;
    }
    rest = text.slice(start);
  }
  rest += decoder.decode();
  if (rest !== "") yield rest;
}

function openInput(file: string): ReadableStream<Uint8Array> {
  if (file === "-") return Bun.stdin.stream();
  try {
    if (!statSync(file).isFile()) throw new UsageError(`${file} is not a file`);
    closeSync(openSync(file, "r"));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  return Bun.file(file).stream();
}

interface Stats {
  lines: number;
  read: number;
  events: number;
  duplicates: number;
  present: number;
  refused: number;
  stamped: number;
}

const count = (n: number) => n.toLocaleString("en-US");

function formatProgress(stats: Stats, seconds: number, final: boolean): string {
  const rate = seconds > 0 ? Math.round(stats.read / seconds) : 0;
  const parts = [
    `${count(stats.read)} ${stats.read === 1 ? "delivery" : "deliveries"} read from ${count(stats.lines)} ${stats.lines === 1 ? "line" : "lines"}`,
    `${count(stats.events)} new ${stats.events === 1 ? "event" : "events"}`,
    `${count(stats.duplicates)} duplicate ${stats.duplicates === 1 ? "delivery" : "deliveries"}`,
    `${count(stats.present)} already in the log`,
    `${count(stats.refused)} refused`,
  ];
  if (stats.stamped > 0) parts.push(`${count(stats.stamped)} without a valid receivedAt (stamped now)`);
  return `import: ${parts.join(", ")}${final ? " in" : " so far,"} ${formatSeconds(seconds)} (${count(rate)} deliveries/s)`;
}

const PROGRESS_EVERY_MS = 2000;

export const importCommand = command("import", "append an export's deliveries, verified again", HELP, async (argv, env) => {
  const { values, positionals } = parse(argv, OPTIONS, true);
  if (positionals.length !== 1) throw new UsageError("give one FILE, or - for stdin (see --help)");
  const batchSize = positiveInteger(values["batch-size"], "--batch-size", DEFAULT_BATCH, 50_000);
  const checkpoints = values.checkpoints ?? env.ICR_RECEIVER_CHECKPOINTS ?? "receiver";
  if (checkpoints !== "receiver" && checkpoints !== "litestream") {
    throw new ConfigError(`--checkpoints / ICR_RECEIVER_CHECKPOINTS: "${checkpoints}" is not receiver or litestream`);
  }
  const secrets = loadSecrets(values, env);
  const token = queryToken(values, env);
  const input = openInput(positionals[0]!);
  const path = databasePath(values, env);
  let log: EventLogImporter;
  try {
    log = openEventLogImporter(path, { redact: token === null ? [] : [token], checkpoints });
  } catch (error) {
    throw new CliError(`cannot open the event log ${path}: ${(error as Error).message}`);
  }

  const verifier: Verifier = { secrets, trustSource: values["trust-source"] === true };
  const stats: Stats = { lines: 0, read: 0, events: 0, duplicates: 0, present: 0, refused: 0, stamped: 0 };
  const started = performance.now();
  let lastProgress = started;
  let batch: ImportedDelivery[] = [];
  let firstLineOfBatch = 1;
  const refuse = (line: number, reason: string) => {
    stats.refused++;
    stderrLine(`import: line ${line}: refused: ${printable(reason)}`);
  };
  const flush = () => {
    if (batch.length === 0) return;
    let outcomes;
    try {
      outcomes = log.append(batch);
    } catch (error) {
      throw new CliError(
        `stopped at line ${firstLineOfBatch}, nothing of its batch stored (${(error as Error).message}); ` +
          "what was committed before stays: run it again, deliveries already in the log are skipped",
      );
    }
    for (const outcome of outcomes) stats[outcome.kind === "event" ? "events" : outcome.kind === "duplicate" ? "duplicates" : "present"]++;
    batch = [];
    const now = performance.now();
    if (!values.quiet && now - lastProgress >= PROGRESS_EVERY_MS) {
      lastProgress = now;
      stderrLine(formatProgress(stats, (now - started) / 1000, false));
    }
  };

  try {
    let now = new Date().toISOString();
    for await (const text of lines(input)) {
      const line = ++stats.lines;
      if (text.trim() === "") continue;
      if (batch.length === 0) {
        firstLineOfBatch = line;
        now = new Date().toISOString();
      }
      let record: unknown;
      try {
        record = JSON.parse(text);
      } catch {
        refuse(line, "not JSON");
        continue;
      }
      const deliveries = isObject(record) ? record.deliveries : undefined;
      if (!Array.isArray(deliveries) || deliveries.length === 0) {
        refuse(line, 'no "deliveries" (export with --deliveries)');
        continue;
      }
      deliveries.forEach((value, k) => {
        stats.read++;
        const read = readDelivery(value, verifier, now);
        const which = deliveries.length === 1 ? "" : ` (delivery ${k + 1} of ${deliveries.length})`;
        if (typeof read === "string") return refuse(line, `${read}${which}`);
        if (read.stamped) stats.stamped++;
        batch.push(read.delivery);
      });
      if (batch.length >= batchSize) flush();
    }
    flush();
    log.copyKeys();
  } catch (error) {
    if (!values.quiet) stderrLine(formatProgress(stats, (performance.now() - started) / 1000, true));
    throw error;
  } finally {
    log.close();
  }
  if (!values.quiet) stderrLine(formatProgress(stats, (performance.now() - started) / 1000, true));
  return stats.refused === 0 ? EXIT.ok : EXIT.failed;
});
