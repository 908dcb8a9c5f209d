// Two behaviours of Bun's HTTP server (1.4.4 and 1.4.5, the newest on npm) that the receiver cannot
// change from inside its handler, shown byte for byte so that the day Bun changes them, these tests
// fail and the README's note on them ("At the door") is updated. Both keep the promise that
// matters: a delivery that reaches the handler is verified and committed before anything else.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { signedDelivery, startServer, type TestServer } from "./support/server.ts";

let server: TestServer;
beforeAll(async () => (server = await startServer()));
afterAll(() => server.stop());

const stored = (payloadText: string) =>
  server.database.sqlite.query<{ n: number }, [string]>("SELECT count(*) AS n FROM events WHERE payload = ?").get(payloadText)!.n;

/** Bun closes the connection while the handler still runs: the commit lands a moment later. */
async function storedSoon(payloadText: string): Promise<number> {
  for (let i = 0; i < 100 && stored(payloadText) === 0; i++) await Bun.sleep(20);
  return stored(payloadText);
}

/** Writes `bytes` in one go on a fresh connection; everything the server sends until it closes (or 3 s). */
function exchange(bytes: string): Promise<{ received: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(Number(new URL(server.url).port), "127.0.0.1");
    let received = "";
    const finish = (closedByServer: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ received, closedByServer });
    };
    const timer = setTimeout(() => finish(false), 3000);
    socket.on("connect", () => socket.write(bytes));
    socket.on("data", (chunk) => (received += chunk.toString("latin1")));
    socket.on("end", () => finish(true));
    socket.on("error", () => finish(true));
  });
}

const head = (headers: Record<string, string>) =>
  `POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`;

describe("at the door (Bun.serve behaviour, documented in the README)", () => {
  test("two deliveries pipelined on one connection: the first is committed, nothing is answered, the second is never read", async () => {
    const first = signedDelivery({ event: "installed" });
    const second = signedDelivery({ event: "suspended" });
    const request = (d: typeof first) =>
      head({ "content-type": "application/json", "content-length": String(Buffer.byteLength(d.body)), ...d.headers }) + d.body;
    const { received, closedByServer } = await exchange(request(first) + request(second));
    expect(closedByServer).toBe(true);
    expect(received).toBe("");
    expect(await storedSoon(first.payloadText)).toBe(1);
    expect(stored(second.payloadText)).toBe(0);
    // The same two requests one after the other on one connection: both answered, both stored.
    const again = [signedDelivery({ event: "installed" }), signedDelivery({ event: "suspended" })];
    for (const d of again) {
      const response = await server.post(d.body, d.headers);
      expect(response.status).toBe(202);
    }
  });

  test("a chunked body ending in a trailer: committed, and the client gets Bun's bare 400", async () => {
    const d = signedDelivery({ event: "installed" });
    const body = Buffer.byteLength(d.body).toString(16) + "\r\n" + d.body + "\r\n0\r\nX-Checksum: 1\r\n\r\n";
    const { received } = await exchange(head({ "content-type": "application/json", "transfer-encoding": "chunked", trailer: "X-Checksum", ...d.headers }) + body);
    expect(received.startsWith("HTTP/1.1 400 Bad Request\r\n")).toBe(true);
    expect(received).not.toContain("202");
    expect(await storedSoon(d.payloadText)).toBe(1);
    // Without the trailer, the same chunked delivery is answered 202.
    const plain = signedDelivery({ event: "installed" });
    const plainBody = Buffer.byteLength(plain.body).toString(16) + "\r\n" + plain.body + "\r\n0\r\n\r\n";
    const answered = await exchange(head({ "content-type": "application/json", "transfer-encoding": "chunked", connection: "close", ...plain.headers }) + plainBody);
    expect(answered.received.startsWith("HTTP/1.1 202 Accepted\r\n")).toBe(true);
    expect(stored(plain.payloadText)).toBe(1);
  });
});
