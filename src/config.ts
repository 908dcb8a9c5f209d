// Configuration: flags, then ICR_RECEIVER_* environment, then systemd credentials, then files in
// the data directory. Secrets and tokens are only ever read from files or the environment.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { LabelledSecret } from "./verify/signature.ts";

export interface Config {
  host: string;
  port: number;
  webhookPath: string;
  dataDir: string;
  databasePath: string;
  secrets: LabelledSecret[];
  queryToken: string;
  bodyLimit: number;
  /** Refused deliveries per minute per address before refusals are answered 429 (0: no limit). */
  rejectionLimit: number;
  /** Share the port with another receiver (SO_REUSEPORT), for an upgrade without a gap. */
  reusePort: boolean;
}

/** Invalid configuration: the message names the setting and never contains a secret. */
export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

/** Flag name → environment variable, for the settings that take a plain value. */
const VALUE_SETTINGS = {
  host: "ICR_RECEIVER_HOST",
  port: "ICR_RECEIVER_PORT",
  "webhook-path": "ICR_RECEIVER_WEBHOOK_PATH",
  "data-dir": "ICR_RECEIVER_DATA_DIR",
  db: "ICR_RECEIVER_DB",
  "body-limit": "ICR_RECEIVER_BODY_LIMIT",
  "rejection-limit": "ICR_RECEIVER_REJECTION_LIMIT",
  "reuse-port": "ICR_RECEIVER_REUSE_PORT",
  "secret-file": "ICR_RECEIVER_SECRET_FILE",
  "secrets-file": "ICR_RECEIVER_SECRETS_FILE",
  "query-token-file": "ICR_RECEIVER_QUERY_TOKEN_FILE",
} as const;
type Setting = keyof typeof VALUE_SETTINGS;

export const DEFAULTS = {
  host: "127.0.0.1",
  port: 4040,
  webhookPath: "/webhook",
  dataDir: "./data",
  databaseFile: "icr-receiver.db",
  bodyLimit: 1024 * 1024,
  rejectionLimit: 120,
};

/** File names looked up in $CREDENTIALS_DIRECTORY and in the data directory. */
export const CREDENTIAL_FILES = {
  secret: "webhook-secret",
  secrets: "webhook-secrets",
  queryToken: "query-token",
};

export const OPTIONS_HELP = `Options (each also read from the environment variable shown):
  --host HOST              listen address            ICR_RECEIVER_HOST (default ${DEFAULTS.host})
  --port PORT              listen port               ICR_RECEIVER_PORT (default ${DEFAULTS.port})
  --webhook-path PATH      path ICR posts to         ICR_RECEIVER_WEBHOOK_PATH (default ${DEFAULTS.webhookPath})
  --data-dir DIR           data directory            ICR_RECEIVER_DATA_DIR (default ${DEFAULTS.dataDir})
  --db FILE                SQLite event log          ICR_RECEIVER_DB (default DIR/${DEFAULTS.databaseFile})
  --body-limit SIZE        largest accepted body     ICR_RECEIVER_BODY_LIMIT (default 1MiB; bytes, KiB or MiB)
  --rejection-limit N      refusals/minute/address   ICR_RECEIVER_REJECTION_LIMIT (default ${DEFAULTS.rejectionLimit}; then 429, 0: off)
  --reuse-port             share the port (upgrades)  ICR_RECEIVER_REUSE_PORT=1 (default off: a taken port is an error)
  --secret-file FILE       one webhook secret        ICR_RECEIVER_SECRET_FILE (or ICR_RECEIVER_SECRET=value)
  --secrets-file FILE      label=secret lines        ICR_RECEIVER_SECRETS_FILE
  --query-token-file FILE  bearer token for queries  ICR_RECEIVER_QUERY_TOKEN_FILE (or ICR_RECEIVER_QUERY_TOKEN=value)
Without any of these, secrets come from $CREDENTIALS_DIRECTORY/{${CREDENTIAL_FILES.secret},${CREDENTIAL_FILES.secrets},${CREDENTIAL_FILES.queryToken}},
then from the same files in the data directory; a first start generates them there.`;

function describe(setting: Setting): string {
  return `--${setting} / ${VALUE_SETTINGS[setting]}`;
}

/**
 * Secrets and tokens are read from files or the environment only, by `serve` and every command:
 * a value on the command line ends up in shell history and in `ps`. The refusal to give, or null.
 */
export function secretOnCommandLine(argv: readonly string[]): string | null {
  return argv.some((arg) => /^--(secret|secrets|query-token|token)(=|$)/.test(arg))
    ? "secrets are never taken on the command line: use --secret-file, --secrets-file, --query-token-file or the environment"
    : null;
}

function parseFlags(argv: string[]): Partial<Record<Setting, string>> {
  const options = Object.fromEntries(
    Object.keys(VALUE_SETTINGS).map((name) => [name, { type: "string" as const }]),
  ) as Record<Setting, { type: "string" }>;
  try {
    // --reuse-port is a switch; as a value setting it reads like its environment variable.
    const args = argv.map((arg) => (arg === "--reuse-port" ? "--reuse-port=1" : arg));
    const { values } = parseArgs({ args, options, strict: true, allowPositionals: false });
    return values;
  } catch (error) {
    const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new ConfigError(secretOnCommandLine(argv) ?? message ?? "invalid command line");
  }
}

function pick(setting: Setting, flags: Partial<Record<Setting, string>>, env: Env): string | undefined {
  return flags[setting] ?? env[VALUE_SETTINGS[setting]];
}

/** The data directory and the database file, from --data-dir/--db or the environment (absolute). */
export function resolvePaths(flags: { "data-dir"?: string; db?: string }, env: Env) {
  const dataDir = resolve(pick("data-dir", flags, env) ?? DEFAULTS.dataDir);
  return { dataDir, databasePath: resolve(pick("db", flags, env) ?? join(dataDir, DEFAULTS.databaseFile)) };
}

function parsePort(value: string, setting = "--port / ICR_RECEIVER_PORT"): number {
  const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(port >= 0 && port <= 65535)) throw new ConfigError(`${setting}: "${value}" is not a port number (0-65535)`);
  return port;
}

export function parseSize(value: string, setting = describe("body-limit")): number {
  const match = /^\s*(\d+)\s*(b|kib|mib|k|m)?\s*$/i.exec(value);
  const unit = { b: 1, k: 1024, kib: 1024, m: 1024 * 1024, mib: 1024 * 1024 }[match?.[2]?.toLowerCase() ?? "b"];
  const bytes = match ? Number(match[1]) * (unit ?? 1) : NaN;
  if (!(bytes >= 1 && bytes <= 128 * 1024 * 1024)) {
    throw new ConfigError(`${setting}: "${value}" is not a size between 1 byte and 128MiB (e.g. 1048576, 512KiB, 1MiB)`);
  }
  return bytes;
}

function readSecretFile(path: string, setting: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${setting}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  const value = text.replace(/\r?\n$/, "");
  if (value === "") throw new ConfigError(`${setting}: ${path} is empty`);
  return value;
}

/**
 * `label=secret` lines: split at the first `=`, the secret verbatim to the end of the line;
 * blank lines and `#` comments ignored. Errors name the line, never its content.
 */
export function parseSecretsFile(text: string, source: string): LabelledSecret[] {
  const secrets: LabelledSecret[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    if (line.trim() === "" || line.trimStart().startsWith("#")) return;
    const equals = line.indexOf("=");
    const label = equals < 0 ? "" : line.slice(0, equals).trim();
    const secret = equals < 0 ? "" : line.slice(equals + 1);
    if (label === "" || secret === "") {
      throw new ConfigError(`${source}: line ${index + 1} is not of the form label=secret`);
    }
    if (secrets.some((s) => s.label === label)) {
      throw new ConfigError(`${source}: line ${index + 1} repeats the label "${label}"`);
    }
    secrets.push({ label, secret });
  });
  if (secrets.length === 0) throw new ConfigError(`${source}: no label=secret line`);
  return secrets;
}

function secretsFromFile(path: string, setting: string): LabelledSecret[] {
  return parseSecretsFile(readSecretFile(path, setting), `${setting} (${path})`);
}

interface Level {
  name: string;
  secret?: () => LabelledSecret[];
  secrets?: () => LabelledSecret[];
  queryToken?: () => string;
}

function fileIfPresent<T>(path: string, read: (path: string) => T): (() => T) | undefined {
  return existsSync(path) ? () => read(path) : undefined;
}

function directoryLevel(name: string, dir: string): Level {
  const at = (file: string) => join(dir, file);
  return {
    name,
    secret: fileIfPresent(at(CREDENTIAL_FILES.secret), (p) => [{ label: "default", secret: readSecretFile(p, name) }]),
    secrets: fileIfPresent(at(CREDENTIAL_FILES.secrets), (p) => secretsFromFile(p, name)),
    queryToken: fileIfPresent(at(CREDENTIAL_FILES.queryToken), (p) => readSecretFile(p, name)),
  };
}

function fromLevels(levels: Level[]): { secrets?: LabelledSecret[]; queryToken?: string } {
  let secrets: LabelledSecret[] | undefined;
  let queryToken: string | undefined;
  for (const level of levels) {
    if (secrets === undefined && (level.secret || level.secrets)) {
      if (level.secret && level.secrets) {
        throw new ConfigError(`${level.name}: give either a single webhook secret or a secrets file, not both`);
      }
      secrets = (level.secret ?? level.secrets)!();
    }
    if (queryToken === undefined && level.queryToken) queryToken = level.queryToken();
  }
  return { secrets, queryToken };
}

function generateCredential(path: string): string {
  const value = randomBytes(32).toString("base64url");
  writeFileSync(path, value + "\n", { mode: 0o600, flag: "wx" });
  return value;
}

interface LoadedConfig {
  config: Config;
  /** What a first start did, for the operator (paths only, never values). */
  notices: string[];
  /** No data directory was configured: ./data may be created (a configured one never is). */
  defaultDataDir: boolean;
}

/**
 * Builds the configuration. With `generateMissing`, a missing webhook secret or query token is
 * generated into the data directory (mode 0600), as a first start on defaults needs.
 */
export function loadConfig(argv: string[], env: Env, { generateMissing = true } = {}): LoadedConfig {
  const flags = parseFlags(argv);
  const host = pick("host", flags, env) ?? DEFAULTS.host;
  if (host.trim() === "") throw new ConfigError(`${describe("host")}: empty`);
  const portValue = pick("port", flags, env);
  const port = portValue === undefined ? DEFAULTS.port : parsePort(portValue, describe("port"));
  const webhookPath = pick("webhook-path", flags, env) ?? DEFAULTS.webhookPath;
  if (!/^\/[A-Za-z0-9._~\-/]*$/.test(webhookPath) || /^\/(events|healthz|readyz|metrics)(\/|$)/.test(webhookPath)) {
    throw new ConfigError(`${describe("webhook-path")}: "${webhookPath}" is not a free absolute path`);
  }
  const { dataDir, databasePath } = resolvePaths(flags, env);
  const bodyLimitValue = pick("body-limit", flags, env);
  const bodyLimit = bodyLimitValue === undefined ? DEFAULTS.bodyLimit : parseSize(bodyLimitValue);
  const reusePortValue = pick("reuse-port", flags, env) ?? "0";
  if (!/^(1|0|true|false|yes|no)$/i.test(reusePortValue)) {
    throw new ConfigError(`${describe("reuse-port")}: "${reusePortValue}" is not one of 1, 0, true, false, yes, no`);
  }
  const reusePort = /^(1|true|yes)$/i.test(reusePortValue);
  const rejectionLimitValue = pick("rejection-limit", flags, env);
  const rejectionLimit = rejectionLimitValue === undefined ? DEFAULTS.rejectionLimit : Number(rejectionLimitValue);
  if (!/^\d{1,9}$/.test(rejectionLimitValue ?? "0")) {
    throw new ConfigError(`${describe("rejection-limit")}: "${rejectionLimitValue}" is not a whole number of refusals per minute`);
  }

  const single = (path: string, setting: string) => () => [{ label: "default", secret: readSecretFile(path, setting) }];
  const multiple = (path: string, setting: string) => () => secretsFromFile(path, setting);
  const token = (path: string, setting: string) => () => readSecretFile(path, setting);
  const value = (text: string, setting: string) => {
    if (text === "") throw new ConfigError(`${setting}: empty`);
    return text;
  };
  const flagLevel: Level = {
    name: "command line",
    secret: flags["secret-file"] === undefined ? undefined : single(flags["secret-file"], "--secret-file"),
    secrets: flags["secrets-file"] === undefined ? undefined : multiple(flags["secrets-file"], "--secrets-file"),
    queryToken:
      flags["query-token-file"] === undefined ? undefined : token(flags["query-token-file"], "--query-token-file"),
  };
  const { ICR_RECEIVER_SECRET, ICR_RECEIVER_SECRET_FILE, ICR_RECEIVER_SECRETS_FILE } = env;
  const { ICR_RECEIVER_QUERY_TOKEN, ICR_RECEIVER_QUERY_TOKEN_FILE } = env;
  const envLevel: Level = {
    name: "environment",
    secret:
      ICR_RECEIVER_SECRET !== undefined
        ? () => [{ label: "default", secret: value(ICR_RECEIVER_SECRET, "ICR_RECEIVER_SECRET") }]
        : ICR_RECEIVER_SECRET_FILE !== undefined
          ? single(ICR_RECEIVER_SECRET_FILE, "ICR_RECEIVER_SECRET_FILE")
          : undefined,
    secrets:
      ICR_RECEIVER_SECRETS_FILE === undefined ? undefined : multiple(ICR_RECEIVER_SECRETS_FILE, "ICR_RECEIVER_SECRETS_FILE"),
    queryToken:
      ICR_RECEIVER_QUERY_TOKEN !== undefined
        ? () => value(ICR_RECEIVER_QUERY_TOKEN, "ICR_RECEIVER_QUERY_TOKEN")
        : ICR_RECEIVER_QUERY_TOKEN_FILE !== undefined
          ? token(ICR_RECEIVER_QUERY_TOKEN_FILE, "ICR_RECEIVER_QUERY_TOKEN_FILE")
          : undefined,
  };
  const levels = [flagLevel, envLevel];
  if (env.CREDENTIALS_DIRECTORY) levels.push(directoryLevel("$CREDENTIALS_DIRECTORY", env.CREDENTIALS_DIRECTORY));
  levels.push(directoryLevel(`data directory ${dataDir}`, dataDir));

  let { secrets, queryToken } = fromLevels(levels);
  const notices: string[] = [];
  const defaultDataDir = pick("data-dir", flags, env) === undefined;
  if ((secrets === undefined || queryToken === undefined) && generateMissing) {
    if (defaultDataDir) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    else if (!existsSync(dataDir)) throw new ConfigError(`${describe("data-dir")}: ${dataDir} does not exist (is its volume mounted?)`);
    if (secrets === undefined) {
      const path = join(dataDir, CREDENTIAL_FILES.secret);
      secrets = [{ label: "default", secret: generateCredential(path) }];
      notices.push(
        `generated a webhook secret in ${path} (mode 0600): paste it into your app's "General" tab on CarbonRegistry.com`,
      );
    }
    if (queryToken === undefined) {
      const path = join(dataDir, CREDENTIAL_FILES.queryToken);
      queryToken = generateCredential(path);
      notices.push(`generated a query token in ${path} (mode 0600): send it as "Authorization: Bearer <token>" to GET /events`);
    }
  }
  if (secrets === undefined) throw new ConfigError("no webhook secret configured (ICR_RECEIVER_SECRET, --secret-file or --secrets-file)");
  if (queryToken === undefined) throw new ConfigError("no query token configured (ICR_RECEIVER_QUERY_TOKEN or --query-token-file)");
  return {
    config: { host, port, webhookPath, dataDir, databasePath, secrets, queryToken, bodyLimit, rejectionLimit, reusePort },
    notices,
    defaultDataDir,
  };
}
