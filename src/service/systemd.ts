// sd_notify(3) without libsystemd: systemd's readiness protocol is one AF_UNIX datagram of
// newline-separated KEY=VALUE lines sent to $NOTIFY_SOCKET. Bun has neither sd_notify nor unix
// datagram sockets (node:dgram is UDP only), so the three libc calls go through bun:ffi.
// libc rather than libsystemd because the compiled binary links only libc and a VM may lack libsystemd.
// bun:ffi needs the JIT: this breaks under MemoryDenyWriteExecute=yes (see deploy/icr-receiver.service).
import { dlopen, FFIType, read } from "bun:ffi";

type Env = Record<string, string | undefined>;

interface NotifyOptions {
  /** Where NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are read; tests pass their own. */
  env?: Env;
  /** Called with the reason when a message could not be sent although NOTIFY_SOCKET is set. */
  onError?: (reason: string) => void;
}

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000; // the fd must not leak into anything we might spawn
const MSG_NOSIGNAL = 0x4000; // as libsystemd does: never die of SIGPIPE inside a notification
const SOCKADDR_UN_SIZE = 110; // sa_family_t (2) + sun_path[108]
const SUN_PATH_MAX = 108;

function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: {
      args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32],
      returns: FFIType.i64_fast,
    },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}

// Opened on first use only, so a run outside systemd never touches bun:ffi at all.
let libc: ReturnType<typeof openLibc> | undefined;

/** errno right after a failed call (best effort: nothing runs in between on this thread). */
function errno(): string {
  const location = libc!.__errno_location();
  return location === null ? "errno unknown" : `errno ${read.i32(location, 0)}`;
}

/** A sockaddr_un for NOTIFY_SOCKET: an absolute path, or "@name" for the abstract namespace. */
function socketAddress(target: string): { address: Uint8Array; length: number } | string {
  // Same rule as sd_notify in systemd 252 (before vsock: addresses, which 253 added).
  if (!(target.startsWith("/") || target.startsWith("@")) || target.length < 2) {
    return `NOTIFY_SOCKET "${target}" is neither an absolute path nor @abstract`;
  }
  const abstract = target.startsWith("@");
  const name = new TextEncoder().encode(abstract ? target.slice(1) : target);
  // An abstract name is a leading NUL plus the bytes, no terminator; a path needs its NUL.
  const pathBytes = name.length + 1;
  if (pathBytes > SUN_PATH_MAX) return `NOTIFY_SOCKET is longer than ${SUN_PATH_MAX - 1} bytes`;
  const address = new Uint8Array(SOCKADDR_UN_SIZE); // zero-filled: provides both NULs
  new Uint16Array(address.buffer, 0, 1)[0] = AF_UNIX; // sa_family_t is in host byte order
  address.set(name, abstract ? 3 : 2);
  return { address, length: 2 + pathBytes };
}

/**
 * Sends one notification (e.g. "READY=1", "STATUS=…", several separated by "\n").
 * Returns false, doing nothing, when NOTIFY_SOCKET is unset (not run by systemd with Type=notify),
 * and false with `onError` called when it is set but the datagram could not be sent.
 */
export function notify(state: string, { env = process.env, onError }: NotifyOptions = {}): boolean {
  const target = env.NOTIFY_SOCKET;
  if (target === undefined || target === "") return false;
  const fail = (reason: string) => {
    onError?.(`sd_notify ${JSON.stringify(state.split("\n")[0])}: ${reason}`);
    return false;
  };
  const address = socketAddress(target);
  if (typeof address === "string") return fail(address);
  try {
    libc ??= openLibc();
  } catch (error) {
    return fail(`bun:ffi cannot load libc: ${(error as Error).message}`);
  }
  const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(`socket() failed, ${errno()}`);
  try {
    const message = new TextEncoder().encode(state);
    // A fresh socket per message, as libsystemd does: nothing to keep open, nothing to reconnect.
    const sent = libc.sendto(fd, message, message.length, MSG_NOSIGNAL, address.address, address.length);
    if (Number(sent) !== message.length) return fail(`sendto() failed, ${errno()}`);
    return true;
  } finally {
    libc.close(fd);
  }
}

/** STATUS= is one line of free text shown by `systemctl status`; a newline would start a new key. */
function statusLine(text: string): string {
  return `STATUS=${text.replace(/[\r\n]+/g, " ")}`;
}

/** Readiness: send only once the service can take work (listening, database migrated). */
export function notifyReady(status?: string, options?: NotifyOptions): boolean {
  return notify(status === undefined ? "READY=1" : `READY=1\n${statusLine(status)}`, options);
}

/** Tells systemd the stop is ours and in progress, so `systemctl status` shows "deactivating". */
export function notifyStopping(status?: string, options?: NotifyOptions): boolean {
  return notify(status === undefined ? "STOPPING=1" : `STOPPING=1\n${statusLine(status)}`, options);
}

export function notifyStatus(status: string, options?: NotifyOptions): boolean {
  return notify(statusLine(status), options);
}

/**
 * The ping interval in milliseconds when systemd expects watchdog pings from this process:
 * half of WATCHDOG_USEC (as sd_watchdog_enabled(3) advises), or undefined when it does not.
 */
export function watchdogIntervalMs(env: Env = process.env, pid = process.pid): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || !/^\d+$/.test(usec) || Number(usec) === 0) return undefined;
  // WATCHDOG_PID names the process meant; a child that inherited the environment must stay quiet.
  const target = env.WATCHDOG_PID;
  if (target !== undefined && target !== "" && target !== String(pid)) return undefined;
  return Math.max(1, Number(usec) / 2000);
}

/**
 * Sends WATCHDOG=1 now and then every WATCHDOG_USEC/2 while the event loop runs. Pinging from a
 * timer means a blocked event loop (a hung synchronous call) stops the pings and systemd restarts us.
 * The timer is unref'd so it never keeps the process alive. Returns a function that stops the pings.
 */
export function startWatchdog(options: NotifyOptions & { pid?: number } = {}): () => void {
  const env = options.env ?? process.env;
  const interval = watchdogIntervalMs(env, options.pid);
  if (interval === undefined || !env.NOTIFY_SOCKET) return () => {};
  let reported = false;
  const ping = () =>
    notify("WATCHDOG=1", {
      env,
      // One report is enough: a failing socket would otherwise log twice per interval forever.
      onError: (reason) => {
        if (!reported) options.onError?.(reason);
        reported = true;
      },
    });
  ping();
  const timer = setInterval(ping, interval);
  timer.unref();
  return () => clearInterval(timer);
}
