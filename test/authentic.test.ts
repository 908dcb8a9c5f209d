// What the signature vouches for is never refused, and what a request carries as a credential is
// never kept: over a real listening server, its SQLite file read as bytes, and the CLI.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { signDelivery } from "../src/verify/sign-delivery.ts";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { REPO } from "./support/process.ts";
import { rawRequest, requestHead } from "./support/raw-http.ts";
import { QUERY_TOKEN, signedDelivery, startServer, type TestServer } from "./support/server.ts";
import { sqlite3 } from "./support/sqlite-shell.ts";

let server: TestServer;
beforeAll(async () => (server = await startServer()));
afterAll(() => server.stop());

const sha256 = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
const counts = () =>
  server.database.sqlite.query<{ events: number; deliveries: number }, []>(
    "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM deliveries) AS deliveries",
  ).get()!;
const eventRow = (id: number) =>
  server.database.sqlite
    .query<{ event: string | null; unparsed_reason: string | null; payload: string | null; payload_sha256: string }, [number]>(
      "SELECT event, unparsed_reason, payload, payload_sha256 FROM events WHERE id = ?",
    )
    .get(id)!;
const port = () => Number(new URL(server.url).port);

/** A body as ICR might frame signed data it got wrong: the bytes, base64-encoded, signed. */
function signedBytes(data: Uint8Array, envelope: Record<string, unknown> = {}) {
  return signDelivery(data, FIXTURE_SECRET, { envelope });
}

describe("any signed data is stored", () => {
  test("any bytes as the signed data, signed with the configured secret: 202, and the log holds those bytes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), async (data) => {
        const d = signedBytes(data);
        const before = counts();
        const response = await server.post(d.body, d.headers);
        expect(response.status).toBe(202);
        const { id, duplicate } = await response.json();
        expect(counts()).toEqual({ events: before.events + (duplicate ? 0 : 1), deliveries: before.deliveries + 1 });
        const row = eventRow(id);
        // The event is identified by exactly those bytes, and they are readable back through the API.
        expect(row.payload_sha256).toBe(sha256(data));
        const view = await (await server.query(`/events/${id}`)).json();
        expect(view.deliveries.at(-1).rawBody).toBe(d.body);
        const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
        let decoded: string | null = null;
        try {
          decoded = text.decode(data);
        } catch {}
        expect(row.payload).toBe(decoded);
        if (row.event === null) expect(view).toMatchObject({ parsed: false, event: null, unparsedReason: row.unparsed_reason, payload: null, payloadText: decoded });
      }),
      { numRuns: 120 },
    );
  }, 60_000);

  test("any string as signedData, base64 or not, signed: 202 and stored; a repeat is a duplicate", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200, unit: "binary" }), async (signedData) => {
        const { body, headers } = signDelivery({ signedData }, FIXTURE_SECRET);
        const first = await server.post(body, headers);
        expect(first.status).toBe(202);
        // It may repeat an earlier one: "\t" and "" carry the same (empty) bytes.
        const { id } = await first.json();
        const again = await server.post(body, headers);
        expect(await again.json()).toEqual({ id, duplicate: true });
        const view = await (await server.query(`/events/${id}`)).json();
        expect(view.deliveries.filter((d: { rawBody: string }) => d.rawBody === body).length).toBeGreaterThanOrEqual(2);
      }),
      { numRuns: 80 },
    );
  }, 60_000);

  test("any request whose signature does not verify: nothing is stored", async () => {
    const before = counts();
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        fc.oneof(fc.constant(null), fc.string({ maxLength: 80 }), fc.constant("not the secret")),
        async (data, secretOrSignature) => {
          const forged = signDelivery(data, "not the secret", { envelope: {} });
          const signature = secretOrSignature === "not the secret" ? forged.signature : secretOrSignature;
          const headers: Record<string, string> = signature === null ? {} : { "x-icr-signature-256": signature };
          const response = await server.post(forged.body, headers);
          // A random string can be a valid signature only by finding an HMAC: it is not.
          expect(response.status).toBe(403);
        },
      ),
      { numRuns: 150 },
    );
    expect(counts()).toEqual(before);
  }, 60_000);

  test.each([
    ["not_base64", { signedData: "%%% not base64 %%%" }, null],
    ["not_utf8", new Uint8Array([0xff, 0xfe, 0x00, 0x80]), null],
    ["not_json", "this is not json", "this is not json"],
    ["not_an_object", "[1,2,3]", "[1,2,3]"],
    ["no_event", '{"installation":{"id":"inst-u","organization":{"id":"org-u"}}}', '{"installation":{"id":"inst-u","organization":{"id":"org-u"}}}'],
  ] as const)("%s: stored unparsed, visible in GET /events (parsed=false) and GET /events/:id", async (reason, signed, text) => {
    const { body, headers } = signDelivery(signed, FIXTURE_SECRET, { envelope: { event: "installed" } });
    const response = await server.post(body, headers);
    expect(response.status).toBe(202);
    const { id } = await response.json();
    expect(eventRow(id)).toMatchObject({ event: null, unparsed_reason: reason, payload: text });
    const view = await (await server.query(`/events/${id}`)).json();
    expect(view).toMatchObject({ id, event: null, parsed: false, unparsedReason: reason, payloadText: text, payload: null, envelopeMismatch: true });
    expect(view.deliveries[0].rawBody).toBe(body);
    const unparsed = await (await server.query("/events?parsed=false&limit=1000")).json();
    expect(unparsed.events.map((e: { id: number }) => e.id)).toContain(id);
    expect(unparsed.events.every((e: { parsed: boolean; event: null }) => e.parsed === false && e.event === null)).toBe(true);
    const parsed = await (await server.query("/events?parsed=true&limit=1000")).json();
    expect(parsed.events.map((e: { id: number }) => e.id)).not.toContain(id);
  });

  test("an object without event keeps its installation's keys for the filters", async () => {
    const d = signedBytes(Buffer.from('{"installation":{"id":"inst-keys","organization":{"id":"org-keys"}},"n":1}'));
    const { id } = await (await server.post(d.body, d.headers)).json();
    const byOrg = await (await server.query("/events?organization=org-keys&parsed=false")).json();
    expect(byOrg.events.map((e: { id: number }) => e.id)).toEqual([id]);
    expect((await (await server.query("/events?organization=org-keys&parsed=true")).json()).events).toEqual([]);
  });

  test("lenient where the signature vouches: a BOM, base64 with line breaks, any content type", async () => {
    const d = signedDelivery({ event: "installed", lenient: "bom" });
    const bom = await server.post(`\uFEFF${d.body}`, { ...d.headers, "content-type": "application/json; charset=utf-8" });
    expect(bom.status).toBe(202);
    const { id } = await bom.json();
    expect(eventRow(id)).toMatchObject({ event: "installed", unparsed_reason: null });
    expect((await (await server.query(`/events/${id}`)).json()).deliveries[0].rawBody).toBe(`\uFEFF${d.body}`);

    const payload = JSON.stringify({ event: "suspended", padding: "x".repeat(300) });
    const mime = signDelivery(payload, FIXTURE_SECRET).signedData.replace(/.{76}/g, "$&\r\n");
    const signedMime = signDelivery({ signedData: mime }, FIXTURE_SECRET);
    const wrapped = await server.post(signedMime.body, { ...signedMime.headers, "content-type": "text/plain" });
    expect(wrapped.status).toBe(202);
    expect(eventRow((await wrapped.json()).id)).toMatchObject({ event: "suspended", payload });

    const other = signedDelivery({ event: "unsuspended" });
    for (const contentType of ["application/octet-stream", "text/plain; charset=iso-8859-1", "application/x-www-form-urlencoded"]) {
      expect((await server.post(other.body, { ...other.headers, "content-type": contentType })).status).toBe(202);
    }
  });
});

describe("compressed bodies", () => {
  const MiB = 1024 * 1024;
  const zeros = Buffer.alloc(64 * MiB);
  const bombs = {
    gzip: gzipSync(zeros),
    deflate: deflateSync(zeros),
    br: brotliCompressSync(zeros),
  };

  test.each(Object.keys(bombs))("a %s bomb (64 MiB of zeros) is refused 413, nothing stored, the receiver fine", async (encoding) => {
    const bomb = bombs[encoding as keyof typeof bombs];
    expect(bomb.length).toBeLessThan(MiB);
    const before = counts();
    const whole = Buffer.concat([Buffer.from(requestHead("POST", "/webhook", { "content-encoding": encoding, "content-length": String(bomb.length) }), "latin1"), bomb]);
    const refused = await rawRequest(port(), whole);
    expect(refused.status).toBe(413);
    expect(JSON.parse(refused.body).error).toBe("body_too_large");
    expect(counts()).toEqual(before);
    const d = signedDelivery();
    expect((await server.post(d.body, d.headers)).status).toBe(202);
  });

  test("an authentic compressed delivery at the limit once decompressed is stored; one byte over, 413", async () => {
    const limit = 4096;
    const limited = await startServer({ bodyLimit: limit });
    try {
      // The largest and the smallest padded delivery on either side of the limit.
      const transaction = { id: "tx-limit", status: "processed", type: "retire", amount: 1 };
      let under = signedDelivery({ padding: "", transaction });
      let over = under;
      for (let pad = 1; Buffer.byteLength(over.body) <= limit; pad++) {
        under = over;
        over = signedDelivery({ padding: "p".repeat(pad), transaction });
      }
      expect(Buffer.byteLength(under.body)).toBeLessThanOrEqual(limit);
      expect(Buffer.byteLength(over.body)).toBeGreaterThan(limit);
      const refused = await limited.post(gzipSync(over.body), { ...over.headers, "content-encoding": "gzip" });
      expect(refused.status).toBe(413);
      const ok = await limited.post(gzipSync(under.body), { ...under.headers, "content-encoding": "gzip" });
      expect(ok.status).toBe(202);
    } finally {
      await limited.stop();
    }
  });
});

describe("credentials are never stored", () => {
  test("a delivery sent with the query token in Authorization and a cookie: neither is anywhere in the database file", async () => {
    const own = await startServer();
    const cookie = "session=cookie-value-4b1d0c2e";
    const proxyCredential = "Basic cHJveHk6c2VjcmV0LXByb3h5";
    try {
      const d = signedDelivery({ event: "installed" });
      const response = await own.post(d.body, {
        ...d.headers,
        authorization: `Bearer ${QUERY_TOKEN}`,
        "proxy-authorization": proxyCredential,
        cookie,
        "x-forwarded-token": QUERY_TOKEN,
        "x-request-id": "kept-request-id",
      });
      expect(response.status).toBe(202);
      const { id } = await response.json();
      const view = await (await own.query(`/events/${id}`)).json();
      const headers = view.deliveries[0].headers;
      expect(headers).toMatchObject({ authorization: "[redacted]", "proxy-authorization": "[redacted]", cookie: "[redacted]", "x-forwarded-token": "[redacted]" });
      // What helps trace a delivery stays.
      expect(headers["x-request-id"]).toBe("kept-request-id");
      expect(headers["x-icr-signature-256"]).toBe(d.headers["x-icr-signature-256"]);
      // Read the files themselves, the WAL included, not only what the API shows.
      const path = own.config.databasePath;
      const bytes = Buffer.concat([readFileSync(path), ...(Bun.file(`${path}-wal`).size > 0 ? [readFileSync(`${path}-wal`)] : [])]);
      expect(bytes.length).toBeGreaterThan(0);
      for (const secret of [QUERY_TOKEN, "cookie-value-4b1d0c2e", "cHJveHk6c2VjcmV0LXByb3h5"]) expect(bytes.includes(secret)).toBe(false);
      expect(bytes.includes("kept-request-id")).toBe(true);
    } finally {
      await own.stop();
    }
  });

  test("rows stored before 0.4.0 with credentials: redacted when served, reported by check", async () => {
    const own = await startServer();
    try {
      const d = signedDelivery({ event: "installed" });
      const { id } = await (await own.post(d.body, d.headers)).json();
      // As 0.3.0 stored them: a second delivery whose headers carry a credential verbatim.
      sqlite3(
        own.config.databasePath,
        `INSERT INTO deliveries (id, event_id, received_at, remote_address, headers, raw_body, secret_label, envelope_mismatch, duplicate, chain_hash)
         VALUES (2, ${id}, '2026-01-01T00:00:00.000Z', '127.0.0.1', '{"authorization":"Bearer old-token","cookie":"a=b"}', NULL, 'default', 0, 1, '')`,
      );
      const view = await (await own.query(`/events/${id}`)).json();
      expect(view.deliveries[1].headers).toEqual({ authorization: "[redacted]", cookie: "[redacted]" });
      const check = Bun.spawnSync([process.execPath, join(REPO, "src", "main.ts"), "check", "--json", "--db", own.config.databasePath]);
      const report = JSON.parse(check.stdout.toString());
      const credentials = report.checks.find((c: { name: string }) => c.name === "credentials");
      expect(credentials).toMatchObject({ ok: true, data: { deliveriesWithCredentials: 1 } });
      expect(credentials.summary).toContain("delivery 2");
    } finally {
      await own.stop();
    }
  });
});
