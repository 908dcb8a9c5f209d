// verifyDelivery: the canonical-body shortcut must give exactly what the general path gives.
import { describe, expect, test } from "bun:test";
import { canonicalBody } from "../src/verify/delivery.ts";
import { signDelivery } from "../src/verify/sign-delivery.ts";
import { verifyDelivery } from "../src/verify/verify-delivery.ts";
import { FIXTURE_SECRET, loadFixtures } from "./support/fixtures.ts";

const secrets = [{ label: "default", secret: FIXTURE_SECRET }];
const bytes = (text: string) => new TextEncoder().encode(text);

/** ICR's delivery of `payloadText`, or the same signedData and signature in a hand-written `body`. */
function delivery(payloadText: string, body?: string) {
  const signed = signDelivery(payloadText, FIXTURE_SECRET);
  return { body: body ?? signed.body, signature: signed.signature, signedData: signed.signedData };
}

describe("verifyDelivery", () => {
  test("every fixture: the outcome its expectation implies", () => {
    for (const f of loadFixtures()) {
      const result = verifyDelivery(bytes(f.body), f.headers["x-icr-signature-256"] ?? null, [{ label: "l", secret: f.secret }]);
      expect([f.name, result.ok]).toEqual([f.name, f.expect.status === 202]);
      if (result.ok) {
        expect(result.payload.parsed).toBe(f.expect.parsed ?? true);
        if (result.payload.parsed) expect(result.payload.value.event).toBe(f.expect.event!);
        else if (f.expect.unparsedReason !== undefined) expect(result.payload.reason as string).toBe(f.expect.unparsedReason);
        expect(result.rawBody).toBe(f.body);
      }
    }
  });

  test("a canonical body is accepted without mismatch, with the payload text verbatim", () => {
    const { body, signature } = delivery('{"event":"installed","installation":{"id":"1"}}');
    const result = verifyDelivery(bytes(body), signature, secrets);
    expect(result.ok && result.envelopeMismatch).toBe(false);
    expect(result.ok && result.payload.text).toBe('{"event":"installed","installation":{"id":"1"}}');
  });

  test("canonical is claimed only for the one body canonicalBody rebuilds", () => {
    const payload = '{"event":"installed","n":"?>~"}';
    const { body, signature, signedData } = delivery(payload);
    expect(canonicalBody(payload)).toBe(body);
    expect(canonicalBody('{"event":"installed"} ')).toBeNull();
    const verified = verifyDelivery(bytes(body), signature, secrets);
    expect(verified.ok && verified.canonical).toBe(true);
    const urlSafe = Buffer.from(payload).toString("base64url");
    const unpadded = signedData.replace(/=+$/, "");
    // Another base64 alphabet, no padding, a space: each signed as sent, each accepted, none canonical.
    const others = [
      signDelivery({ signedData: urlSafe }, FIXTURE_SECRET, { envelope: JSON.parse(payload) }),
      signDelivery({ signedData: unpadded }, FIXTURE_SECRET, { envelope: JSON.parse(payload) }),
      delivery(payload, `${payload.slice(0, -1)}, "signedData":"${signedData}"}`),
    ];
    expect(urlSafe).not.toBe(signedData);
    expect(unpadded).not.toBe(signedData);
    expect(others[0]!.body).toBe(`${payload.slice(0, -1)},"signedData":"${urlSafe}"}`);
    expect(others[1]!.body).toBe(`${payload.slice(0, -1)},"signedData":"${unpadded}"}`);
    for (const [i, other] of others.entries()) {
      const sent = i === 0 ? urlSafe : i === 1 ? unpadded : signedData;
      expect(other.signature).toBe(signDelivery({ signedData: sent }, FIXTURE_SECRET).signature);
      const result = verifyDelivery(bytes(other.body), other.signature, secrets);
      expect(result.ok && result.canonical).toBe(false);
      expect(result.ok && result.payload.text).toBe(payload);
    }
  });

  test("bodies that only look canonical take the general path and get its answer", () => {
    const payload = '{"event":"installed","n":1}';
    const { signedData, signature } = delivery(payload);
    const cases: [string, boolean | string][] = [
      // Same fields, other order: no mismatch.
      [`{"n":1,"event":"installed","signedData":"${signedData}"}`, false],
      // A changed unsigned copy: mismatch.
      [`{"event":"uninstalled","n":1,"signedData":"${signedData}"}`, true],
      // An extra unsigned field: mismatch.
      [`{"event":"installed","n":1,"extra":true,"signedData":"${signedData}"}`, true],
      // Whitespace around the tail: still JSON, still no mismatch.
      [`{"event":"installed","n":1, "signedData" : "${signedData}" }`, false],
      // Not JSON although the tail matches: 400, before the signature.
      [`{"event":"installed","n":1,,"signedData":"${signedData}"}`, "invalid_body"],
      [`xx,"signedData":"${signedData}"}`, "invalid_body"],
    ];
    for (const [body, expected] of cases) {
      const result = verifyDelivery(bytes(body), signature, secrets);
      if (typeof expected === "string") expect(!result.ok && result.reason).toBe(expected as never);
      else expect(result.ok && result.envelopeMismatch).toBe(expected);
    }
  });

  test("a payload that itself holds signedData, or is empty, is judged like any other", () => {
    const withOwn = '{"event":"installed","signedData":"x"}';
    const own = delivery(withOwn);
    const result = verifyDelivery(bytes(own.body), own.signature, secrets);
    expect(result.ok && result.envelopeMismatch).toBe(false);
    // `{}` spliced as if it had members: `{,"signedData":…}` is not JSON (ICR would send `{"signedData":"e30="}`).
    const empty = delivery("{}", '{,"signedData":"e30="}');
    const rejected = verifyDelivery(bytes(empty.body), empty.signature, secrets);
    expect(!rejected.ok && rejected.reason).toBe("invalid_body");
  });

  test("the signature is checked in order: missing, then wrong", () => {
    const { body } = delivery('{"event":"installed"}');
    expect(verifyDelivery(bytes(body), null, secrets)).toMatchObject({ ok: false, reason: "missing_signature" });
    expect(verifyDelivery(bytes(body), "", secrets)).toMatchObject({ ok: false, reason: "missing_signature" });
    expect(verifyDelivery(bytes(body), signDelivery({ signedData: "x" }, "other").signature, secrets)).toMatchObject({ ok: false, reason: "invalid_signature" });
  });

  test("the shortcut and the general path agree on generated deliveries", () => {
    for (let i = 0; i < 300; i++) {
      const value = { event: ["installed", "warehouseTransaction", "ünïcödé ✓"][i % 3], n: i, nested: { a: [i, "x".repeat(i % 17)], b: i % 2 === 0 ? null : { c: "é" } } };
      const { body, signature, signedData } = delivery(JSON.stringify(value));
      const fast = verifyDelivery(bytes(body), signature, secrets);
      // Re-serialised envelope (other key order) forces the general path.
      const slowBody = JSON.stringify({ signedData, ...value });
      const slow = verifyDelivery(bytes(slowBody), signature, secrets);
      expect(fast.ok && slow.ok).toBe(true);
      if (fast.ok && slow.ok) {
        expect(fast.payload.text).toBe(slow.payload.text);
        expect(fast.envelopeMismatch).toBe(slow.envelopeMismatch);
        expect(fast.secretLabel).toBe(slow.secretLabel);
      }
    }
  });
});
