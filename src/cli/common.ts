// What every operator command shares: exit codes, strict option parsing, one-line errors, where
// the database is, the webhook secrets, and output that respects back-pressure and closed pipes.
import { closeSync, existsSync, fsyncSync, linkSync, openSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { ConfigError, DEFAULTS, loadConfig, resolvePaths, secretOnCommandLine } from "../config.ts";
import { openEventLogReader, type EventLogReader } from "../log/event-log.ts";
import type { LabelledSecret } from "../verify/signature.ts";

export type Env = Record<string, string | undefined>;

/** Exit statuses a script can rely on. */
export const EXIT = {
  ok: 0,
  /** A check or verification failed, a response was not 2xx, or the operation itself failed. */
  failed: 1,
  /** Bad options or arguments (including an unusable FILE argument). */
  usage: 2,
  /** Configuration error (sysexits EX_CONFIG), as `serve` uses. */
  config: 78,
} as const;

const EXIT_HELP = `Exit status:
  0   success
  1   check or verification failed, non-2xx answer, or the operation failed (e.g. database unreadable)
  2   usage error (unknown option, bad value, missing or unusable FILE argument)
  78  configuration error (e.g. no webhook secret configured)`;

export interface Command {
  summary: string;
  run(argv: string[], env?: Env): Promise<number>;
}

/** An error that ends a command with `exit` and the one line `message` on stderr. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exit: number = EXIT.failed,
  ) {
    super(message);
  }
}

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage);
  }
}

export const HELP_OPTION = { help: { type: "boolean", short: "h" } } as const;

/**
 * Strict parsing with errors that never echo an argument's value (it might be a secret typed in
 * the wrong place); `--secret VALUE` and friends get the reason they are refused.
 */
export function parse<const O extends ParseArgsOptionsConfig>(argv: string[], options: O, allowPositionals = false) {
  const secret = secretOnCommandLine(argv);
  if (secret !== null) throw new UsageError(secret);
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") throw new UsageError("unexpected argument (see --help)");
    const message = error instanceof Error ? error.message.split("\n")[0]! : String(error);
    throw new UsageError(`${message} (see --help)`);
  }
}

/** Wraps a command body: prints `--help`, maps every error to one line on stderr and an exit code. */
export function command(
  name: string,
  summary: string,
  help: string,
  body: (argv: string[], env: Env) => Promise<number>,
): Command {
  return {
    summary,
    async run(argv, env = process.env) {
      if (argv.includes("--help") || argv.includes("-h")) {
        process.stdout.write(`${help.trimEnd()}\n\n${EXIT_HELP}\n`);
        return EXIT.ok;
      }
      try {
        return await body(argv, env);
      } catch (error) {
        const exit = error instanceof CliError ? error.exit : error instanceof ConfigError ? EXIT.config : EXIT.failed;
        const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
        process.stderr.write(`icr-receiver ${name}: ${message || "failed"}\n`);
        return exit;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Values

export function positiveInteger(value: string | undefined, option: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = /^\d{1,9}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= max)) throw new UsageError(`${option}: "${value}" is not a whole number between 1 and ${max}`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// The database

export const DATABASE_OPTIONS = {
  db: { type: "string" },
  "data-dir": { type: "string" },
} as const;

export const DATABASE_HELP = `Database (as for serve):
  --db FILE                SQLite event log          ICR_RECEIVER_DB (default DIR/${DEFAULTS.databaseFile})
  --data-dir DIR           data directory            ICR_RECEIVER_DATA_DIR (default ${DEFAULTS.dataDir})`;

/** The event log path, resolved exactly as `serve` resolves it, without needing any secret. */
export function databasePath(values: { db?: string; "data-dir"?: string }, env: Env): string {
  return resolvePaths(values, env).databasePath;
}

/** Opens an existing log read-only (never creates one, never migrates, never blocks the server). */
export function openReadOnly(path: string): EventLogReader {
  if (!existsSync(path)) throw new CliError(`no event log at ${path} (check --db / --data-dir)`);
  try {
    return openEventLogReader(path);
  } catch (error) {
    throw new CliError(`cannot open the event log ${path}: ${(error as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Webhook secrets

export const SECRET_OPTIONS = {
  "secret-file": { type: "string" },
  "secrets-file": { type: "string" },
  "data-dir": { type: "string" },
} as const;

export const SECRET_HELP = `Secrets (as for serve; never taken as a command-line value, never printed):
  --secret-file FILE       one webhook secret        ICR_RECEIVER_SECRET_FILE (or ICR_RECEIVER_SECRET=value)
  --secrets-file FILE      label=secret lines        ICR_RECEIVER_SECRETS_FILE
  --data-dir DIR           data directory            ICR_RECEIVER_DATA_DIR (default ${DEFAULTS.dataDir})
Without these: $CREDENTIALS_DIRECTORY/webhook-secret(s), then DIR/webhook-secret(s).`;

/** Environment variables that locate secrets; everything else (port, host, …) is irrelevant here. */
const SECRET_ENV = [
  "ICR_RECEIVER_SECRET",
  "ICR_RECEIVER_SECRET_FILE",
  "ICR_RECEIVER_SECRETS_FILE",
  "ICR_RECEIVER_DATA_DIR",
  "CREDENTIALS_DIRECTORY",
] as const;

/**
 * The webhook secrets from the same sources, in the same precedence, as `serve` (src/config.ts),
 * never generating one. The query token is not needed here, so a placeholder stands in for it.
 */
export function loadSecrets(
  values: { "secret-file"?: string; "secrets-file"?: string; "data-dir"?: string },
  env: Env,
): LabelledSecret[] {
  const argv = (["secret-file", "secrets-file", "data-dir"] as const).flatMap((name) =>
    values[name] === undefined ? [] : [`--${name}`, values[name]!],
  );
  const scoped: Env = Object.fromEntries(SECRET_ENV.map((name) => [name, env[name]]));
  const { config } = loadConfig(argv, { ...scoped, ICR_RECEIVER_QUERY_TOKEN: "unused" }, { generateMissing: false });
  return config.secrets;
}

// ---------------------------------------------------------------------------------------------
// Output

/**
 * A writable with back-pressure (await each write) that turns a closed reader (EPIPE, e.g. `| head`)
 * into `closed` instead of an exception.
 */
export class Output {
  closed = false;
  bytes = 0;
  private error: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly stream: NodeJS.WritableStream) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EPIPE") this.closed = true;
      else this.error = error;
      this.wake?.();
    });
  }

  async write(text: string): Promise<void> {
    if (this.error) throw this.error;
    if (this.closed || text === "") return;
    this.bytes += Buffer.byteLength(text);
    if (!this.stream.write(text)) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.stream.once("drain", resolve);
      });
      this.wake = null;
    }
    if (this.error) throw this.error;
  }

  /** Ends a stream this program owns (a file) once all is flushed; throws if any write failed. */
  async end(): Promise<void> {
    if (this.error) throw this.error;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      this.stream.end(resolve);
    });
    this.wake = null;
    if (this.error) throw this.error;
  }
}

export function stderrLine(line: string): void {
  process.stderr.write(`${line}\n`);
}

// ---------------------------------------------------------------------------------------------
// Output files: written beside the destination, synced, then moved into place in one step.

/** A temporary name in the destination's directory (so the final rename cannot cross filesystems). */
export function temporaryPath(destination: string): string {
  return join(dirname(destination), `.${basename(destination)}.${process.pid}.partial`);
}

/** Refuses an existing destination unless `force` (checked before any work is done). */
export function checkDestination(destination: string, force: boolean): void {
  if (!force && existsSync(destination)) throw new UsageError(`${destination} exists (use --force to replace it)`);
  if (!existsSync(dirname(destination))) throw new UsageError(`no directory ${dirname(destination)}`);
}

/**
 * Moves a complete, synced temporary file to `destination`: atomically replacing it with `force`,
 * otherwise with link(2), which fails rather than overwrite a file that appeared meanwhile.
 */
export function publish(temporary: string, destination: string, force: boolean): void {
  const fd = openSync(temporary, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (force) {
    renameSync(temporary, destination);
  } else {
    try {
      linkSync(temporary, destination);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") {
        throw new UsageError(`${destination} exists (use --force to replace it)`);
      }
      throw error;
    } finally {
      rmSync(temporary, { force: true });
    }
  }
  const dir = openSync(dirname(destination), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
