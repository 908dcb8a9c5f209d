// GET /events/stream over real sockets: the head at once, the backlog then live events, resuming at
// Last-Event-ID with no gap and no repeat (across a restart too), filters, the heartbeat, a slow
// reader cut off while ingest goes on, the cap, SIGTERM, 200 streams, and the eventsource client.
import { afterEach, describe, expect, test } from "bun:test";
import { EventSource } from "eventsource";
import { join } from "node:path";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { REPO, spawnReceiver } from "./support/process.ts";
import { QUERY_TOKEN, signedDelivery, startServer, tempDir, type TestServer } from "./support/server.ts";
import { until } from "./support/until.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(overrides: Parameters<typeof startServer>[0] = {}, options: Parameters<typeof startServer>[1] = {}): Promise<TestServer> {
  const s = await startServer(overrides, options);
  cleanups.push(() => s.stop());
  return s;
}

async function post(s: { url: string }, payload: Record<string, unknown> = {}): Promise<number> {
  const d = signedDelivery(payload);
  const response = await fetch(`${s.url}/webhook`, { method: "POST", headers: d.headers, body: d.body });
  expect(response.status).toBe(202);
  return (await response.json()).id;
}

interface Message {
  id?: string;
  event?: string;
  data?: string;
  comment?: string;
  retry?: string;
}

/** An open stream, read over its socket as it arrives. */
class Reader {
  messages: Message[] = [];
  raw = "";
  done = false;
  status = 0;
  headers = new Headers();
  private buffered = "";
  private reader!: { read(): Promise<{ done: boolean; value?: Uint8Array }> };
  private readonly controller = new AbortController();

  static async open(url: string, headers: Record<string, string> = {}): Promise<Reader> {
    const reader = new Reader();
    const response = await fetch(url, { headers: { authorization: `Bearer ${QUERY_TOKEN}`, ...headers }, signal: reader.controller.signal });
    reader.status = response.status;
    reader.headers = response.headers;
    if (response.body) {
      reader.reader = response.body.getReader();
      void reader.pump();
    } else reader.done = true;
    cleanups.push(() => reader.close());
    return reader;
  }

  private async pump(): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await this.reader.read();
        if (done) break;
        const text = decoder.decode(value, { stream: true });
        this.raw += text;
        this.buffered += text;
        let end: number;
        while ((end = this.buffered.indexOf("\n\n")) >= 0) {
          const block = this.buffered.slice(0, end);
          this.buffered = this.buffered.slice(end + 2);
          const message: Message = {};
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) message.comment = line.slice(1).trim();
            else {
              const colon = line.indexOf(":");
              (message as Record<string, string>)[line.slice(0, colon)] = line.slice(colon + 1).trimStart();
            }
          }
          this.messages.push(message);
        }
      }
    } catch {
      // Aborted by the test.
    }
    this.done = true;
  }

  get events(): Message[] {
    return this.messages.filter((m) => m.id !== undefined);
  }

  close(): void {
    this.controller.abort();
  }
}


describe("GET /events/stream", () => {
  test("the head and a retry line at once, then each new event once it is committed, as GET /events renders it", async () => {
    const s = await server();
    const before = await post(s, { event: "installed" });
    const stream = await Reader.open(`${s.url}/events/stream`);
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toBe("text/event-stream");
    await until(() => stream.messages.length > 0, 2000, "the first line");
    expect(stream.messages[0]).toEqual({ retry: "2000" });
    // Without a starting point: only new events, not the one already there.
    const id = await post(s, { event: "warehouseTransaction", installation: { id: "inst-s", organization: { id: "org-s" } } });
    await until(() => stream.events.length === 1, 2000, "the new event");
    const [message] = stream.events;
    expect(message!.id).toBe(String(id));
    expect(message!.event).toBe("warehouseTransaction");
    const { deliveries: _, ...asListed } = await (await s.query(`/events/${id}`)).json();
    expect(JSON.parse(message!.data!)).toEqual(asListed);
    expect(stream.events.map((e) => Number(e.id))).not.toContain(before);
  });

  test("Last-Event-ID or ?after= resumes after that event, backlog first, in order, no gap, no repeat; ?after=0 from the beginning", async () => {
    const s = await server();
    const ids: number[] = [];
    for (let i = 0; i < 450; i++) ids.push(await post(s, { n: i }));
    const resumed = await Reader.open(`${s.url}/events/stream`, { "last-event-id": String(ids[99]) });
    const fromZero = await Reader.open(`${s.url}/events/stream?after=0`);
    for (let i = 0; i < 5; i++) ids.push(await post(s, { n: 1000 + i }));
    await until(() => resumed.events.length === ids.length - 100 && fromZero.events.length === ids.length, 5000, "the backlog and the new ones");
    expect(resumed.events.map((e) => Number(e.id))).toEqual(ids.slice(100));
    expect(fromZero.events.map((e) => Number(e.id))).toEqual(ids);
  });

  test("the filters of GET /events apply; an unparsed event has a fixed name; bad parameters are 400s; the token is required", async () => {
    const s = await server();
    const stream = await Reader.open(`${s.url}/events/stream?after=0&event=installed&organization=org-f`);
    const unparsed = await Reader.open(`${s.url}/events/stream?after=0&parsed=false`);
    const wanted = await post(s, { event: "installed", installation: { id: "i", organization: { id: "org-f" } } });
    await post(s, { event: "installed", installation: { id: "i", organization: { id: "org-other" } } });
    await post(s, { event: "suspended", installation: { id: "i", organization: { id: "org-f" } } });
    const { sign } = await import("../src/verify/signature.ts");
    const notJson = Buffer.from("not json").toString("base64");
    const u = await (await s.post(JSON.stringify({ signedData: notJson }), { "x-icr-signature-256": sign(FIXTURE_SECRET, notJson) })).json();
    await until(() => stream.events.length === 1 && unparsed.events.length === 1, 3000, "the filtered events");
    expect(stream.events.map((e) => Number(e.id))).toEqual([wanted]);
    expect(unparsed.events[0]).toMatchObject({ id: String(u.id), event: "unparsed" });
    expect(JSON.parse(unparsed.events[0]!.data!)).toMatchObject({ parsed: false, unparsedReason: "not_json" });
    for (const query of ["limit=5", "colour=red", "event=a&event=b", "since=yesterday"]) {
      const response = await fetch(`${s.url}/events/stream?${query}`, { headers: { authorization: `Bearer ${QUERY_TOKEN}` } });
      expect([query, response.status]).toEqual([query, 400]);
    }
    const bad = await fetch(`${s.url}/events/stream`, { headers: { authorization: `Bearer ${QUERY_TOKEN}`, "last-event-id": "x" } });
    expect(bad.status).toBe(400);
    expect((await fetch(`${s.url}/events/stream`)).status).toBe(401);
  });

  test("a comment line keeps an idle stream open", async () => {
    const s = await server({}, { streamHeartbeatMs: 100 });
    const stream = await Reader.open(`${s.url}/events/stream`);
    await until(() => stream.messages.filter((m) => m.comment === "keep-alive").length >= 3, 3000, "three heartbeats");
    expect(stream.done).toBe(false);
  });

  test("a reader that does not read is cut off once its buffer is full; ingest goes on", async () => {
    const s = await server({}, { streamBufferBytes: 64 * 1024 });
    // A raw socket that never reads what it is sent.
    const { connect } = await import("node:net");
    const socket = connect(Number(new URL(s.url).port), "127.0.0.1");
    cleanups.push(() => socket.destroy());
    socket.pause();
    // The end of the chunked response: the stream is over (the connection itself may stay open).
    let received = "";
    socket.on("data", (chunk) => (received = (received + chunk.toString("latin1")).slice(-16)));
    const ended = () => received.endsWith("0\r\n\r\n");
    // Live from the start: a backlog is read only as the client reads, so it is live events that pile up.
    socket.write(`GET /events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${QUERY_TOKEN}\r\n\r\n`);
    await Bun.sleep(100);
    // Enough to fill the kernel's socket buffers and then the stream's 64 KiB.
    const statuses: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const d = signedDelivery({ padding: "x".repeat(3000), n: i });
      statuses.push((await fetch(`${s.url}/webhook`, { method: "POST", headers: d.headers, body: d.body })).status);
    }
    expect(statuses.every((status) => status === 202)).toBe(true);
    // Closed while the reader was stalled, not held open with the backlog queued behind it.
    expect(await (await s.query("/metrics")).text()).toContain("icr_receiver_streams_open 0");
    socket.resume();
    await until(ended, 10_000, "the end of the stream");
  }, 60_000);

  test("the number of open streams is capped (503 with Retry-After) and counted", async () => {
    const s = await server({ streamLimit: 2 });
    const a = await Reader.open(`${s.url}/events/stream`);
    await Reader.open(`${s.url}/events/stream`);
    const third = await fetch(`${s.url}/events/stream`, { headers: { authorization: `Bearer ${QUERY_TOKEN}` } });
    expect(third.status).toBe(503);
    expect(third.headers.get("retry-after")).toBe("5");
    expect((await third.json()).error).toBe("too_many_streams");
    expect(await (await s.query("/metrics")).text()).toContain("icr_receiver_streams_open 2");
    a.close();
    await Bun.sleep(100);
    const again = await Reader.open(`${s.url}/events/stream`);
    expect(again.status).toBe(200);
  });

  test("200 streams at once each get every event", async () => {
    const s = await server({ streamLimit: 300 });
    const streams = await Promise.all(Array.from({ length: 200 }, () => Reader.open(`${s.url}/events/stream`)));
    await until(() => streams.every((r) => r.messages.length > 0), 5000, "200 heads");
    const ids: number[] = [];
    for (let i = 0; i < 20; i++) ids.push(await post(s, { n: i }));
    await until(() => streams.every((r) => r.events.length === 20), 10_000, "20 events on each stream");
    for (const r of streams) expect(r.events.map((e) => Number(e.id))).toEqual(ids);
  }, 30_000);

  test("the eventsource npm client, with the token through a custom fetch", async () => {
    const s = await server();
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) ids.push(await post(s, { n: i }));
    const source = new EventSource(`${s.url}/events/stream?after=0`, {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, authorization: `Bearer ${QUERY_TOKEN}` } }),
    });
    cleanups.push(() => source.close());
    const got: { id: string; type: string; data: unknown }[] = [];
    for (const type of ["warehouseTransaction"]) source.addEventListener(type, (e) => got.push({ id: e.lastEventId, type: e.type, data: JSON.parse(e.data) }));
    await until(() => got.length === 3, 5000, "three events through eventsource");
    expect(got.map((g) => Number(g.id))).toEqual(ids);
    expect(got[0]!.data).toMatchObject({ id: ids[0], event: "warehouseTransaction" });
  });
});

describe("a stream from a receiver process", () => {
  test("SIGTERM ends the stream cleanly; after a restart the client resumes at Last-Event-ID with no gap and no repeat", async () => {
    const dataDir = tempDir("icr-stream-");
    const env = { ICR_RECEIVER_DATA_DIR: dataDir, ICR_RECEIVER_SECRET: FIXTURE_SECRET, ICR_RECEIVER_QUERY_TOKEN: QUERY_TOKEN };
    const start = () => spawnReceiver(["bun", join(REPO, "src", "main.ts")], { env });
    const first = await start();
    cleanups.push(() => first.proc.kill("SIGKILL"));
    const stream = await Reader.open(`${first.url}/events/stream?after=0`);
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push(await post(first, { n: i }));
    await until(() => stream.events.length === 5, 3000, "five events");
    expect(await first.stop()).toBe(0);
    await until(() => stream.done, 3000, "the stream to end");
    const lastSeen = stream.events.at(-1)!.id!;
    const second = await start();
    cleanups.push(() => second.proc.kill("SIGKILL"));
    for (let i = 0; i < 5; i++) ids.push(await post(second, { n: 10 + i }));
    const resumed = await Reader.open(`${second.url}/events/stream`, { "last-event-id": lastSeen });
    await until(() => resumed.events.length === 5, 3000, "the five after");
    expect([...stream.events, ...resumed.events].map((e) => Number(e.id))).toEqual(ids);
    expect(await second.stop()).toBe(0);
  }, 30_000);
});
