// The webhook against a real listening server and a real SQLite file.
import { afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { connect } from "node:net";
import { brotliCompressSync } from "node:zlib";
import { canonicalBody } from "../src/verify/delivery.ts";
import { signDelivery } from "../src/verify/sign-delivery.ts";
import { FIXTURE_SECRET, fixture, loadFixtures } from "./support/fixtures.ts";
import { signedDelivery, startServer, type TestServer } from "./support/server.ts";

let server: TestServer;
afterEach(async () => server && (await server.stop()));

const count = (table: "events" | "deliveries") =>
  server.database.sqlite.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${table}`).get()!.n;

async function expectError(response: Response, status: number, reason: string) {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toContain("application/json");
  const body = await response.json();
  expect(body.error).toBe(reason);
  expect(typeof body.message).toBe("string");
}

describe("every fixture, the repository's own and ../shared's where present", () => {
  for (const f of loadFixtures()) {
    const stored = f.expect.stored ? `stored${f.expect.parsed === false ? " unparsed" : ` as ${f.expect.event}`}` : "nothing stored";
    test(`${f.name}: ${f.expect.status}, ${stored}`, async () => {
      server = await startServer({ secrets: [{ label: "default", secret: f.secret }] });
      const response = await server.post(f.body, f.headers);
      expect(response.status).toBe(f.expect.status);
      const events = server.database.sqlite
        .query<{ event: string | null; unparsed_reason: string | null }, []>("SELECT event, unparsed_reason FROM events")
        .all();
      expect(events.length).toBe(f.expect.stored ? 1 : 0);
      expect(count("deliveries")).toBe(f.expect.stored ? 1 : 0);
      if (f.expect.event !== undefined) expect(events[0]!.event).toBe(f.expect.event);
      if (f.expect.stored) expect(events[0]!.unparsed_reason === null).toBe(f.expect.parsed ?? true);
      if (f.expect.unparsedReason !== undefined) expect(events[0]!.unparsed_reason).toBe(f.expect.unparsedReason);
      const body = await response.json();
      if (response.status === 202) {
        expect(body).toEqual({ id: 1, duplicate: false });
        // Visible through the API as it is in the table, and its body kept verbatim.
        const event = await server.query("/events/1");
        const view = await event.json();
        expect(view.parsed).toBe(f.expect.parsed ?? true);
        expect(view.deliveries[0].rawBody).toBe(f.body);
      } else expect(Object.keys(body).sort()).toEqual(["error", "message"]);
    });
  }
});

describe("answers, in the specified order", () => {
  test("413 before anything else, with Content-Length and chunked, nothing stored", async () => {
    server = await startServer({ bodyLimit: 1000 });
    const big = signedDelivery({ padding: "x".repeat(2000) });
    await expectError(await server.post(big.body, { "x-icr-signature-256": "bogus" }), 413, "body_too_large");
    const chunked = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode(big.body.slice(i * 300, (i + 1) * 300)));
        controller.close();
      },
    });
    await expectError(await server.post(chunked as unknown as Uint8Array, big.headers), 413, "body_too_large");
    const small = signedDelivery();
    expect(small.body.length).toBeLessThan(1000);
    expect((await server.post(small.body, small.headers)).status).toBe(202);
    expect(count("deliveries")).toBe(1);
  });

  test("400 for a non-object body even when unsigned; 403 only once the body is a delivery", async () => {
    server = await startServer();
    await expectError(await server.post("[1,2,3]"), 400, "invalid_body");
    await expectError(await server.post(new Uint8Array([0x7b, 0xff, 0x7d])), 400, "invalid_body");
    await expectError(await server.post('{"event":"installed"}'), 400, "missing_signed_data");
    await expectError(await server.post('{"signedData":"e30="}'), 403, "missing_signature");
    await expectError(await server.post('{"signedData":"e30="}', { "x-icr-signature-256": "sha256=00" }), 403, "invalid_signature");
    expect(count("events") + count("deliveries")).toBe(0);
    // Signed, but not an event (`{}` has no string event): stored unparsed, never refused.
    const empty = signDelivery("{}", FIXTURE_SECRET);
    expect(empty.body).toBe('{"signedData":"e30="}');
    const unparsed = await server.post(empty.body, empty.headers);
    expect(unparsed.status).toBe(202);
    expect([count("events"), count("deliveries")]).toEqual([1, 1]);
  });

  test("compressed bodies: gzip, deflate and br are verified and stored decompressed; other encodings 415", async () => {
    server = await startServer();
    const encodings = { gzip: Bun.gzipSync, deflate: Bun.deflateSync, br: (b: Uint8Array) => new Uint8Array(brotliCompressSync(b)) };
    for (const [encoding, compress] of Object.entries(encodings)) {
      const d = signedDelivery({ encoding });
      const response = await server.post(compress(new TextEncoder().encode(d.body)), { ...d.headers, "content-encoding": encoding });
      expect([encoding, response.status]).toEqual([encoding, 202]);
      const { id } = await response.json();
      const view = await (await server.query(`/events/${id}`)).json();
      expect(view.deliveries[0].rawBody).toBe(d.body);
      // The encoding it arrived in stays on record with the request's headers.
      expect(view.deliveries[0].headers["content-encoding"]).toBe(encoding);
      // Forged and compressed: refused like any forgery.
      const forged = signedDelivery({ encoding }, { secret: "not the secret" });
      await expectError(await server.post(compress(new TextEncoder().encode(forged.body)), { ...forged.headers, "content-encoding": encoding }), 403, "invalid_signature");
    }
    const d = signedDelivery();
    await expectError(await server.post(d.body, { ...d.headers, "content-encoding": "compress" }), 415, "unsupported_encoding");
    expect([count("events"), count("deliveries")]).toEqual([3, 3]);
  });

  test("503 when the log cannot be written, and nothing acknowledged", async () => {
    server = await startServer({}, { busyTimeoutMs: 200 });
    const blocker = new Database(server.config.databasePath);
    blocker.run("BEGIN IMMEDIATE");
    try {
      const d = signedDelivery();
      await expectError(await server.post(d.body, d.headers), 503, "log_unavailable");
    } finally {
      blocker.run("ROLLBACK");
      blocker.close();
    }
    expect(count("deliveries")).toBe(0);
    const d = signedDelivery();
    expect((await server.post(d.body, d.headers)).status).toBe(202);
  });

  test("404 elsewhere, 405 for other methods on the webhook path", async () => {
    server = await startServer();
    await expectError(await fetch(`${server.url}/nope`, { method: "POST" }), 404, "not_found");
    for (const method of ["GET", "PUT", "DELETE", "PATCH"]) {
      const response = await fetch(`${server.url}/webhook`, { method });
      await expectError(response, 405, "method_not_allowed");
      expect(response.headers.get("allow")).toBe("POST");
    }
  });

  test("a custom webhook path", async () => {
    server = await startServer({ webhookPath: "/hooks/icr" });
    const d = signedDelivery();
    expect((await fetch(`${server.url}/hooks/icr`, { method: "POST", body: d.body, headers: d.headers })).status).toBe(202);
    expect((await fetch(`${server.url}/webhook`, { method: "POST", body: d.body, headers: d.headers })).status).toBe(404);
  });
});

describe("what is stored", () => {
  test("the signed payload, the raw body, headers, address and the matched label", async () => {
    server = await startServer({
      secrets: [
        { label: "2026-new", secret: "brand new secret" },
        { label: "2025-old", secret: FIXTURE_SECRET },
      ],
    });
    const f = fixture("warehouse-transaction");
    const response = await server.post(f.body, { ...f.headers, "x-extra": "kept" });
    expect(await response.json()).toEqual({ id: 1, duplicate: false });
    const event = server.database.sqlite.query<Record<string, unknown>, []>("SELECT * FROM events").get()!;
    const signed = Buffer.from(JSON.parse(f.body).signedData, "base64").toString("utf8");
    expect(event).toMatchObject({
      event: "warehouseTransaction",
      installation_id: "123",
      organization_id: "org1",
      app_id: "1",
      transaction_id: "tx-7f3c",
      transaction_status: "processed",
      transaction_type: "transfer_retire",
      transaction_amount: 25,
      payload: signed,
      secret_label: "2025-old",
      envelope_mismatch: 0,
    });
    expect(event.received_at as string).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const delivery = server.database.sqlite.query<Record<string, unknown>, []>("SELECT * FROM deliveries").get()!;
    // ICR's canonical body is not kept twice: NULL, rebuilt byte for byte from the payload.
    expect(f.body).toBe(canonicalBody(signed)!);
    expect(delivery.raw_body).toBeNull();
    expect(delivery.remote_address).toBe("127.0.0.1");
    expect(delivery.secret_label).toBe("2025-old");
    expect(JSON.parse(delivery.headers as string)).toMatchObject({ "x-extra": "kept", "x-icr-signature-256": f.headers["x-icr-signature-256"] });
    expect(delivery.received_at).toBe(event.received_at);
  });

  test("a body in any other form than the canonical one is stored verbatim", async () => {
    server = await startServer();
    const d = signedDelivery({ event: "installed" });
    const variants = [
      JSON.stringify(JSON.parse(d.body), null, 2), // pretty-printed
      JSON.stringify({ signedData: d.signedData, ...d.payload }), // signedData first
      d.body.replace('"signedData":', '"signedData": '), // one space
    ];
    for (const body of variants) {
      expect(body).not.toBe(d.body);
      const response = await server.post(body, d.headers);
      expect(response.status).toBe(202);
    }
    const stored = server.database.sqlite.query<{ raw_body: string | null }, []>("SELECT raw_body FROM deliveries ORDER BY id").all();
    expect(stored.map((row) => row.raw_body)).toEqual(variants);
  });

  test("a tampered top-level copy is flagged and the signed event recorded", async () => {
    server = await startServer();
    const f = fixture("tampered-top-level");
    expect((await server.post(f.body, f.headers)).status).toBe(202);
    const row = server.database.sqlite.query<{ event: string; envelope_mismatch: number }, []>("SELECT event, envelope_mismatch FROM events").get()!;
    expect(row).toEqual({ event: "uninstalled", envelope_mismatch: 1 });
  });

  test("a repeat, in another base64 alphabet, is a duplicate of the same event and still recorded", async () => {
    server = await startServer();
    const d = signedDelivery({ sender: { fullName: "??>>~~ ÿÿ" } });
    const urlSafe = Buffer.from(d.payloadText).toString("base64url");
    expect(urlSafe).not.toBe(d.signedData);
    const first = await (await server.post(d.body, d.headers)).json();
    const again = await (await server.post(d.body, d.headers)).json();
    const tampered = signDelivery({ signedData: urlSafe }, FIXTURE_SECRET, { envelope: { ...d.payload, event: "tampered" } });
    const other = await (await server.post(tampered.body, tampered.headers)).json();
    expect(first).toEqual({ id: 1, duplicate: false });
    expect(again).toEqual({ id: 1, duplicate: true });
    expect(other).toEqual({ id: 1, duplicate: true });
    expect(count("events")).toBe(1);
    const rows = server.database.sqlite
      .query<{ duplicate: number; envelope_mismatch: number }, []>("SELECT duplicate, envelope_mismatch FROM deliveries ORDER BY id")
      .all();
    expect(rows).toEqual([
      { duplicate: 0, envelope_mismatch: 0 },
      { duplicate: 1, envelope_mismatch: 0 },
      { duplicate: 1, envelope_mismatch: 1 },
    ]);
  });

  test("concurrent deliveries share commits and each gets its own id", async () => {
    server = await startServer();
    const deliveries = Array.from({ length: 200 }, () => signedDelivery());
    const answers = await Promise.all(deliveries.map(async (d) => (await server.post(d.body, d.headers)).json()));
    const ids = answers.map((a) => a.id);
    expect(new Set(ids).size).toBe(200);
    expect(answers.every((a) => a.duplicate === false)).toBe(true);
    expect(count("events")).toBe(200);
    // Each id names the event whose payload was posted with it.
    for (const [i, d] of deliveries.entries()) {
      const row = server.database.sqlite.query<{ payload: string }, [number]>("SELECT payload FROM events WHERE id = ?").get(ids[i]);
      expect(row!.payload).toBe(d.payloadText);
    }
  });
});

test("a client that sends a body slowly still gets its answer", async () => {
  server = await startServer();
  const d = signedDelivery();
  const { port } = new URL(server.url);
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1");
    let received = "";
    socket.on("data", (chunk) => (received += chunk));
    socket.on("end", () => resolve(received));
    socket.on("error", reject);
    const head = `POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-icr-signature-256: ${d.headers["x-icr-signature-256"]}\r\nContent-Length: ${Buffer.byteLength(d.body)}\r\nConnection: close\r\n\r\n`;
    socket.write(head);
    const half = Math.floor(d.body.length / 2);
    socket.write(d.body.slice(0, half));
    setTimeout(() => socket.write(d.body.slice(half)), 100);
  });
  expect(answer).toStartWith("HTTP/1.1 202");
});
