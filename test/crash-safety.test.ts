// "A 2xx means the delivery is on disk", tested the hard way: SIGKILL the receiver in the middle
// of concurrent load, start it again, and find every acknowledged delivery in the log.
import { afterAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { rmSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { REPO, spawnReceiver, type ReceiverProcess } from "./support/process.ts";
import { signedDelivery, tempDir } from "./support/server.ts";

const dataDir = tempDir("icr-crash-");
const env = { ICR_RECEIVER_DATA_DIR: dataDir, ICR_RECEIVER_SECRET: FIXTURE_SECRET, ICR_RECEIVER_QUERY_TOKEN: "t" };
const start = () => spawnReceiver(["bun", join(REPO, "src", "main.ts")], { env });
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

/** Posts distinct deliveries from `workers` concurrent loops until stopped; returns the acknowledged ones. */
function load(url: string, workers: number) {
  const acknowledged: { id: number; payloadText: string }[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const d = signedDelivery();
      try {
        const response = await fetch(`${url}/webhook`, { method: "POST", headers: d.headers, body: d.body });
        if (response.status === 202) acknowledged.push({ id: (await response.json()).id, payloadText: d.payloadText });
      } catch {
        // The receiver died under this request: it was not acknowledged, so it may or may not be stored.
      }
    }
  });
  return { acknowledged, stop: async () => ((running = false), await Promise.all(loops)) };
}

function missingFromLog(acknowledged: { id: number; payloadText: string }[]): number {
  const db = new Database(join(dataDir, "icr-receiver.db"), { readonly: true });
  const find = db.query<{ payload: string }, [number]>("SELECT payload FROM events WHERE id = ?");
  const missing = acknowledged.filter(({ id, payloadText }) => find.get(id)?.payload !== payloadText).length;
  db.close();
  return missing;
}

test(
  "SIGKILL at five moments under load: every acknowledged delivery survives, the file stays sound",
  async () => {
    const allAcknowledged: { id: number; payloadText: string }[] = [];
    for (const delayMs of [150, 400, 50, 700, 250]) {
      const receiver = await start();
      const traffic = load(receiver.url, 16);
      await Bun.sleep(delayMs);
      receiver.proc.kill("SIGKILL");
      await receiver.proc.exited;
      await traffic.stop();
      allAcknowledged.push(...traffic.acknowledged);
      expect(missingFromLog(allAcknowledged)).toBe(0);
    }
    expect(allAcknowledged.length).toBeGreaterThan(100);

    const receiver = await start();
    const d = signedDelivery();
    expect((await fetch(`${receiver.url}/webhook`, { method: "POST", headers: d.headers, body: d.body })).status).toBe(202);
    expect(await receiver.stop()).toBe(0);
    const db = new Database(join(dataDir, "icr-receiver.db"), { readonly: true });
    expect(db.query<{ integrity_check: string }, []>("PRAGMA integrity_check").get()!.integrity_check).toBe("ok");
    db.close();
    expect(missingFromLog(allAcknowledged)).toBe(0);
  },
  120_000,
);

/** Opens a raw connection and sends a delivery's headers and half its body, the rest on demand. */
function slowDelivery(port: number) {
  const d = signedDelivery();
  const socket = connect(port, "127.0.0.1");
  let received = "";
  socket.on("data", (chunk) => (received += chunk));
  const answered = new Promise<string>((resolve) => socket.on("close", () => resolve(received)));
  const half = Math.floor(d.body.length / 2);
  socket.write(
    `POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `x-icr-signature-256: ${d.headers["x-icr-signature-256"]}\r\nContent-Length: ${Buffer.byteLength(d.body)}\r\nConnection: close\r\n\r\n` +
      d.body.slice(0, half),
  );
  return { d, answered, finish: () => socket.write(d.body.slice(half)) };
}

async function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.on("connect", () => (socket.destroy(), resolve(false)));
    socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

test(
  "SIGTERM under load: in-flight requests are answered and stored, new connections refused, exit 0",
  async () => {
    const receiver: ReceiverProcess = await start();
    const traffic = load(receiver.url, 8);
    await Bun.sleep(200);
    const slow = slowDelivery(receiver.port);
    await Bun.sleep(100);
    receiver.proc.kill("SIGTERM");
    // The listener closes at once, while the slow request is still in flight.
    let closed = false;
    for (let i = 0; i < 50 && !closed; i++) {
      closed = await refused(receiver.port);
      if (!closed) await Bun.sleep(20);
    }
    expect(closed).toBe(true);
    slow.finish();
    const answer = await slow.answered;
    expect(answer).toStartWith("HTTP/1.1 202");
    const slowId = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).id as number;
    expect(await receiver.proc.exited).toBe(0);
    await traffic.stop();
    expect(traffic.acknowledged.length).toBeGreaterThan(10);
    expect(missingFromLog([...traffic.acknowledged, { id: slowId, payloadText: slow.d.payloadText }])).toBe(0);
    expect(receiver.lines.some((line) => line.includes('"msg":"stopped"'))).toBe(true);
  },
  60_000,
);
