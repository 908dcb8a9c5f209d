// Raw HTTP/1.1 over a TCP socket, for what fetch will not do: malformed or oversized heads, bytes
// trickled one at a time, bodies the server stops reading. Bun's native sockets, not node:net: when
// the server closes while the client is still sending, node:net reports EPIPE and drops the answer
// that had already arrived; a native socket still delivers it.
import type { Socket } from "bun";

export interface RawResponse {
  /** 0 when the connection ended before a status line arrived. */
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: string;
  /** Request bytes handed to the kernel before the exchange ended. */
  sent: number;
  /** From connecting until the connection closed (or the response was complete, if it stayed open). */
  ms: number;
  /** Whether the server closed the connection (as opposed to the client, after a complete response). */
  closedByServer: boolean;
  error: string | null;
}

export interface RawOptions {
  /** Sent after `request`, `times` times over: a large body without allocating it. */
  repeat?: { chunk: Uint8Array; times: number };
  /** Send one byte every this many ms (the request only; not with `repeat`). */
  byteIntervalMs?: number;
  /** With `byteIntervalMs`: send this many leading bytes at once, then trickle the rest. */
  trickleFrom?: number;
  /** Gives up (and closes) after this long. */
  timeoutMs?: number;
}

interface Parsed {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  complete: boolean;
}

function parse(received: Buffer, bodiless = false): Parsed | null {
  const end = received.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const [statusLine = "", ...lines] = received.subarray(0, end).toString("latin1").split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const body = received.subarray(end + 4);
  const length = headers["content-length"] === undefined ? null : Number(headers["content-length"]);
  const complete = bodiless || (length !== null && body.length >= length);
  return { status: Number(statusLine.split(" ")[1] ?? 0), headers, body, complete };
}

/** Sends `request` (and `repeat`) on a fresh connection and reads one response. Never rejects. */
export function rawRequest(port: number, request: string | Uint8Array, options: RawOptions = {}): Promise<RawResponse> {
  const { repeat, byteIntervalMs, trickleFrom = 0, timeoutMs = 30_000 } = options;
  const head = typeof request === "string" ? Buffer.from(request, "latin1") : Buffer.from(request);
  const started = performance.now();
  // The answer to a HEAD has a Content-Length but no body.
  const bodiless = head.subarray(0, 5).toString("latin1") === "HEAD ";
  return new Promise((resolve) => {
    let received = Buffer.alloc(0);
    let sent = 0;
    let error: string | null = null;
    let done = false;
    let closedByServer = false;
    let trickle: Timer | undefined;
    let timeout: Timer | undefined;
    // What is still to send: the head, then `repeat.times` copies of the chunk.
    let pending: Buffer = head;
    let repeatsLeft = repeat?.times ?? 0;

    const finish = (socket: Socket | null) => {
      if (done) return;
      done = true;
      clearInterval(trickle);
      clearTimeout(timeout);
      socket?.terminate();
      const parsed = parse(received, bodiless);
      resolve({
        status: parsed?.status ?? 0,
        headers: parsed?.headers ?? {},
        body: parsed?.body.toString("utf8") ?? "",
        sent,
        ms: performance.now() - started,
        closedByServer,
        error,
      });
    };

    const pump = (socket: Socket) => {
      while (!done) {
        if (pending.length === 0) {
          if (repeatsLeft === 0 || !repeat) {
            // All sent; the answer may have come in full while we were still sending.
            if (parse(received, bodiless)?.complete) finish(socket);
            return;
          }
          repeatsLeft--;
          pending = Buffer.from(repeat.chunk.buffer, repeat.chunk.byteOffset, repeat.chunk.byteLength);
        }
        const written = socket.write(pending);
        if (written <= 0) return;
        sent += written;
        pending = pending.subarray(written);
        if (pending.length > 0) return; // the kernel is full: wait for drain
      }
    };

    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(socket) {
          timeout = setTimeout(() => {
            error ??= `no answer within ${timeoutMs} ms`;
            finish(socket);
          }, timeoutMs);
          if (byteIntervalMs === undefined) return pump(socket);
          if (trickleFrom > 0) {
            const written = Math.max(0, socket.write(pending.subarray(0, trickleFrom)));
            sent += written;
            pending = pending.subarray(written);
          }
          trickle = setInterval(() => {
            if (done || pending.length === 0) return clearInterval(trickle);
            const written = socket.write(pending.subarray(0, 1));
            if (written > 0) {
              sent += written;
              pending = pending.subarray(written);
            }
          }, byteIntervalMs);
        },
        drain(socket) {
          if (byteIntervalMs === undefined) pump(socket);
        },
        data(socket, data) {
          received = Buffer.concat([received, data]);
          const parsed = parse(received, bodiless);
          // A complete answer to a request we have finished sending: the exchange is over.
          if (parsed?.complete && pending.length === 0 && repeatsLeft === 0) finish(socket);
        },
        end(socket) {
          closedByServer = true;
          finish(socket);
        },
        close(socket) {
          if (!done) closedByServer = true;
          finish(socket);
        },
        error(socket, err) {
          error ??= err.message;
        },
        connectError(_socket, err) {
          error = err.message;
          finish(null);
        },
      },
    }).catch((err: Error) => {
      error = err.message;
      finish(null);
    });
  });
}

/** A request head, CRLF-terminated, ready for a body. */
export function requestHead(method: string, path: string, headers: Record<string, string> | [string, string][]): string {
  const lines = (Array.isArray(headers) ? headers : Object.entries(headers)).map(([name, value]) => `${name}: ${value}\r\n`);
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${lines.join("")}\r\n`;
}
