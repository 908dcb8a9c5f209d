import { describe, expect, test } from "bun:test";
import {
  decodeBase64,
  decodeSignedData,
  envelopeMismatch,
  jsonEqual,
  parseEnvelope,
} from "../src/verify/delivery.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
/** A payload as verification decodes it from signed data. */
const payloadOf = (value: unknown) => decodeSignedData(Buffer.from(JSON.stringify(value)).toString("base64"));

describe("parseEnvelope", () => {
  test("a JSON object with a string signedData", () => {
    const parsed = parseEnvelope(bytes('{"event":"x","signedData":"e30="}'));
    expect(parsed.ok && parsed.envelope.signedData).toBe("e30=");
    expect(parsed.ok && parsed.text).toBe('{"event":"x","signedData":"e30="}');
  });

  test("a byte-order mark before the JSON is read past, and kept in the text", () => {
    const parsed = parseEnvelope(bytes('\uFEFF{"signedData":"e30="}'));
    expect(parsed.ok && parsed.envelope.signedData).toBe("e30=");
    expect(parsed.ok && parsed.text).toBe('\uFEFF{"signedData":"e30="}');
    expect(parseEnvelope(bytes('\uFEFF\uFEFF{"signedData":"e30="}')).ok).toBe(false);
  });

  test.each([
    ["not json", "invalid_body"],
    ["", "invalid_body"],
    ["[1,2]", "invalid_body"],
    ["null", "invalid_body"],
    ['"signedData"', "invalid_body"],
    ['{"signedData":1}', "missing_signed_data"],
    ['{"event":"x"}', "missing_signed_data"],
    ['{"signedData":null}', "missing_signed_data"],
  ])("%p is refused as %p", (body, reason) => {
    const parsed = parseEnvelope(bytes(body));
    expect(parsed.ok).toBe(false);
    expect(!parsed.ok && (parsed.reason as string)).toBe(reason);
  });

  test("invalid UTF-8 is refused, not replaced", () => {
    const parsed = parseEnvelope(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]));
    expect(!parsed.ok && parsed.reason).toBe("invalid_body");
  });

  test("deep nesting is parsed or refused, never a crash, and compared without recursion", () => {
    const deep = "[".repeat(200_000) + "]".repeat(200_000);
    const parsed = parseEnvelope(bytes(`{"signedData":"", "x": ${deep}}`));
    expect(parsed.ok).toBe(true);
    const payload = decodeSignedData(Buffer.from(`{"x": ${deep}}`).toString("base64"));
    if (parsed.ok) expect(envelopeMismatch(parsed.envelope, payload)).toBe(false);
  });
});

describe("decodeBase64", () => {
  const text = "{\"a\":\"??>>~~\"}";
  const standard = Buffer.from(text).toString("base64");
  const urlSafe = Buffer.from(text).toString("base64url");

  test("standard, URL-safe, padded or not", () => {
    expect(standard).toMatch(/[+/]/);
    for (const encoded of [standard, urlSafe, standard.replace(/=+$/, ""), urlSafe + "=".repeat((4 - (urlSafe.length % 4)) % 4)]) {
      expect(Buffer.from(decodeBase64(encoded)!).toString()).toBe(text);
    }
  });

  test("whitespace inside is ignored: line breaks every 76 characters, stray spaces", () => {
    const long = Buffer.from(text.repeat(20)).toString("base64");
    const mime = long.replace(/.{76}/g, "$&\r\n");
    expect(mime).toContain("\r\n");
    expect(Buffer.from(decodeBase64(mime)!).toString()).toBe(text.repeat(20));
    expect(Buffer.from(decodeBase64(` ${standard.slice(0, 4)} \t${standard.slice(4)}\n`)!).toString()).toBe(text);
  });

  test.each(["%%%not-base64%%%", "a", "a===", "ab=c", "ab+_", "e30=e30=", "e3\u00a00="])("refuses %p", (encoded) => {
    expect(decodeBase64(encoded)).toBeNull();
  });
});

describe("decodeSignedData", () => {
  const encode = (text: string) => Buffer.from(text).toString("base64");

  test("the payload text is kept byte for byte", () => {
    const text = '{ "event" : "installed", "x": 1.50 }';
    const decoded = decodeSignedData(encode(text));
    expect(decoded.parsed && decoded.text).toBe(text);
    expect(decoded.parsed && decoded.value.event).toBe("installed");
  });

  test.each([
    ["not base64", "%%%", "not_base64", null],
    ["not UTF-8", Buffer.from([0x7b, 0xff, 0x7d]).toString("base64"), "not_utf8", null],
    ["not JSON", encode("this is not json"), "not_json", "this is not json"],
    ["not an object", encode("[1]"), "not_an_object", "[1]"],
    ["no event", encode('{"installation":{"id":"1"}}'), "no_event", '{"installation":{"id":"1"}}'],
    ["event not a string", encode('{"event":7}'), "no_event", '{"event":7}'],
  ])("%s: unparsed, with the reason and the text where there is one", (_, signedData, reason, text) => {
    const decoded = decodeSignedData(signedData);
    expect(decoded.parsed).toBe(false);
    if (decoded.parsed) return;
    expect(decoded.reason as string).toBe(reason as string);
    expect(decoded.text).toBe(text);
  });

  test("the bytes that identify an unparsed event: the decoded data, or signedData itself where it is not base64", () => {
    expect(Buffer.from(decodeSignedData("%%%").bytes).toString()).toBe("%%%");
    expect([...decodeSignedData(Buffer.from([0xff, 0x00]).toString("base64")).bytes]).toEqual([0xff, 0x00]);
    expect(Buffer.from(decodeSignedData(encode("[1]")).bytes).toString()).toBe("[1]");
  });
});

describe("jsonEqual and envelopeMismatch", () => {
  test("key order is ignored, values are not", () => {
    expect(jsonEqual({ a: 1, b: [1, { c: null }] }, { b: [1, { c: null }], a: 1 })).toBe(true);
    expect(jsonEqual({ a: 1 }, { a: "1" })).toBe(false);
    expect(jsonEqual([1, 2], [2, 1])).toBe(false);
    expect(jsonEqual({ a: undefined }, { b: undefined })).toBe(false);
    expect(jsonEqual([], {})).toBe(false);
    expect(jsonEqual(null, {})).toBe(false);
  });

  const payload = payloadOf({ event: "installed", installation: { id: "1", organization: { id: "o" } } });

  test("no mismatch when every envelope field equals the signed one", () => {
    const envelope = { signedData: "…", installation: { organization: { id: "o" }, id: "1" }, event: "installed" };
    expect(envelopeMismatch(envelope, payload)).toBe(false);
    expect(envelopeMismatch({ signedData: "…" }, payload)).toBe(false);
  });

  test("a differing or unsigned field is a mismatch", () => {
    expect(envelopeMismatch({ signedData: "…", event: "uninstalled" }, payload)).toBe(true);
    expect(envelopeMismatch({ signedData: "…", state: "" }, payload)).toBe(true);
    expect(envelopeMismatch({ signedData: "…", installation: { id: "2" } }, payload)).toBe(true);
  });

  test("a payload that is not an object backs no envelope field", () => {
    const notAnObject = decodeSignedData(Buffer.from("[1]").toString("base64"));
    expect(envelopeMismatch({ signedData: "…" }, notAnObject)).toBe(false);
    expect(envelopeMismatch({ signedData: "…", event: "installed" }, notAnObject)).toBe(true);
  });
});
