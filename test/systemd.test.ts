// systemd integration, checked against the real thing as far as a container allows: sd_notify
// datagrams received by a real AF_UNIX socket (in python3, independent of our bun:ffi code, which
// also reports the sender's pid from SCM_CREDENTIALS, as systemd checks for NotifyAccess=main),
// the real server started as a process, and the unit checked by `systemd-analyze verify`.
// Prerequisites (python3, systemd-analyze): test/prerequisites.sh, run by `npm test`.
import { afterEach, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CREDENTIAL_FILES } from "../src/config.ts";
import { notify, notifyReady, notifyStatus, notifyStopping, startWatchdog, watchdogIntervalMs } from "../src/service/systemd.ts";

const ROOT = join(import.meta.dir, "..");
const UNIT = join(ROOT, "deploy", "icr-receiver.service");

// Prints one JSON line per datagram: {"state": "...", "pid": sender}. Exits when stdin closes, so it
// cannot outlive a test runner that dies before its cleanup.
const LISTENER = String.raw`
import json, os, socket, struct, sys, threading
target = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind("\0" + target[1:] if target.startswith("@") else target)
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
print(json.dumps({"bound": True}), flush=True)
while True:
    data, ancillary, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
    print(json.dumps({"state": data.decode(), "pid": pid}), flush=True)
`;

interface Datagram {
  state: string;
  pid: number | null;
}

// ---- cleanup: every process and temp dir a test creates is registered here -------------------

const processes: Subprocess[] = [];
const directories: string[] = [];

afterEach(async () => {
  for (const child of processes.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await child.exited;
  }
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function tempDir(): string {
  const directory = mkdtempSync(join(tmpdir(), "icr-systemd-test-"));
  directories.push(directory);
  return directory;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Collects the lines of a stream and lets a test wait for one that matches. */
class Lines {
  readonly items: string[] = [];
  private waiters: Array<() => void> = [];
  ended = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    void this.pump(stream);
  }

  private async pump(stream: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop()!;
      this.items.push(...parts);
      this.wake();
    }
    if (rest !== "") this.items.push(rest);
    this.ended = true;
    this.wake();
  }

  private wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** Resolves with the index of the first line from `from` on that matches; rejects on timeout. */
  async waitFor(match: (line: string) => boolean, what: string, timeoutMs: number, from = 0): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.items.findIndex((line, i) => i >= from && match(line));
      if (index >= 0) return index;
      if (this.ended) throw new Error(`stream ended without ${what}; lines: ${JSON.stringify(this.items)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; lines: ${JSON.stringify(this.items)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

/** A NOTIFY_SOCKET listener at a path, or in the abstract namespace for an "@name" address. */
async function listen(address: string) {
  const child = Bun.spawn(["python3", "-c", LISTENER, address], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  processes.push(child);
  const lines = new Lines(child.stdout);
  await lines.waitFor((line) => line.includes('"bound"'), "the listener to bind", 10_000);
  const datagrams = () => lines.items.slice(1).map((line) => JSON.parse(line) as Datagram);
  const waitFor = async (match: (d: Datagram) => boolean, what: string, timeoutMs = 10_000, from = 0) => {
    // +1: line 0 is the "bound" line, not a datagram.
    const index = await lines.waitFor(
      (line) => !line.includes('"bound"') && match(JSON.parse(line) as Datagram),
      what,
      timeoutMs,
      from + 1,
    );
    return index - 1;
  };
  return { address, datagrams, waitFor };
}

/** Sends a marker through the same socket: datagrams queue in order, so anything sent before it arrived first. */
async function marker(listener: Awaited<ReturnType<typeof listen>>, name: string): Promise<Datagram[]> {
  expect(notify(`X_TEST_MARKER=${name}`, { env: { NOTIFY_SOCKET: listener.address } })).toBe(true);
  const index = await listener.waitFor((d) => d.state === `X_TEST_MARKER=${name}`, `marker ${name}`);
  return listener.datagrams().slice(0, index);
}

// ---- src/service/systemd.ts against a real socket ---------------------------------------------

describe("sd_notify", () => {
  test("without NOTIFY_SOCKET nothing is sent and nothing fails", async () => {
    const listener = await listen(join(tempDir(), "notify.sock"));
    const errors: string[] = [];
    const options = { env: { WATCHDOG_USEC: "20000" }, onError: (e: string) => errors.push(e) };
    expect(notify("READY=1", options)).toBe(false);
    expect(notifyReady("up", options)).toBe(false);
    expect(notifyStopping(undefined, options)).toBe(false);
    const stop = startWatchdog(options);
    await sleep(100);
    stop();
    expect(await marker(listener, "end")).toEqual([]);
    expect(errors).toEqual([]);
  }, 20_000);

  test("sends exactly READY=1, STOPPING=1 and STATUS= to a socket path, from this process", async () => {
    const listener = await listen(join(tempDir(), "notify.sock"));
    const options = { env: { NOTIFY_SOCKET: listener.address } };
    expect(notifyReady(undefined, options)).toBe(true);
    expect(notifyReady("listening on 127.0.0.1:1\nsecond line", options)).toBe(true);
    expect(notifyStatus("draining", options)).toBe(true);
    expect(notifyStopping(undefined, options)).toBe(true);
    const received = await marker(listener, "end");
    expect(received.map((d) => d.state)).toEqual([
      "READY=1",
      "READY=1\nSTATUS=listening on 127.0.0.1:1 second line", // a newline in STATUS would start a new key
      "STATUS=draining",
      "STOPPING=1",
    ]);
    for (const d of received) expect(d.pid).toBe(process.pid);
  }, 20_000);

  test("reaches an abstract-namespace socket (@name)", async () => {
    const listener = await listen(`@icr-receiver-test-${process.pid}-${crypto.randomUUID()}`);
    expect(notifyReady(undefined, { env: { NOTIFY_SOCKET: listener.address } })).toBe(true);
    expect((await marker(listener, "end")).map((d) => d.state)).toEqual(["READY=1"]);
  }, 20_000);

  test("reports, without throwing, a socket that is missing or not absolute", () => {
    const errors: string[] = [];
    const onError = (e: string) => errors.push(e);
    const missing = join(tempDir(), "nobody-listens.sock");
    expect(notify("READY=1", { env: { NOTIFY_SOCKET: missing }, onError })).toBe(false);
    expect(notify("READY=1", { env: { NOTIFY_SOCKET: "relative.sock" }, onError })).toBe(false);
    expect(notify("READY=1", { env: { NOTIFY_SOCKET: "/" + "x".repeat(200) }, onError })).toBe(false);
    expect(errors).toHaveLength(3);
    expect(errors[0]).toContain("sendto() failed, errno 2"); // ENOENT
    expect(errors[1]).toContain("neither an absolute path nor @abstract");
    expect(errors[2]).toContain("longer than");
  }, 20_000);

  test("watchdog interval: half of WATCHDOG_USEC, only for the process WATCHDOG_PID names", () => {
    expect(watchdogIntervalMs({}, 42)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000" }, 42)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "42" }, 42)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "41" }, 42)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "0" }, 42)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "soon" }, 42)).toBeUndefined();
  });

  test("watchdog pings arrive every WATCHDOG_USEC/2 until stopped", async () => {
    const listener = await listen(join(tempDir(), "notify.sock"));
    const env = { NOTIFY_SOCKET: listener.address, WATCHDOG_USEC: "100000", WATCHDOG_PID: String(process.pid) };
    const started = Date.now();
    const stop = startWatchdog({ env });
    try {
      await listener.waitFor(() => listener.datagrams().length >= 4, "4 watchdog pings");
    } finally {
      stop();
    }
    // The first ping goes at once, then every 50 ms: four take at least 150 ms (timers never fire early).
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    const before = await marker(listener, "stopped");
    expect(before.length).toBeGreaterThanOrEqual(4);
    expect(new Set(before.map((d) => d.state))).toEqual(new Set(["WATCHDOG=1"]));
    // After stop(): three intervals pass without a ping.
    await sleep(150);
    const all = await marker(listener, "later");
    expect(all.slice(before.length + 1)).toEqual([]);
  }, 20_000);

  test("no watchdog pings for another process's WATCHDOG_PID", async () => {
    const listener = await listen(join(tempDir(), "notify.sock"));
    const stop = startWatchdog({ env: { NOTIFY_SOCKET: listener.address, WATCHDOG_USEC: "20000", WATCHDOG_PID: "1" } });
    await sleep(100);
    stop();
    expect(await marker(listener, "end")).toEqual([]);
  }, 20_000);
});

// ---- the real server --------------------------------------------------------------------------

function startServer(notifySocket: string, extraEnv: Record<string, string> = {}) {
  const env: Record<string, string | undefined> = { ...process.env };
  // Nothing from the runner's own environment may leak into the server's configuration.
  for (const name of Object.keys(env)) {
    if (name.startsWith("ICR_RECEIVER_") || name.startsWith("WATCHDOG_")) delete env[name];
  }
  for (const name of ["NOTIFY_SOCKET", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY"]) delete env[name];
  const server = Bun.spawn([process.execPath, join(ROOT, "src", "main.ts"), "serve"], {
    cwd: tempDir(),
    env: {
      ...env,
      ICR_RECEIVER_HOST: "127.0.0.1",
      ICR_RECEIVER_PORT: "0",
      ICR_RECEIVER_DATA_DIR: tempDir(),
      ICR_RECEIVER_SECRET: "x",
      ICR_RECEIVER_QUERY_TOKEN: "y",
      NOTIFY_SOCKET: notifySocket,
      ...extraEnv,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  processes.push(server);
  return { server, stdout: new Lines(server.stdout), stderr: new Lines(server.stderr) };
}

async function exitCode(server: Subprocess, timeoutMs: number): Promise<number | string> {
  const timeout = sleep(timeoutMs).then(() => "still running");
  return Promise.race([server.exited, timeout]);
}

describe("server readiness", () => {
  test("READY=1 once listening, WATCHDOG=1 while up, STOPPING=1 on SIGTERM, then exit 0", async () => {
    const listener = await listen(join(tempDir(), "notify.sock"));
    const { server, stdout, stderr } = startServer(listener.address, { WATCHDOG_USEC: "400000" });

    const ready = await listener.waitFor((d) => d.state.split("\n").includes("READY=1"), "READY=1", 30_000);
    // Right away, before looking at anything else: the port named in STATUS must answer.
    const status = listener.datagrams()[ready]!.state.split("\n").find((l) => l.startsWith("STATUS="));
    const port = Number(/:(\d+)$/.exec(status ?? "")?.[1]);
    expect(port).toBeGreaterThan(0);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

    expect(ready).toBe(0); // nothing (no watchdog ping either) before READY=1
    expect(listener.datagrams()[ready]!.pid).toBe(server.pid); // the main process, for NotifyAccess=main
    const listening = await stdout.waitFor((l) => l.includes('"listening"'), "the listening log line", 10_000);
    expect(JSON.parse(stdout.items[listening]!).port).toBe(port);

    // WATCHDOG_USEC=400000: a ping every 200 ms from the server itself.
    await listener.waitFor((d) => d.state === "WATCHDOG=1" && d.pid === server.pid, "a watchdog ping", 10_000, ready + 1);

    server.kill("SIGTERM");
    const stopping = await listener.waitFor((d) => d.state === "STOPPING=1", "STOPPING=1", 20_000, ready + 1);
    expect(listener.datagrams()[stopping]!.pid).toBe(server.pid);
    expect(await exitCode(server, 20_000)).toBe(0);
    expect(new Set(listener.datagrams().map((d) => d.state.split("\n")[0]))).toEqual(
      new Set(["READY=1", "WATCHDOG=1", "STOPPING=1"]),
    );
    expect(stderr.items.join("\n")).toBe("");
  }, 60_000);

  test("a broken NOTIFY_SOCKET is logged as a warning and does not stop the server", async () => {
    const { server, stdout } = startServer(join(tempDir(), "nobody-listens.sock"));
    const warning = await stdout.waitFor((l) => l.includes('"sd_notify failed"'), "the sd_notify warning", 30_000);
    const line = JSON.parse(stdout.items[warning]!);
    expect(line.level).toBe("warn");
    expect(line.reason).toContain("READY=1");
    const listening = await stdout.waitFor((l) => l.includes('"listening"'), "the listening log line", 10_000);
    const port = JSON.parse(stdout.items[listening]!).port;
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    server.kill("SIGTERM");
    expect(await exitCode(server, 20_000)).toBe(0);
  }, 60_000);
});

// ---- deploy/icr-receiver.service ----------------------------------------------------------------

/** The [Service] settings of the unit, as name → values (a key may repeat). */
function unitSettings(): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = "";
  for (const raw of readFileSync(UNIT, "utf8").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("[")) section = line;
    else if (section === "[Service]") {
      const [key, ...value] = line.split("=");
      settings.set(key!, [...(settings.get(key!) ?? []), value.join("=")]);
    }
  }
  return settings;
}

describe("deploy/icr-receiver.service", () => {
  test("declares what the receiver relies on", () => {
    const s = unitSettings();
    const one = (key: string) => s.get(key)?.at(-1);
    expect(one("Type")).toBe("notify");
    expect(one("NotifyAccess")).toBe("main");
    expect(one("ExecStart")).toBe("/usr/local/bin/icr-receiver serve");
    expect(one("WatchdogSec")).toMatch(/^\d+s$/);
    expect(one("TimeoutStopSec")).toMatch(/^\d+s$/);
    expect(one("Restart")).toBe("on-failure");
    expect(one("RestartPreventExitStatus")?.split(/\s+/)).toContain("78"); // main.ts EXIT_CONFIG
    expect(one("StateDirectory")).toBe("icr-receiver");
    expect(s.get("Environment")).toContain("ICR_RECEIVER_DATA_DIR=%S/icr-receiver");
    // The credential names are the ones config.ts looks up in $CREDENTIALS_DIRECTORY.
    const credentials = (s.get("LoadCredential") ?? []).map((v) => v.split(":")[0]);
    expect(credentials.sort()).toEqual([CREDENTIAL_FILES.queryToken, CREDENTIAL_FILES.secrets].sort());
    // Stack notes: MemoryDenyWriteExecute=yes turns off the JIT and breaks bun:ffi (sd_notify).
    expect(s.has("MemoryDenyWriteExecute")).toBe(false);
    // No secret in the unit: `systemctl show` prints Environment= to every local user.
    for (const value of s.get("Environment") ?? []) expect(value).not.toMatch(/SECRET|TOKEN/);
  });

  test("systemd-analyze verify passes without a single warning", () => {
    const analyze = Bun.which("systemd-analyze");
    if (analyze === null) throw new Error("systemd-analyze is missing: run test/prerequisites.sh");
    // verify checks that ExecStart's binary exists and is executable, and /usr/local/bin/icr-receiver
    // is not installed here. Only that path is swapped (for /bin/true) in a copy named like the
    // original; every other line is verified as shipped.
    const directory = tempDir();
    const original = readFileSync(UNIT, "utf8");
    const copy = original.replace(/^ExecStart=\/usr\/local\/bin\/icr-receiver /m, "ExecStart=/bin/true ");
    expect(copy).not.toBe(original);
    writeFileSync(join(directory, "icr-receiver.service"), copy);
    // --man=no: no man pages in CI images. Unknown keys and bad values are only warnings (exit 0),
    // so any output at all fails the test.
    const result = Bun.spawnSync([analyze, "verify", "--man=no", join(directory, "icr-receiver.service")], {
      env: { ...process.env, SYSTEMD_LOG_COLOR: "0" },
    });
    const output = `${result.stdout.toString()}${result.stderr.toString()}`;
    expect(output).toBe("");
    expect(result.exitCode).toBe(0);
  }, 30_000);
});
