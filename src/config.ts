// Configuration: flags, then ICR_RECEIVER_* environment, then systemd credentials, then files in
// the data directory. Secrets and tokens are only ever read from files or the environment.
import { createPrivateKey, randomBytes, type KeyObject } from "node:crypto";
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
  /** Where each event is forwarded to, and how; null when no destination is configured. */
  forwarding: ForwardingConfig | null;
  /** Open event streams (GET /events/stream) at most. */
  streamLimit: number;
  /** Serve the operator's console at /console (on unless turned off). */
  console: boolean;
  /** Reconciliation with ICR's API inside the server; absent or null: off. */
  reconcile?: ScheduledReconcile | null;
  /** Who checkpoints the WAL: the receiver (absent: the default) or Litestream, replicating it. */
  checkpoints?: "receiver" | "litestream";
}

/** How to reach ICR's API as the app: its id, its private key (never printed) and the API's base URL. */
export interface IcrApiConfig {
  appId: string;
  /** The app's RSA private key, parsed: a KeyObject prints as `KeyObject { type: 'private' }`, never its bytes. */
  privateKey: KeyObject;
  apiUrl: string;
}

export interface ScheduledReconcile {
  api: IcrApiConfig;
  everyMs: number;
}

/** One destination of forwarding: every event, or only those named in `events`. */
export interface Destination {
  name: string;
  url: string;
  /** Event names to forward (null: every event, unparsed ones included). */
  events: string[] | null;
}

export interface ForwardingConfig {
  destinations: Destination[];
  /** Standard Webhooks secrets (`whsec_…`): every request is signed with each, for rotation. */
  secrets: string[];
  timeoutMs: number;
  /** The first retry's delay; then doubling with full jitter, up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
  /** After this long since its receipt, an event that never got through is a dead letter. */
  maxAgeMs: number;
  /** Requests in flight per destination. */
  concurrency: number;
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
  "stream-limit": "ICR_RECEIVER_STREAM_LIMIT",
  console: "ICR_RECEIVER_CONSOLE",
  checkpoints: "ICR_RECEIVER_CHECKPOINTS",
  "secret-file": "ICR_RECEIVER_SECRET_FILE",
  "secrets-file": "ICR_RECEIVER_SECRETS_FILE",
  "query-token-file": "ICR_RECEIVER_QUERY_TOKEN_FILE",
  "forward-url": "ICR_RECEIVER_FORWARD_URL",
  "forwards-file": "ICR_RECEIVER_FORWARDS_FILE",
  "forward-secret-file": "ICR_RECEIVER_FORWARD_SECRET_FILE",
  "forward-timeout": "ICR_RECEIVER_FORWARD_TIMEOUT",
  "forward-backoff": "ICR_RECEIVER_FORWARD_BACKOFF",
  "forward-max-age": "ICR_RECEIVER_FORWARD_MAX_AGE",
  "forward-concurrency": "ICR_RECEIVER_FORWARD_CONCURRENCY",
  "icr-app-id": "ICR_RECEIVER_ICR_APP_ID",
  "icr-private-key-file": "ICR_RECEIVER_ICR_PRIVATE_KEY_FILE",
  "icr-api-url": "ICR_RECEIVER_ICR_API_URL",
  "reconcile-every": "ICR_RECEIVER_RECONCILE_EVERY",
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
  streamLimit: 100,
  forwardTimeout: "10s",
  forwardBackoff: "5s",
  forwardMaxBackoff: "1h",
  forwardMaxAge: "3d",
  forwardConcurrency: 8,
  icrApiUrl: "https://api.carbonregistry.com",
};

/** File names looked up in $CREDENTIALS_DIRECTORY and in the data directory. */
export const CREDENTIAL_FILES = {
  secret: "webhook-secret",
  secrets: "webhook-secrets",
  queryToken: "query-token",
  forwardSecret: "forward-secret",
  icrPrivateKey: "icr-private-key.pem",
};

/** The ICR API settings' help, shared by `serve` and `reconcile`. */
export const ICR_API_HELP_LINES = `  --icr-app-id ID          the ICR app's id          ICR_RECEIVER_ICR_APP_ID
  --icr-private-key-file F its private key (PEM)     ICR_RECEIVER_ICR_PRIVATE_KEY_FILE (else ${CREDENTIAL_FILES.icrPrivateKey} in
                           $CREDENTIALS_DIRECTORY, then in the data directory; never taken as a value)
  --icr-api-url URL        ICR's API                 ICR_RECEIVER_ICR_API_URL (default ${DEFAULTS.icrApiUrl})`;

export const OPTIONS_HELP = `Options (each also read from the environment variable shown):
  --host HOST              listen address            ICR_RECEIVER_HOST (default ${DEFAULTS.host})
  --port PORT              listen port               ICR_RECEIVER_PORT (default ${DEFAULTS.port}; 0: any free port)
  --webhook-path PATH      path ICR posts to         ICR_RECEIVER_WEBHOOK_PATH (default ${DEFAULTS.webhookPath})
  --data-dir DIR           data directory            ICR_RECEIVER_DATA_DIR (default ${DEFAULTS.dataDir})
  --db FILE                SQLite event log          ICR_RECEIVER_DB (default DIR/${DEFAULTS.databaseFile})
  --body-limit SIZE        largest accepted body     ICR_RECEIVER_BODY_LIMIT (default 1MiB; bytes, KiB or MiB)
  --rejection-limit N      refusals/minute/address   ICR_RECEIVER_REJECTION_LIMIT (default ${DEFAULTS.rejectionLimit}; then 429, 0: off)
  --reuse-port             share the port (upgrades)  ICR_RECEIVER_REUSE_PORT=1 (default off: a taken port is an error)
  --stream-limit N         open event streams at most ICR_RECEIVER_STREAM_LIMIT (default ${DEFAULTS.streamLimit}; then 503)
  --no-console             no console at /console    ICR_RECEIVER_CONSOLE=off (default on: the operator's console in the browser,
                           login with the query token)
  --checkpoints WHO        who checkpoints the WAL   ICR_RECEIVER_CHECKPOINTS (default receiver; litestream: only Litestream,
                           which replicates the log: no checkpointer thread, wal_autocheckpoint=0)
  --secret-file FILE       one webhook secret        ICR_RECEIVER_SECRET_FILE (or ICR_RECEIVER_SECRET=value)
  --secrets-file FILE      label=secret lines        ICR_RECEIVER_SECRETS_FILE
  --query-token-file FILE  bearer token for queries  ICR_RECEIVER_QUERY_TOKEN_FILE (or ICR_RECEIVER_QUERY_TOKEN=value)
Without any of these, secrets come from $CREDENTIALS_DIRECTORY/{${CREDENTIAL_FILES.secret},${CREDENTIAL_FILES.secrets},${CREDENTIAL_FILES.queryToken}},
then from the same files in the data directory; a first start generates them there.

Forwarding every event to your app (off unless a destination is given):
  --forward-url URL        one destination, "default" ICR_RECEIVER_FORWARD_URL
  --forwards-file FILE     name=url [events=a,b] lines ICR_RECEIVER_FORWARDS_FILE
  --forward-secret-file F  whsec_ secrets, one a line ICR_RECEIVER_FORWARD_SECRET_FILE (or ICR_RECEIVER_FORWARD_SECRET=value;
                           else ${CREDENTIAL_FILES.forwardSecret} in $CREDENTIALS_DIRECTORY or the data directory, generated there)
  --forward-timeout D      per request               ICR_RECEIVER_FORWARD_TIMEOUT (default ${DEFAULTS.forwardTimeout})
  --forward-backoff D      first retry delay         ICR_RECEIVER_FORWARD_BACKOFF (default ${DEFAULTS.forwardBackoff}; doubling, jittered, up to ${DEFAULTS.forwardMaxBackoff})
  --forward-max-age D      then a dead letter        ICR_RECEIVER_FORWARD_MAX_AGE (default ${DEFAULTS.forwardMaxAge})
  --forward-concurrency N  requests in flight/dest.  ICR_RECEIVER_FORWARD_CONCURRENCY (default ${DEFAULTS.forwardConcurrency})

Reconciling the log with ICR's API (see \`icr-receiver reconcile --help\`; off unless an interval is given):
  --reconcile-every D      run it inside the server  ICR_RECEIVER_RECONCILE_EVERY (default off)
${ICR_API_HELP_LINES}
A duration D is a whole number and a unit: ms, s, m, h or d (250ms, 10s, 3d).`;

function describe(setting: Setting): string {
  return `--${setting} / ${VALUE_SETTINGS[setting]}`;
}

/**
 * Secrets and tokens are read from files or the environment only, by `serve` and every command:
 * a value on the command line ends up in shell history and in `ps`. The refusal to give, or null.
 */
export function secretOnCommandLine(argv: readonly string[]): string | null {
  return argv.some((arg) => /^--(secret|secrets|query-token|token|forward-secret|icr-private-key)(=|$)/.test(arg))
    ? "secrets are never taken on the command line: use --secret-file, --secrets-file, --query-token-file, --icr-private-key-file or the environment"
    : null;
}

function parseFlags(argv: string[]): Partial<Record<Setting, string>> {
  const options = Object.fromEntries(
    Object.keys(VALUE_SETTINGS).map((name) => [name, { type: "string" as const }]),
  ) as Record<Setting, { type: "string" }>;
  try {
    // --reuse-port is a switch; as a value setting it reads like its environment variable.
    // So are --console and --no-console.
    const switches: Record<string, string> = { "--reuse-port": "--reuse-port=1", "--console": "--console=on", "--no-console": "--console=off" };
    const args = argv.map((arg) => switches[arg] ?? arg);
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

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A duration such as 250ms, 10s, 5m, 1h or 3d, in milliseconds (at least 1 ms). */
export function parseDuration(value: string, setting: string): number {
  const match = /^(\d{1,9})(ms|s|m|h|d)$/.exec(value.trim());
  const ms = match ? Number(match[1]) * DURATION_UNITS_MS[match[2] as keyof typeof DURATION_UNITS_MS] : NaN;
  if (!(ms >= 1)) throw new ConfigError(`${setting}: "${value}" is not a duration (a whole number and ms, s, m, h or d: 10s, 3d)`);
  return ms;
}

const DESTINATION_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

function destinationUrl(text: string, where: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${where}: not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new ConfigError(`${where}: not an http or https URL`);
  // A URL's userinfo is a credential: it would show in status output and logs.
  if (url.username !== "" || url.password !== "") throw new ConfigError(`${where}: credentials in the URL are not accepted`);
  return url.href;
}

/**
 * `name=url [events=a,b]` lines: a destination each (names: lower-case letters, digits, - and _,
 * up to 64), optionally only the events named; blank lines and `#` comments ignored.
 */
export function parseForwardsFile(text: string, source: string): Destination[] {
  const destinations: Destination[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const where = `${source}: line ${index + 1}`;
    if (line.trim() === "" || line.trimStart().startsWith("#")) return;
    const [first = "", ...options] = line.trim().split(/\s+/);
    const equals = first.indexOf("=");
    const name = equals < 0 ? "" : first.slice(0, equals);
    if (!DESTINATION_NAME.test(name)) throw new ConfigError(`${where} is not of the form name=url [events=a,b] (names: a-z, 0-9, - and _)`);
    if (destinations.some((d) => d.name === name)) throw new ConfigError(`${where} repeats the destination "${name}"`);
    let events: string[] | null = null;
    for (const option of options) {
      const match = /^events=(.+)$/.exec(option);
      if (!match) throw new ConfigError(`${where}: unknown option (only events=a,b is known)`);
      events = match[1]!.split(",").filter((e) => e !== "");
      if (events.length === 0) throw new ConfigError(`${where}: events= names no event`);
    }
    destinations.push({ name, url: destinationUrl(first.slice(equals + 1), where), events });
  });
  if (destinations.length === 0) throw new ConfigError(`${source}: no name=url line`);
  return destinations;
}

const WHSEC = /^whsec_([A-Za-z0-9+/]+={0,2})$/;

/** `whsec_` + base64 of at least 24 bytes, one a line (several: each request is signed with each). */
export function parseForwardSecrets(text: string, source: string): string[] {
  const secrets = text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== "" && !line.startsWith("#"));
  if (secrets.length === 0) throw new ConfigError(`${source}: no whsec_ secret`);
  secrets.forEach((secret, index) => {
    const match = WHSEC.exec(secret);
    if (!match || Buffer.from(match[1]!, "base64").length < 24) {
      throw new ConfigError(`${source}: secret ${index + 1} is not whsec_ followed by the base64 of at least 24 bytes`);
    }
  });
  return secrets;
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

/** The forwarding destinations, as `serve` reads them (no secret needed); null when none is configured. */
export function loadDestinations(flags: { "forward-url"?: string; "forwards-file"?: string }, env: Env): Destination[] | null {
  const url = pick("forward-url", flags, env);
  const file = pick("forwards-file", flags, env);
  if (url !== undefined && file !== undefined) {
    throw new ConfigError(`${describe("forward-url")} and ${describe("forwards-file")}: give one of them, not both`);
  }
  if (url !== undefined) return [{ name: "default", url: destinationUrl(url, describe("forward-url")), events: null }];
  if (file !== undefined) return parseForwardsFile(readSecretFile(file, describe("forwards-file")), `${describe("forwards-file")} (${file})`);
  return null;
}

/** The forwarding settings, or null when no destination is configured. */
function forwardingConfig(
  flags: Partial<Record<Setting, string>>,
  env: Env,
  dataDir: string,
  defaultDataDir: boolean,
  generateMissing: boolean,
  notices: string[],
): ForwardingConfig | null {
  const destinations = loadDestinations(flags, env);
  if (destinations === null) return null;
  const duration = (setting: Setting, fallback: string) => parseDuration(pick(setting, flags, env) ?? fallback, describe(setting));
  const concurrencyValue = pick("forward-concurrency", flags, env);
  const concurrency = concurrencyValue === undefined ? DEFAULTS.forwardConcurrency : /^\d{1,4}$/.test(concurrencyValue) ? Number(concurrencyValue) : NaN;
  if (!(concurrency >= 1 && concurrency <= 1000)) {
    throw new ConfigError(`${describe("forward-concurrency")}: "${concurrencyValue}" is not a whole number from 1 to 1000`);
  }

  const secretFile = (path: string, setting: string) => parseForwardSecrets(readSecretFile(path, setting), `${setting} (${path})`);
  let secrets: string[] | undefined;
  if (flags["forward-secret-file"] !== undefined) secrets = secretFile(flags["forward-secret-file"], "--forward-secret-file");
  else if (env.ICR_RECEIVER_FORWARD_SECRET !== undefined) secrets = parseForwardSecrets(env.ICR_RECEIVER_FORWARD_SECRET, "ICR_RECEIVER_FORWARD_SECRET");
  else if (env.ICR_RECEIVER_FORWARD_SECRET_FILE !== undefined) secrets = secretFile(env.ICR_RECEIVER_FORWARD_SECRET_FILE, "ICR_RECEIVER_FORWARD_SECRET_FILE");
  else {
    for (const [name, dir] of [["$CREDENTIALS_DIRECTORY", env.CREDENTIALS_DIRECTORY], [`data directory ${dataDir}`, dataDir]] as const) {
      const path = dir === undefined ? undefined : join(dir, CREDENTIAL_FILES.forwardSecret);
      if (path !== undefined && existsSync(path)) {
        secrets = secretFile(path, name);
        break;
      }
    }
  }
  if (secrets === undefined) {
    if (!generateMissing) throw new ConfigError("no forwarding secret configured (ICR_RECEIVER_FORWARD_SECRET or --forward-secret-file)");
    if (defaultDataDir) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    else if (!existsSync(dataDir)) throw new ConfigError(`${describe("data-dir")}: ${dataDir} does not exist (is its volume mounted?)`);
    const path = join(dataDir, CREDENTIAL_FILES.forwardSecret);
    const secret = `whsec_${randomBytes(32).toString("base64")}`;
    writeFileSync(path, secret + "\n", { mode: 0o600, flag: "wx" });
    secrets = [secret];
    notices.push(`generated a forwarding secret in ${path} (mode 0600): your app verifies every forwarded request with it`);
  }
  return {
    destinations,
    secrets,
    timeoutMs: duration("forward-timeout", DEFAULTS.forwardTimeout),
    backoffMs: duration("forward-backoff", DEFAULTS.forwardBackoff),
    maxBackoffMs: parseDuration(DEFAULTS.forwardMaxBackoff, "the largest retry delay"),
    maxAgeMs: duration("forward-max-age", DEFAULTS.forwardMaxAge),
    concurrency,
  };
}

/**
 * The app's credentials for ICR's API, or null when no app id is configured. The private key is
 * read from a file only: --icr-private-key-file, ICR_RECEIVER_ICR_PRIVATE_KEY_FILE, then
 * icr-private-key.pem in $CREDENTIALS_DIRECTORY, then in the data directory. Errors name the
 * setting and the file, never the key.
 */
export function loadIcrApi(
  flags: { "icr-app-id"?: string; "icr-private-key-file"?: string; "icr-api-url"?: string; "data-dir"?: string },
  env: Env,
): IcrApiConfig | null {
  if (env.ICR_RECEIVER_ICR_PRIVATE_KEY !== undefined) {
    throw new ConfigError("ICR_RECEIVER_ICR_PRIVATE_KEY: the private key is never taken as a value: put it in a file (ICR_RECEIVER_ICR_PRIVATE_KEY_FILE)");
  }
  const appId = pick("icr-app-id", flags, env);
  const keyFile = pick("icr-private-key-file", flags, env);
  const urlValue = pick("icr-api-url", flags, env);
  if (appId === undefined) {
    if (keyFile !== undefined || urlValue !== undefined) throw new ConfigError(`${describe("icr-app-id")}: needed with the other ICR API settings`);
    return null;
  }
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(appId)) throw new ConfigError(`${describe("icr-app-id")}: "${appId}" is not an app id (letters, digits, . _ -)`);
  const apiUrl = destinationUrl(urlValue ?? DEFAULTS.icrApiUrl, describe("icr-api-url")).replace(/\/+$/, "");
  let source: { path: string; setting: string } | undefined;
  if (keyFile !== undefined) source = { path: keyFile, setting: describe("icr-private-key-file") };
  else {
    const { dataDir } = resolvePaths(flags, env);
    for (const [name, dir] of [["$CREDENTIALS_DIRECTORY", env.CREDENTIALS_DIRECTORY], [`data directory ${dataDir}`, dataDir]] as const) {
      const path = dir === undefined || dir === "" ? undefined : join(dir, CREDENTIAL_FILES.icrPrivateKey);
      if (path !== undefined && existsSync(path)) {
        source = { path, setting: name };
        break;
      }
    }
  }
  if (source === undefined) {
    throw new ConfigError(`no ICR private key: give ${describe("icr-private-key-file")} or put ${CREDENTIAL_FILES.icrPrivateKey} in $CREDENTIALS_DIRECTORY or the data directory`);
  }
  const pem = readSecretFile(source.path, source.setting);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new ConfigError(`${source.setting}: ${source.path} is not a PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== "rsa") throw new ConfigError(`${source.setting}: ${source.path} is not an RSA private key (ICR signs with RS256)`);
  return { appId, privateKey, apiUrl };
}

/** `--reconcile-every`: the scheduled reconciliation, or null when off. Needs the ICR API settings. */
function scheduledReconcile(flags: Partial<Record<Setting, string>>, env: Env): ScheduledReconcile | null {
  const api = loadIcrApi(flags, env);
  const every = pick("reconcile-every", flags, env);
  if (every === undefined || every === "off") return null;
  const everyMs = parseDuration(every, describe("reconcile-every"));
  if (api === null) throw new ConfigError(`${describe("reconcile-every")}: needs ${describe("icr-app-id")} and the app's private key`);
  return { api, everyMs };
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
  if (!/^\/[A-Za-z0-9._~\-/]*$/.test(webhookPath) || /^\/(events|healthz|readyz|metrics|console)(\/|$)/.test(webhookPath)) {
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
  const forwarding = forwardingConfig(flags, env, dataDir, defaultDataDir, generateMissing, notices);
  const streamLimitValue = pick("stream-limit", flags, env);
  const streamLimit = streamLimitValue === undefined ? DEFAULTS.streamLimit : /^\d{1,6}$/.test(streamLimitValue) ? Number(streamLimitValue) : NaN;
  if (!(streamLimit >= 0)) throw new ConfigError(`${describe("stream-limit")}: "${streamLimitValue}" is not a whole number of streams`);
  const consoleValue = pick("console", flags, env) ?? "on";
  if (!/^(on|off|1|0|true|false|yes|no)$/i.test(consoleValue)) {
    throw new ConfigError(`--console, --no-console / ${VALUE_SETTINGS.console}: "${consoleValue}" is not one of on, off, 1, 0, true, false, yes, no`);
  }
  const consoleOn = /^(on|1|true|yes)$/i.test(consoleValue);
  const checkpoints = pick("checkpoints", flags, env) ?? "receiver";
  if (checkpoints !== "receiver" && checkpoints !== "litestream") {
    throw new ConfigError(`${describe("checkpoints")}: "${checkpoints}" is not receiver or litestream`);
  }
  return {
    config: {
      host, port, webhookPath, dataDir, databasePath, secrets, queryToken, bodyLimit, rejectionLimit, reusePort, forwarding, streamLimit,
      console: consoleOn,
      reconcile: scheduledReconcile(flags, env),
      checkpoints,
    },
    notices,
    defaultDataDir,
  };
}
