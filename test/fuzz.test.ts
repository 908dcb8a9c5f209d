// Hostile input, generated: whatever arrives, the receiver answers 4xx with a JSON reason (or 202
// for a genuinely signed delivery), never 5xx, never crashes, never stores what it refused, and
// never lets a key such as __proto__ reach Object.prototype. The pure verification runs the high
// volumes; a real listening server gets fewer, end-to-end runs of the same generators.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { eventFacts } from "../src/log/row.ts";
import { canonicalBody, parseEnvelope } from "../src/verify/delivery.ts";
import { signDelivery } from "../src/verify/sign-delivery.ts";
import { verifyDelivery } from "../src/verify/verify-delivery.ts";
import { FIXTURE_SECRET } from "./support/fixtures.ts";
import { rawRequest, requestHead, type RawResponse } from "./support/raw-http.ts";
import { signedDelivery, startServer, type TestServer } from "./support/server.ts";

const SECRETS = [{ label: "default", secret: FIXTURE_SECRET }];
const STATUS_OF: Record<string, number> = {
  invalid_body: 400,
  missing_signed_data: 400,
  missing_signature: 403,
  invalid_signature: 403,
};
const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

// ---------------------------------------------------------------------------------------------
// Generators

/** Keys that pollute prototypes when code assigns instead of defining. */
const DANGEROUS_KEYS = ["__proto__", "constructor", "prototype", "toString", "valueOf", "hasOwnProperty", "__defineGetter__", "isPrototypeOf"];
const key = fc.oneof(fc.constantFrom(...DANGEROUS_KEYS, "event", "signedData", "installation", "transaction", "amount", "id"), fc.string({ maxLength: 6 }));

/** Number literals JSON allows and JavaScript cannot hold: they must be stored as sent. */
const HUGE_NUMBERS = ["1e400", "-1e400", "1e-400", "-0", "123456789012345678901234567890123456789", "9007199254740993", "1.7976931348623157e309", "0.0000000000000000000000000000001"];
const numberLiteral = fc.oneof(
  fc.constantFrom(...HUGE_NUMBERS),
  fc.bigInt({ min: -(10n ** 60n), max: 10n ** 60n }).map(String),
  fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: -500, max: 500 })).map(([m, e]) => `${m}e${e}`),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
);

/**
 * JSON *text*, so that what the generator means is what goes on the wire: repeated keys,
 * __proto__ keys (an object literal would set the prototype instead) and numbers beyond a double.
 */
const { value: jsonText } = fc.letrec<{ value: string; scalar: string; object: string; array: string }>((tie) => ({
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, tie("scalar"), tie("object"), tie("array")),
  scalar: fc.oneof(fc.constantFrom("null", "true", "false", '{"polluted":"yes"}'), numberLiteral, fc.string({ maxLength: 12, unit: "binary" }).map((s) => JSON.stringify(s))),
  object: fc
    .array(fc.tuple(key, tie("value")), { maxLength: 5 })
    .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`),
  array: fc.array(tie("value"), { maxLength: 4 }).map((items) => `[${items.join(",")}]`),
}));

/** A payload's JSON text: an event name first, then anything (which may repeat "event"). */
const payloadText = fc
  .tuple(fc.oneof(fc.constantFrom("installed", "warehouseTransaction", "__proto__", "constructor"), fc.string({ maxLength: 10 })), fc.array(fc.tuple(key, jsonText), { maxLength: 6 }))
  .map(([event, rest]) => `{"event":${JSON.stringify(event)}${rest.map(([k, v]) => `,${JSON.stringify(k)}:${v}`).join("")}}`);

/** How the payload travels: ICR's own form, a bare envelope, or with hostile unsigned copies. */
const envelopeStyle = fc.constantFrom("canonical", "bare", "hostile-copy", "reordered");

function deliveryOf(text: string, style: string) {
  const signed = signDelivery(text, FIXTURE_SECRET, style === "bare" ? { envelope: {} } : {});
  const { signedData, signature } = signed;
  // The hostile and reordered envelopes are written by hand: JSON.stringify would not produce them.
  const body =
    style === "canonical" || style === "bare"
      ? signed.body
      : style === "hostile-copy"
        ? `{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"event":"forged","signedData":"${signedData}"}`
        : `{"signedData":"${signedData}",${text.slice(1)}`;
  return { text, signedData, body, signature };
}

/** What JSON.parse, the receiver's only JSON reader, makes of a payload: the model's oracle. */
function parsedEvent(text: string): unknown {
  return (JSON.parse(text) as { event?: unknown }).event;
}

/**
 * The answer the specification implies, with JSON.parse as the oracle for repeated keys: the
 * envelope's (last) signedData must be the signed one; then it is accepted, parsed exactly when
 * the payload's (last) event is a string.
 */
function expectedOutcome(d: ReturnType<typeof deliveryOf>): "parsed" | "unparsed" | "missing_signed_data" | "invalid_signature" {
  const envelope = JSON.parse(d.body) as { signedData?: unknown };
  if (typeof envelope.signedData !== "string") return "missing_signed_data";
  if (envelope.signedData !== d.signedData) return "invalid_signature";
  return typeof parsedEvent(d.text) === "string" ? "parsed" : "unparsed";
}

const INVALID_UTF8 = [[0xff], [0xfe], [0x80], [0xc0, 0x80], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]];

function splice(body: Uint8Array, at: number, insert: number[]): Uint8Array {
  return Uint8Array.from([...body.subarray(0, at), ...insert, ...body.subarray(at)]);
}

const HEX = [..."0123456789abcdef"];
const NON_HEX = [..."ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ-_+/=.:;,!~*'\"()[]{}<>@#$%^&|`?"];
const PREFIXES = ["", "sha1=", "sha512=", "SHA256=", "Sha256=", "sha-256=", "sha256:", "sha256==", "hmac-sha256=", "sha256", "=", "v1=", "sha256=sha256="];

/** Ways to spoil a valid `sha256=<hex>`, all in printable ASCII (what fetch can send). */
const spoil: fc.Arbitrary<[string, (signature: string) => string]> = fc.oneof(
  fc.constantFrom(...PREFIXES).map((p): [string, (s: string) => string] => [`prefix "${p}"`, (s) => p + s.slice(7)]),
  fc.tuple(fc.nat(63), fc.constantFrom(...NON_HEX)).map(([i, c]): [string, (s: string) => string] => [`non-hex ${c} at ${i}`, (s) => s.slice(0, 7 + i) + c + s.slice(8 + i)]),
  fc.nat(63).map((i): [string, (s: string) => string] => [
    `digit ${i} changed`,
    (s) => s.slice(0, 7 + i) + HEX[(HEX.indexOf(s[7 + i]!.toLowerCase()) + 1) % 16] + s.slice(8 + i),
  ]),
  fc.integer({ min: 0, max: 140 })
    .filter((n) => n !== 64)
    .chain((n) => fc.string({ unit: fc.constantFrom(...HEX), minLength: n, maxLength: n }))
    .map((hex): [string, (s: string) => string] => [`${hex.length} hex digits`, () => `sha256=${hex}`]),
  fc.integer({ min: 1, max: 70 }).map((n): [string, (s: string) => string] => [`${n} characters cut`, (s) => s.slice(0, s.length - n)]),
  fc.string({ unit: fc.constantFrom(...HEX), minLength: 1, maxLength: 8 }).map((x): [string, (s: string) => string] => [`"${x}" appended`, (s) => s + x]),
  fc.tuple(fc.integer({ min: 1, max: 70 }), fc.constantFrom(" ", "\t", "  ", " \t ")).map(([i, w]): [string, (s: string) => string] => [`whitespace at ${i}`, (s) => s.slice(0, i) + w + s.slice(i)]),
);

// ---------------------------------------------------------------------------------------------
// Checks

const PROTOTYPES: [string, object][] = [
  ["Object", Object.prototype],
  ["Array", Array.prototype],
  ["Function", Function.prototype],
  ["String", String.prototype],
];
const prototypeSnapshot = () =>
  PROTOTYPES.map(([name, proto]) => [name, Object.getOwnPropertyNames(proto).sort(), Object.getOwnPropertyNames(proto).map((p) => Object.getOwnPropertyDescriptor(proto, p)?.value)]);
const PRISTINE = prototypeSnapshot();

function expectNoPollution() {
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(([] as unknown as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.getPrototypeOf({})).toBe(Object.prototype);
  const now = prototypeSnapshot();
  for (const [i, [name, names, values]] of now.entries()) {
    expect([name, names]).toEqual([PRISTINE[i]![0], PRISTINE[i]![1]]);
    // Same functions, not just same names.
    (values as unknown[]).forEach((value, j) => expect(value).toBe((PRISTINE[i]![2] as unknown[])[j]));
  }
}

/** A refusal as specified: the status, a JSON body of exactly {error, message}, the reason. */
async function expectRefusal(response: Response | RawResponse, status: number, reason?: string) {
  expect(response.status).toBe(status);
  const headers = response instanceof Response ? response.headers.get("content-type") : response.headers["content-type"];
  expect(headers).toContain("application/json");
  const body = response instanceof Response ? await response.json() : JSON.parse(response.body);
  expect(Object.keys(body).sort()).toEqual(["error", "message"]);
  expect(STATUS_OF[body.error] ?? status).toBe(status);
  if (reason !== undefined) expect(body.error).toBe(reason);
  expect(typeof body.message).toBe("string");
  expect(body.message.length).toBeGreaterThan(0);
}

function rowCounts(server: TestServer) {
  const count = (table: string) => server.database.sqlite.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${table}`).get()!.n;
  return { events: count("events"), deliveries: count("deliveries") };
}

/** Still alive and still correct: /healthz answers and a fresh valid delivery is stored. */
async function expectHealthy(server: TestServer) {
  const health = await fetch(`${server.url}/healthz`);
  expect(health.status).toBe(200);
  const d = signedDelivery();
  const response = await server.post(d.body, d.headers);
  expect(response.status).toBe(202);
  const { id } = await response.json();
  const row = server.database.sqlite.query<{ payload: string }, [number]>("SELECT payload FROM events WHERE id = ?").get(id);
  expect(row?.payload).toBe(d.payloadText);
  expectNoPollution();
}

const port = (server: TestServer) => Number(new URL(server.url).port);

// ---------------------------------------------------------------------------------------------
// The pure functions, at volume

describe("verification alone, at volume", () => {
  test("any bytes with any signature: a rejection with a known reason, never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.option(fc.string({ maxLength: 90, unit: "binary" }), { nil: null }), (body, signature) => {
        const result = verifyDelivery(body, signature, SECRETS);
        expect(result.ok).toBe(false);
        if (!result.ok) expect(STATUS_OF[result.reason]).toBeDefined();
      }),
      { numRuns: 2000 },
    );
    expectNoPollution();
  });

  test("any JSON text as the body: refused for the reason its shape implies", () => {
    fc.assert(
      fc.property(jsonText, fc.option(fc.string({ maxLength: 80 }), { nil: null }), (text, signature) => {
        const value = JSON.parse(text) as unknown;
        const isObject = typeof value === "object" && value !== null && !Array.isArray(value);
        const expected = !isObject
          ? "invalid_body"
          : typeof (value as Record<string, unknown>).signedData !== "string"
            ? "missing_signed_data"
            : !signature
              ? "missing_signature"
              : "invalid_signature";
        const envelope = parseEnvelope(bytes(text));
        expect(envelope.ok ? "ok" : envelope.reason).toBe(expected === "invalid_body" || expected === "missing_signed_data" ? expected : "ok");
        const result = verifyDelivery(bytes(text), signature, SECRETS);
        expect(result.ok ? "ok" : result.reason).toBe(expected);
      }),
      { numRuns: 1500 },
    );
    expectNoPollution();
  });

  test("any signed payload text (repeated keys, __proto__, huge numbers): accepted, parsed exactly when JSON.parse finds a string event", () => {
    fc.assert(
      fc.property(payloadText, envelopeStyle, (text, style) => {
        const d = deliveryOf(text, style);
        const result = verifyDelivery(bytes(d.body), d.signature, SECRETS);
        const expected = expectedOutcome(d);
        expect(result.ok ? (result.payload.parsed ? "parsed" : "unparsed") : result.reason).toBe(expected);
        if (!result.ok) return;
        expect(result.payload.text).toBe(text);
        expect(result.rawBody).toBe(d.body);
        const event = parsedEvent(text);
        expect(eventFacts(result.payload).event).toBe(typeof event === "string" ? event : null);
        // The unsigned copy is flagged whenever it says anything the payload does not.
        if (style === "hostile-copy") expect(result.envelopeMismatch).toBe(true);
      }),
      { numRuns: 1500 },
    );
    expectNoPollution();
  });

  test("a valid signature, spoiled in any way, is refused; a digest in another case is not", () => {
    const d = signedDelivery();
    const digest = d.headers["x-icr-signature-256"].slice(7);
    const anyChange = fc.oneof(
      spoil.map(([, f]) => f(d.headers["x-icr-signature-256"])),
      // Anything at all, including non-ASCII and lone surrogates.
      fc.string({ maxLength: 80, unit: "binary" }),
      fc.tuple(fc.nat(70), fc.string({ minLength: 1, maxLength: 3, unit: "binary" })).map(([i, s]) => d.headers["x-icr-signature-256"].slice(0, i) + s + d.headers["x-icr-signature-256"].slice(i)),
      fc.mixedCase(fc.constant(digest)).map((hex) => `sha256=${hex}`),
    );
    fc.assert(
      fc.property(anyChange, (signature) => {
        const shouldPass = signature.startsWith("sha256=") && signature.length === 71 && signature.slice(7).toLowerCase() === digest;
        const result = verifyDelivery(bytes(d.body), signature, SECRETS);
        expect(result.ok).toBe(shouldPass);
        if (!result.ok) expect(result.reason).toBe(signature === "" ? "missing_signature" : "invalid_signature");
      }),
      { numRuns: 2000 },
    );
  });

  test("a valid delivery cut short anywhere is invalid_body", () => {
    const d = signedDelivery({ sender: { fullName: "Zoë ✓" } });
    const body = bytes(d.body);
    fc.assert(
      fc.property(fc.nat(body.length - 1), (cut) => {
        const result = verifyDelivery(body.subarray(0, cut), d.headers["x-icr-signature-256"], SECRETS);
        expect(result.ok ? "ok" : result.reason).toBe("invalid_body");
      }),
      { numRuns: 1000 },
    );
  });

  test("invalid UTF-8 anywhere: invalid_body in the body, an unparsed (not_utf8) event inside a signed payload", () => {
    const d = signedDelivery();
    const body = bytes(d.body);
    fc.assert(
      fc.property(fc.nat(body.length), fc.constantFrom(...INVALID_UTF8), (at, insert) => {
        const result = verifyDelivery(splice(body, at, insert), d.headers["x-icr-signature-256"], SECRETS);
        expect(result.ok ? "ok" : result.reason).toBe("invalid_body");
      }),
      { numRuns: 500 },
    );
    const payload = bytes(d.payloadText);
    fc.assert(
      fc.property(fc.nat(payload.length), fc.constantFrom(...INVALID_UTF8), (at, insert) => {
        const signed = signDelivery(splice(payload, at, insert), FIXTURE_SECRET, { envelope: {} });
        const result = verifyDelivery(bytes(signed.body), signed.signature, SECRETS);
        expect(result.ok && !result.payload.parsed && result.payload.reason).toBe("not_utf8");
      }),
      { numRuns: 500 },
    );
  });

  test("nesting a million deep, signed, in the payload and its unsigned copy: no stack overflow", () => {
    for (const [open, close] of [["[", "]"], ['{"a":', "}"]] as const) {
      for (const depth of [1_000, 100_000, 1_000_000]) {
        const deep = open.repeat(depth) + "1" + close.repeat(depth);
        const text = `{"event":"installed","deep":${deep}}`;
        const d = deliveryOf(text, "canonical");
        const result = verifyDelivery(bytes(d.body), d.signature, SECRETS);
        expect(result.ok && result.payload.text === text).toBe(true);
        // Key order changed: the general path parses the envelope and compares the deep copies.
        const reordered = verifyDelivery(bytes(deliveryOf(text, "reordered").body), d.signature, SECRETS);
        expect(reordered.ok && !reordered.envelopeMismatch).toBe(true);
        // Unsigned, or not JSON: refused, not thrown.
        expect(verifyDelivery(bytes(d.body), signDelivery({ signedData: d.signedData }, "another secret").signature, SECRETS)).toMatchObject({ ok: false, reason: "invalid_signature" });
        expect(verifyDelivery(bytes(`{"x":${deep}`), d.signature, SECRETS)).toMatchObject({ ok: false, reason: "invalid_body" });
      }
    }
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// A real listening server

describe("a listening receiver under generated hostile input", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("random bytes, JSON garbage, cut and corrupted deliveries, any content type: 400 or 403 with a reason, nothing stored", async () => {
    const valid = signedDelivery();
    const validBytes = bytes(valid.body);
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 4096 }),
      jsonText.map(bytes),
      fc.nat(validBytes.length - 1).map((cut) => validBytes.subarray(0, cut)),
      fc.tuple(fc.nat(validBytes.length), fc.constantFrom(...INVALID_UTF8)).map(([at, insert]) => splice(validBytes, at, insert)),
    );
    const signature = fc.option(fc.oneof(fc.constant(valid.headers["x-icr-signature-256"]), spoil.map(([, f]) => f(valid.headers["x-icr-signature-256"]))), { nil: undefined });
    const contentType = fc.option(fc.constantFrom("application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin1"), { nil: undefined });
    const before = rowCounts(server);
    await fc.assert(
      fc.asyncProperty(body, signature, contentType, async (body, signature, contentType) => {
        const headers: Record<string, string> = {};
        if (signature !== undefined) headers["x-icr-signature-256"] = signature;
        if (contentType !== undefined) headers["content-type"] = contentType;
        const response = await fetch(`${server.url}/webhook`, { method: "POST", body, headers });
        expect([400, 403]).toContain(response.status);
        await expectRefusal(response, response.status);
      }),
      { numRuns: 150 },
    );
    expect(rowCounts(server)).toEqual(before);
    await expectHealthy(server);
  }, 60_000);

  test("signed payloads with repeated keys, __proto__ keys and huge numbers: stored byte for byte (unparsed where JSON.parse finds no string event), or refused as JSON.parse implies", async () => {
    await fc.assert(
      fc.asyncProperty(payloadText, envelopeStyle, fc.constantFrom("application/json", "text/plain"), async (text, style, contentType) => {
        const d = deliveryOf(text, style);
        const before = rowCounts(server);
        const response = await server.post(d.body, { "x-icr-signature-256": d.signature, "content-type": contentType });
        const expected = expectedOutcome(d);
        if (expected !== "parsed" && expected !== "unparsed") {
          await expectRefusal(response, STATUS_OF[expected]!, expected);
          expect(rowCounts(server)).toEqual(before);
          return;
        }
        const event = parsedEvent(text);
        expect(response.status).toBe(202);
        const { id, duplicate } = await response.json();
        expect(rowCounts(server)).toEqual({ events: before.events + (duplicate ? 0 : 1), deliveries: before.deliveries + 1 });
        const row = server.database.sqlite
          .query<{ event: string | null; payload: string; unparsed_reason: string | null }, [number]>("SELECT event, payload, unparsed_reason FROM events WHERE id = ?")
          .get(id)!;
        expect(row.payload).toBe(text);
        expect(row.event).toBe(expected === "parsed" ? (event as string) : null);
        expect(row.unparsed_reason === null).toBe(expected === "parsed");
        const raw = server.database.sqlite.query<{ raw_body: string | null }, []>("SELECT raw_body FROM deliveries ORDER BY id DESC LIMIT 1").get()!;
        // NULL only for the canonical form, which the payload rebuilds exactly.
        expect(raw.raw_body ?? canonicalBody(row.payload)).toBe(d.body);
        expectNoPollution();
      }),
      { numRuns: 80 },
    );
    await expectHealthy(server);
  }, 60_000);

  test("huge numbers where the receiver reads numbers: stored as sent, the indexed amount only when finite", async () => {
    await fc.assert(
      fc.asyncProperty(numberLiteral, async (literal) => {
        const text = `{"event":"warehouseTransaction","installation":{"id":${literal},"appId":"a"},"transaction":{"id":"tx-${literal}","status":"processed","type":"retire","amount":${literal}}}`;
        const d = deliveryOf(text, "canonical");
        const response = await server.post(d.body, { "x-icr-signature-256": d.signature });
        expect(response.status).toBe(202);
        const { id } = await response.json();
        const row = server.database.sqlite
          .query<{ payload: string; transaction_amount: number | null }, [number]>("SELECT payload, transaction_amount FROM events WHERE id = ?")
          .get(id)!;
        expect(row.payload).toBe(text);
        const value = Number(literal);
        // === rather than toBe: SQLite may give back -0 as 0.
        if (Number.isFinite(value)) expect(row.transaction_amount === value).toBe(true);
        else expect(row.transaction_amount).toBeNull();
      }),
      { numRuns: 40 },
    );
    await expectHealthy(server);
  }, 60_000);

  test("deep nesting inside a signed payload: stored, no stack overflow, no 5xx", async () => {
    const cases = [
      { name: "arrays 10 000 deep", deep: "[".repeat(10_000) + "]".repeat(10_000) },
      { name: "arrays 300 000 deep", deep: "[".repeat(300_000) + "]".repeat(300_000) },
      // 13 bytes a level: 40 000 levels, base64-encoded, stay under the 1 MiB limit.
      { name: "__proto__ objects 40 000 deep", deep: '{"__proto__":'.repeat(40_000) + "{}" + "}".repeat(40_000) },
    ];
    for (const { name, deep } of cases) {
      const text = `{"event":"installed","deep":${deep}}`;
      const d = deliveryOf(text, "bare");
      const before = rowCounts(server);
      // Unsigned, or broken: refused.
      await expectRefusal(await server.post(d.body, signDelivery({ signedData: d.signedData }, "not the secret").headers), 403, "invalid_signature");
      await expectRefusal(await server.post(`{"signedData":${deep}}`, { "x-icr-signature-256": d.signature }), 400, "missing_signed_data");
      await expectRefusal(await server.post(deep, { "x-icr-signature-256": d.signature }), 400, deep.startsWith("[") ? "invalid_body" : "missing_signed_data");
      await expectRefusal(await server.post(d.body.slice(0, -2), { "x-icr-signature-256": d.signature }), 400, "invalid_body");
      expect(rowCounts(server)).toEqual(before);
      // Signed: accepted and kept verbatim.
      const response = await server.post(d.body, { "x-icr-signature-256": d.signature });
      expect([name, response.status]).toEqual([name, 202]);
      const { id } = await response.json();
      const row = server.database.sqlite.query<{ payload: string }, [number]>("SELECT payload FROM events WHERE id = ?").get(id)!;
      expect(row.payload === text).toBe(true);
    }
    // Deep in the unsigned copy too (the general path compares the copies).
    const deep = "[".repeat(100_000) + "]".repeat(100_000);
    const text = `{"event":"installed","deep":${deep}}`;
    const d = deliveryOf(text, "reordered");
    expect((await server.post(d.body, { "x-icr-signature-256": d.signature })).status).toBe(202);
    await expectHealthy(server);
  }, 60_000);

  test("repeated keys: the value JSON.parse keeps is what is verified and stored", async () => {
    // Two signedData fields: the last one is the one checked.
    const first = deliveryOf('{"event":"installed","n":1}', "bare");
    const second = deliveryOf('{"event":"uninstalled","n":2}', "bare");
    const twice = `{"signedData":"${first.signedData}","signedData":"${second.signedData}"}`;
    const before = rowCounts(server);
    await expectRefusal(await server.post(twice, { "x-icr-signature-256": first.signature }), 403, "invalid_signature");
    expect(rowCounts(server)).toEqual(before);
    const accepted = await server.post(twice, { "x-icr-signature-256": second.signature });
    expect(accepted.status).toBe(202);
    const { id } = await accepted.json();
    expect(server.database.sqlite.query<{ event: string }, [number]>("SELECT event FROM events WHERE id = ?").get(id)!.event).toBe("uninstalled");
    // Two events inside the signed payload: recorded as the last, the payload kept as sent.
    const dup = deliveryOf('{"event":"installed","event":"suspended"}', "bare");
    const response = await server.post(dup.body, { "x-icr-signature-256": dup.signature });
    expect(response.status).toBe(202);
    const row = server.database.sqlite.query<{ event: string; payload: string }, [number]>("SELECT event, payload FROM events WHERE id = ?").get((await response.json()).id)!;
    expect(row).toEqual({ event: "suspended", payload: '{"event":"installed","event":"suspended"}' });
    await expectHealthy(server);
  }, 30_000);

  test("__proto__, constructor and prototype in the payload, the envelope and header names: stored as data, no prototype touched", async () => {
    const text =
      '{"event":"installed","__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"prototype":{"polluted":"yes"},' +
      '"installation":{"__proto__":{"id":"inherited?"},"organization":{"constructor":{"name":"x"},"id":"org-1"}},"transaction":{"__proto__":{"amount":5}}}';
    const d = deliveryOf(text, "hostile-copy");
    const sent = await rawRequest(
      port(server),
      requestHead("POST", "/webhook", [
        ["content-type", "application/json"],
        ["content-length", String(Buffer.byteLength(d.body))],
        ["x-icr-signature-256", d.signature],
        ["__proto__", '{"polluted":"yes"}'],
        ["constructor", "polluted"],
        ["prototype", "polluted"],
      ]) + d.body,
    );
    expect(sent.status).toBe(202);
    const { id } = JSON.parse(sent.body);
    const event = server.database.sqlite
      .query<Record<string, unknown>, [number]>("SELECT event, installation_id, organization_id, transaction_amount, envelope_mismatch, payload FROM events WHERE id = ?")
      .get(id)!;
    // Nothing read through a prototype: installation.__proto__.id is not an installation id.
    expect(event).toEqual({ event: "installed", installation_id: null, organization_id: "org-1", transaction_amount: null, envelope_mismatch: 1, payload: text });
    const stored = server.database.sqlite.query<{ headers: string }, []>("SELECT headers FROM deliveries ORDER BY id DESC LIMIT 1").get()!;
    const headers = JSON.parse(stored.headers) as Record<string, unknown>;
    expect(Object.hasOwn(headers, "__proto__")).toBe(true);
    expect(Object.getOwnPropertyDescriptor(headers, "constructor")?.value).toBe("polluted");
    expectNoPollution();
    // Unsigned, the same keys are refused and change nothing either.
    const before = rowCounts(server);
    await expectRefusal(await server.post(d.body, signDelivery({ signedData: d.signedData }, "nope").headers), 403, "invalid_signature");
    await expectRefusal(await server.post('{"__proto__":{"signedData":"e30="},"constructor":{"prototype":{"signedData":"e30="}}}'), 400, "missing_signed_data");
    expect(rowCounts(server)).toEqual(before);
    expectNoPollution();
    await expectHealthy(server);
  }, 30_000);

  test("spoiled signatures (prefixes, non-hex, lengths, whitespace inside): 403, nothing stored", async () => {
    const before = rowCounts(server);
    await fc.assert(
      fc.asyncProperty(spoil, async ([, f]) => {
        const d = signedDelivery();
        const signature = f(d.headers["x-icr-signature-256"]);
        const response = await server.post(d.body, { "x-icr-signature-256": signature });
        await expectRefusal(response, 403, signature.trim() === "" ? "missing_signature" : "invalid_signature");
      }),
      { numRuns: 150 },
    );
    expect(rowCounts(server)).toEqual(before);
    // The digest's case is undocumented, so any case is accepted (repeats are 202 duplicates).
    const d = signedDelivery();
    await fc.assert(
      fc.asyncProperty(fc.mixedCase(fc.constant(d.headers["x-icr-signature-256"].slice(7))), async (digest) => {
        expect((await server.post(d.body, { "x-icr-signature-256": `sha256=${digest}` })).status).toBe(202);
      }),
      { numRuns: 10 },
    );
    await expectHealthy(server);
  }, 60_000);

  test("signature bytes fetch will not send: edge whitespace (trimmed by HTTP), obs-text, control characters, a repeated header", async () => {
    const d = signedDelivery();
    const signature = d.headers["x-icr-signature-256"];
    const post = (values: string[]) =>
      rawRequest(
        port(server),
        requestHead("POST", "/webhook", [["content-type", "application/json"], ["content-length", String(Buffer.byteLength(d.body))], ...values.map((v): [string, string] => ["x-icr-signature-256", v])]) + d.body,
      );
    const before = rowCounts(server);
    // Inside the value: refused by the receiver.
    for (const value of [signature.slice(0, 7) + " " + signature.slice(7), signature.slice(0, 40) + "\t" + signature.slice(40), signature.slice(0, 70) + "\xe9", "\xff".repeat(71)]) {
      await expectRefusal(await post([value]), 403, "invalid_signature");
    }
    // Twice, even with the right value once: the values are joined, and that is no signature.
    await expectRefusal(await post([signature, signature]), 403, "invalid_signature");
    await expectRefusal(await post(["sha256=00", signature]), 403, "invalid_signature");
    // Control characters in a header value are a malformed request: Bun's own 400.
    for (const value of [signature.slice(0, 70) + "\x01", signature.slice(0, 70) + "\x00", signature.slice(0, 70) + "\x7f"]) {
      const response = await post([value]);
      expect(response.status).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
    }
    expect(rowCounts(server)).toEqual(before);
    // Leading and trailing whitespace is not part of a field value (RFC 9110 §5.5): accepted.
    for (const value of [` ${signature}`, `\t${signature}`, `${signature} `, `${signature}\t \t`]) {
      expect((await post([value])).status).toBe(202);
    }
    await expectHealthy(server);
  }, 30_000);

  test("very long header values and many headers: answered by the receiver up to Bun's 16 KiB head, 431 from Bun beyond, nothing stored", async () => {
    const printable = fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 16 }).filter((s) => s.trim() !== "");
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 15_000 }), printable, fc.boolean(), async (length, pattern, signedRight) => {
        const value = pattern.repeat(Math.ceil(length / pattern.length)).slice(0, length);
        const d = signedDelivery();
        const headers = { "x-icr-signature-256": signedRight ? d.headers["x-icr-signature-256"] : `sha256=${"0".repeat(64)}`, "x-long": value };
        const before = rowCounts(server);
        const response = await server.post(d.body, headers);
        if (!signedRight) {
          await expectRefusal(response, 403, "invalid_signature");
          expect(rowCounts(server)).toEqual(before);
          return;
        }
        expect(response.status).toBe(202);
        const stored = server.database.sqlite.query<{ headers: string }, []>("SELECT headers FROM deliveries ORDER BY id DESC LIMIT 1").get()!;
        expect((JSON.parse(stored.headers) as Record<string, string>)["x-long"]).toBe(value.trim());
      }),
      { numRuns: 40 },
    );
    const d = signedDelivery();
    const before = rowCounts(server);
    // A signature header of 15 000 characters: just a wrong signature.
    await expectRefusal(await server.post(d.body, { "x-icr-signature-256": `sha256=${"a".repeat(15_000)}` }), 403, "invalid_signature");
    // 80 extra headers: fine, and every one is kept.
    const many = Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`x-extra-${i}`, `v${i}`]));
    const accepted = await server.post(d.body, { ...d.headers, ...many });
    expect(accepted.status).toBe(202);
    const stored = JSON.parse(server.database.sqlite.query<{ headers: string }, []>("SELECT headers FROM deliveries ORDER BY id DESC LIMIT 1").get()!.headers);
    expect(stored).toMatchObject(many);
    const afterValid = rowCounts(server);
    expect(afterValid.deliveries).toBe(before.deliveries + 1);
    // Beyond Bun's limits the request never reaches the receiver: Bun answers 431 (no JSON body).
    const e = signedDelivery();
    const head = (extra: [string, string][]) =>
      requestHead("POST", "/webhook", [["content-type", "application/json"], ["content-length", String(Buffer.byteLength(e.body))], ["x-icr-signature-256", e.headers["x-icr-signature-256"]], ...extra]) + e.body;
    for (const extra of [
      [["x-long", "a".repeat(20_000)]] as [string, string][],
      [["x-icr-signature-256", "a".repeat(200_000)]] as [string, string][],
      Array.from({ length: 500 }, (_, i): [string, string] => [`x-h${i}`, "v"]),
    ]) {
      const response = await rawRequest(port(server), head(extra));
      expect(response.status).toBe(431);
    }
    expect(rowCounts(server)).toEqual(afterValid);
    await expectHealthy(server);
  }, 60_000);

  test("malformed requests and binary garbage: Bun's own 4xx/505 or a closed connection, never the receiver's 5xx, server unharmed", async () => {
    const d = signedDelivery();
    const before = rowCounts(server);
    const malformed = [
      `POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n${d.body}`,
      `POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n${d.body}`,
      `POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x`,
      `POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${d.body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${d.body}`,
      `POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${d.body}\r\n0\r\n\r\n`,
      `POST /webhook HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n`,
      `POST * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
      "\x00\xff\xfe garbage\r\n\r\n",
      "POST /webhook HTTP/1.1\nHost: 127.0.0.1\n\n{}",
      `POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nbad header line\r\n\r\n`,
    ];
    // All at once: a head that never ends waits for Bun's header timeout, which is not the point here.
    const garbage = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 512 }), 40);
    const answers = await Promise.all([...malformed, ...garbage].map((request) => rawRequest(port(server), request, { timeoutMs: 2_000 })));
    // Bun's parser answers a request line it cannot read (HTTP/9.9, bare LF, binary) with its own
    // bodiless 505 and closes: the receiver never sees those. Any other 5xx would be ours.
    const bunVersionRefusal = (a: RawResponse) => a.status === 505 && a.body === "" && a.closedByServer;
    for (const answer of answers) expect(answer.status < 500 || bunVersionRefusal(answer)).toBe(true);
    // The ones Bun could parse far enough to refuse were refused, not left hanging.
    for (const answer of answers.slice(0, malformed.length)) expect([answer.status, answer.closedByServer]).not.toEqual([0, false]);
    expect(rowCounts(server)).toEqual(before);
    await expectHealthy(server);
  }, 120_000);
});
