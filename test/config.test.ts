import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, loadConfig, parseSecretsFile, parseSize } from "../src/config.ts";
import { tempDir } from "./support/server.ts";

function dirs() {
  const root = tempDir("icr-config-");
  const dataDir = join(root, "data");
  const credentials = join(root, "credentials");
  mkdirSync(dataDir);
  mkdirSync(credentials);
  const write = (path: string, text: string) => (writeFileSync(path, text), path);
  return { root, dataDir, credentials, write };
}

describe("first start on defaults", () => {
  test("generates a secret and a query token, mode 0600, and says where (never what)", () => {
    const { dataDir } = dirs();
    const { config, notices } = loadConfig([], { ICR_RECEIVER_DATA_DIR: dataDir });
    const secretFile = join(dataDir, "webhook-secret");
    const tokenFile = join(dataDir, "query-token");
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(config.secrets).toEqual([{ label: "default", secret: readFileSync(secretFile, "utf8").trim() }]);
    expect(config.queryToken).toBe(readFileSync(tokenFile, "utf8").trim());
    expect(config.secrets[0]!.secret.length).toBeGreaterThanOrEqual(43);
    expect(notices.join("\n")).toContain(secretFile);
    expect(notices.join("\n")).toContain('"General" tab');
    expect(notices.join("\n")).not.toContain(config.secrets[0]!.secret);
    expect(notices.join("\n")).not.toContain(config.queryToken);

    const again = loadConfig([], { ICR_RECEIVER_DATA_DIR: dataDir });
    expect(again.notices).toEqual([]);
    expect(again.config.secrets).toEqual(config.secrets);
    expect(again.config).toMatchObject({ host: "127.0.0.1", port: 4040, webhookPath: "/webhook", bodyLimit: 1048576 });
    expect(again.config.databasePath).toBe(join(dataDir, "icr-receiver.db"));
  });

  test("without generation, no secret is an error", () => {
    const { dataDir } = dirs();
    expect(() => loadConfig([], { ICR_RECEIVER_DATA_DIR: dataDir }, { generateMissing: false })).toThrow(ConfigError);
  });
});

describe("precedence: flags, environment, $CREDENTIALS_DIRECTORY, data directory", () => {
  test("each level wins over the ones after it", () => {
    const { dataDir, credentials, write, root } = dirs();
    write(join(dataDir, "webhook-secret"), "from-data-dir\n");
    write(join(dataDir, "query-token"), "token-data-dir\n");
    const base = { ICR_RECEIVER_DATA_DIR: dataDir };
    expect(loadConfig([], base).config.secrets[0]!.secret).toBe("from-data-dir");

    write(join(credentials, "webhook-secrets"), "new=cred-new\nold=cred-old\n");
    write(join(credentials, "query-token"), "token-cred");
    const withCredentials = { ...base, CREDENTIALS_DIRECTORY: credentials };
    expect(loadConfig([], withCredentials).config).toMatchObject({
      secrets: [{ label: "new", secret: "cred-new" }, { label: "old", secret: "cred-old" }],
      queryToken: "token-cred",
    });

    const withEnv = { ...withCredentials, ICR_RECEIVER_SECRET: "from-env", ICR_RECEIVER_QUERY_TOKEN: "token-env", ICR_RECEIVER_PORT: "5000" };
    expect(loadConfig([], withEnv).config).toMatchObject({ secrets: [{ label: "default", secret: "from-env" }], queryToken: "token-env", port: 5000 });

    const secretFlag = write(join(root, "flag-secret"), "from-flag\r\n");
    const tokenFlag = write(join(root, "flag-token"), "token-flag\n");
    const flagged = loadConfig(["--secret-file", secretFlag, "--query-token-file", tokenFlag, "--port", "6000"], withEnv).config;
    expect(flagged).toMatchObject({ secrets: [{ label: "default", secret: "from-flag" }], queryToken: "token-flag", port: 6000 });
  });

  test("ICR_RECEIVER_SECRETS_FILE, ICR_RECEIVER_DB, body limit and paths from the environment", () => {
    const { dataDir, write, root } = dirs();
    const secrets = write(join(root, "secrets"), "# rotation window\n\nold=s1\nnew = s=2 with spaces \n");
    const { config } = loadConfig([], {
      ICR_RECEIVER_DATA_DIR: dataDir,
      ICR_RECEIVER_SECRETS_FILE: secrets,
      ICR_RECEIVER_QUERY_TOKEN: "t",
      ICR_RECEIVER_DB: join(root, "elsewhere.db"),
      ICR_RECEIVER_BODY_LIMIT: "512KiB",
      ICR_RECEIVER_HOST: "0.0.0.0",
      ICR_RECEIVER_WEBHOOK_PATH: "/icr/hook",
    });
    expect(config).toMatchObject({
      secrets: [{ label: "old", secret: "s1" }, { label: "new", secret: " s=2 with spaces " }],
      databasePath: join(root, "elsewhere.db"),
      bodyLimit: 512 * 1024,
      host: "0.0.0.0",
      webhookPath: "/icr/hook",
    });
  });
});

describe("secrets file", () => {
  test("split at the first =, secret verbatim, comments and blank lines ignored", () => {
    expect(parseSecretsFile("a=x=y\n  # note\n\nb= padded \r\n", "f")).toEqual([
      { label: "a", secret: "x=y" },
      { label: "b", secret: " padded " },
    ]);
  });

  test.each([
    ["no equals sign", "just-a-secret-value\n", "line 1"],
    ["empty secret", "a=\n", "line 1"],
    ["empty label", "=secret\n", "line 1"],
    ["repeated label", "a=1\na=2\n", "line 2"],
    ["nothing in it", "# only a comment\n", "no label=secret"],
  ])("%s is refused, naming the line but not its content", (_, text, where) => {
    let message = "";
    try {
      parseSecretsFile(text, "secrets.txt");
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      message = (error as Error).message;
    }
    expect(message).toContain(where);
    expect(message).not.toContain("just-a-secret-value");
  });
});

describe("invalid configuration", () => {
  const env = { ICR_RECEIVER_SECRET: "s", ICR_RECEIVER_QUERY_TOKEN: "t", ICR_RECEIVER_DATA_DIR: "/tmp/icr-unused" };
  test.each([
    [{ ICR_RECEIVER_PORT: "http" }, "ICR_RECEIVER_PORT"],
    [{ ICR_RECEIVER_PORT: "70000" }, "ICR_RECEIVER_PORT"],
    [{ ICR_RECEIVER_BODY_LIMIT: "lots" }, "ICR_RECEIVER_BODY_LIMIT"],
    [{ ICR_RECEIVER_BODY_LIMIT: "0" }, "ICR_RECEIVER_BODY_LIMIT"],
    [{ ICR_RECEIVER_WEBHOOK_PATH: "webhook" }, "ICR_RECEIVER_WEBHOOK_PATH"],
    [{ ICR_RECEIVER_WEBHOOK_PATH: "/events" }, "ICR_RECEIVER_WEBHOOK_PATH"],
    [{ ICR_RECEIVER_SECRET: "" }, "ICR_RECEIVER_SECRET"],
    [{ ICR_RECEIVER_SECRETS_FILE: "/nonexistent/secrets", ICR_RECEIVER_SECRET: undefined }, "ICR_RECEIVER_SECRETS_FILE"],
  ])("%p names %s", (override, setting) => {
    expect(() => loadConfig([], { ...env, ...override })).toThrow(setting);
  });

  test("secrets are never taken as command-line values", () => {
    expect(() => loadConfig(["--secret", "hunter2"], env)).toThrow("never taken on the command line");
    expect(() => loadConfig(["--query-token=hunter2"], env)).toThrow("never taken on the command line");
    expect(() => loadConfig(["--bogus"], env)).toThrow(ConfigError);
  });

  test("sizes", () => {
    expect(parseSize("1MiB")).toBe(1048576);
    expect(parseSize("64k")).toBe(65536);
    expect(parseSize("1000")).toBe(1000);
  });
});

describe("the executable", () => {
  const run = (args: string[], env: Record<string, string> = {}) => {
    const result = Bun.spawnSync(["bun", join(import.meta.dir, "..", "src", "main.ts"), ...args], {
      env: { PATH: process.env.PATH!, ...env },
      cwd: tempDir("icr-cwd-"),
    });
    return { status: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
  };

  test("invalid configuration exits 78 with one line naming the setting, no stack trace, no secret", () => {
    const result = run(["--port", "http"], { ICR_RECEIVER_SECRET: "hunter2-secret", ICR_RECEIVER_QUERY_TOKEN: "t" });
    expect(result.status).toBe(78);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain("--port / ICR_RECEIVER_PORT");
    expect(result.stderr + result.stdout).not.toContain("hunter2-secret");
    expect(result.stderr).not.toContain("    at ");
    const forwarding = run(["--forward-url", "http://127.0.0.1:9/x", "--forward-timeout", "ten"], { ICR_RECEIVER_SECRET: "hunter2-secret", ICR_RECEIVER_QUERY_TOKEN: "t" });
    expect(forwarding.status).toBe(78);
    expect(forwarding.stderr.trim().split("\n")).toEqual(['icr-receiver: --forward-timeout / ICR_RECEIVER_FORWARD_TIMEOUT: "ten" is not a duration (a whole number and ms, s, m, h or d: 10s, 3d)']);
  });

  test("--help and --version", () => {
    const help = run(["--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("ICR_RECEIVER_SECRETS_FILE");
    expect(help.stdout).toContain("--no-console");
    expect(help.stdout).toContain("ICR_RECEIVER_CONSOLE=off");
    const version = run(["--version"]);
    expect(version.status).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});

describe("the data directory", () => {
  test("a configured one that does not exist is refused, not created (an unmounted volume?)", () => {
    const root = tempDir("icr-datadir-");
    const missing = join(root, "volume", "data");
    expect(() => loadConfig([], { ICR_RECEIVER_DATA_DIR: missing })).toThrow("does not exist");
    expect(existsSync(missing)).toBe(false);
  });
});

describe("forwarding", () => {
  const base = (dataDir: string) => ({ ICR_RECEIVER_DATA_DIR: dataDir, ICR_RECEIVER_SECRET: "s", ICR_RECEIVER_QUERY_TOKEN: "t" });
  const whsec = `whsec_${Buffer.alloc(24, 7).toString("base64")}`;

  test("off without a destination; one URL is `default`, with the documented defaults", () => {
    const { dataDir } = dirs();
    expect(loadConfig([], base(dataDir)).config.forwarding).toBeNull();
    const { config } = loadConfig(["--forward-url", "https://app.example/icr"], { ...base(dataDir), ICR_RECEIVER_FORWARD_SECRET: whsec });
    expect(config.forwarding).toEqual({
      destinations: [{ name: "default", url: "https://app.example/icr", events: null }],
      secrets: [whsec],
      timeoutMs: 10_000,
      backoffMs: 5000,
      maxBackoffMs: 3_600_000,
      maxAgeMs: 3 * 86_400_000,
      concurrency: 8,
    });
  });

  test("a forwards file: name=url lines, an events= filter, comments; the durations and the concurrency", () => {
    const { dataDir, write } = dirs();
    const file = write(join(dataDir, "forwards"), "# fan-out\napp=http://127.0.0.1:9000/a\n\nbilling=https://b.example/x events=warehouseTransaction,organizationTransaction\n");
    const env = { ...base(dataDir), ICR_RECEIVER_FORWARDS_FILE: file, ICR_RECEIVER_FORWARD_SECRET: whsec, ICR_RECEIVER_FORWARD_TIMEOUT: "250ms", ICR_RECEIVER_FORWARD_BACKOFF: "2m", ICR_RECEIVER_FORWARD_MAX_AGE: "1h", ICR_RECEIVER_FORWARD_CONCURRENCY: "3" };
    expect(loadConfig([], env).config.forwarding).toMatchObject({
      destinations: [
        { name: "app", url: "http://127.0.0.1:9000/a", events: null },
        { name: "billing", url: "https://b.example/x", events: ["warehouseTransaction", "organizationTransaction"] },
      ],
      timeoutMs: 250,
      backoffMs: 120_000,
      maxAgeMs: 3_600_000,
      concurrency: 3,
    });
  });

  test("no forwarding secret: one is generated, mode 0600, and said where (never what); then read back", () => {
    const { dataDir } = dirs();
    const env = { ...base(dataDir), ICR_RECEIVER_FORWARD_URL: "http://127.0.0.1:9/x" };
    const { config, notices } = loadConfig([], env);
    const path = join(dataDir, "forward-secret");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const secret = readFileSync(path, "utf8").trim();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(config.forwarding!.secrets).toEqual([secret]);
    expect(notices.join("\n")).toContain(path);
    expect(notices.join("\n")).not.toContain(secret);
    expect(loadConfig([], env).config.forwarding!.secrets).toEqual([secret]);
  });

  test.each([
    [{ ICR_RECEIVER_FORWARD_TIMEOUT: "10" }, "--forward-timeout / ICR_RECEIVER_FORWARD_TIMEOUT"],
    [{ ICR_RECEIVER_FORWARD_BACKOFF: "5 sec" }, "--forward-backoff / ICR_RECEIVER_FORWARD_BACKOFF"],
    [{ ICR_RECEIVER_FORWARD_MAX_AGE: "0s" }, "--forward-max-age / ICR_RECEIVER_FORWARD_MAX_AGE"],
    [{ ICR_RECEIVER_FORWARD_CONCURRENCY: "0" }, "--forward-concurrency / ICR_RECEIVER_FORWARD_CONCURRENCY"],
    [{ ICR_RECEIVER_FORWARD_URL: "ftp://x/" }, "not an http or https URL"],
    [{ ICR_RECEIVER_FORWARD_URL: "https://user:pw@app.example/" }, "credentials in the URL are not accepted"],
    [{ ICR_RECEIVER_FORWARD_SECRET: "whsec_c2hvcnQ=" }, "ICR_RECEIVER_FORWARD_SECRET: secret 1 is not whsec_"],
    [{ ICR_RECEIVER_FORWARD_SECRET: "not-a-whsec" }, "ICR_RECEIVER_FORWARD_SECRET: secret 1 is not whsec_"],
    [{ ICR_RECEIVER_FORWARDS_FILE: "/nonexistent/forwards" }, "--forwards-file / ICR_RECEIVER_FORWARDS_FILE: cannot read"],
  ])("%p is refused, naming the setting", (settings, message) => {
    const { dataDir } = dirs();
    const env = { ...base(dataDir), ICR_RECEIVER_FORWARD_URL: "http://127.0.0.1:9/x", ICR_RECEIVER_FORWARD_SECRET: whsec, ...settings };
    if ("ICR_RECEIVER_FORWARDS_FILE" in settings) delete (env as Record<string, string>).ICR_RECEIVER_FORWARD_URL;
    expect(() => loadConfig([], env)).toThrow(message);
  });

  test("a forwards file line that is not name=url, a repeated name, an unknown option: the line number, not its content", () => {
    const { dataDir, write } = dirs();
    for (const [text, message] of [
      ["app http://x/", "line 1 is not of the form name=url"],
      ["Upper=http://x/", "line 1 is not of the form name=url"],
      ["a=http://x/\na=http://y/", "line 2 repeats the destination"],
      ["a=http://x/ retries=3", "line 1: unknown option"],
    ] as const) {
      const file = write(join(dataDir, "forwards"), text);
      expect(() => loadConfig([], { ...base(dataDir), ICR_RECEIVER_FORWARDS_FILE: file, ICR_RECEIVER_FORWARD_SECRET: whsec })).toThrow(message);
    }
    expect(() => loadConfig(["--forward-url", "http://x/", "--forwards-file", "f"], base(dataDir))).toThrow("give one of them, not both");
    expect(() => loadConfig(["--forward-secret", whsec], base(dataDir))).toThrow("never taken on the command line");
  });
});

describe("the console switch", () => {
  const load = (argv: string[], env: Record<string, string> = {}) => {
    const { dataDir } = dirs();
    return loadConfig(argv, { ICR_RECEIVER_DATA_DIR: dataDir, ...env }).config;
  };

  test("is on by default; --no-console and ICR_RECEIVER_CONSOLE=off turn it off, a flag over the environment", () => {
    expect(load([]).console).toBe(true);
    expect(load(["--no-console"]).console).toBe(false);
    expect(load([], { ICR_RECEIVER_CONSOLE: "off" }).console).toBe(false);
    expect(load([], { ICR_RECEIVER_CONSOLE: "0" }).console).toBe(false);
    expect(load(["--console"], { ICR_RECEIVER_CONSOLE: "off" }).console).toBe(true);
    expect(load(["--no-console"], { ICR_RECEIVER_CONSOLE: "on" }).console).toBe(false);
  });

  test("any other value is an error naming the setting", () => {
    expect(() => load([], { ICR_RECEIVER_CONSOLE: "maybe" })).toThrow(ConfigError);
    expect(() => load([], { ICR_RECEIVER_CONSOLE: "maybe" })).toThrow(/ICR_RECEIVER_CONSOLE: "maybe" is not one of on, off/);
  });

  test("the webhook path cannot take the console's", () => {
    expect(() => load(["--webhook-path", "/console"])).toThrow(/is not a free absolute path/);
    expect(() => load(["--webhook-path", "/console/x"])).toThrow(/is not a free absolute path/);
  });
});
