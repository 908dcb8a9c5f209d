import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { sign, verify, verifyWithFallback } from "../src/verify/signature.ts";
import { fixture, FIXTURE_SECRET } from "./support/fixtures.ts";

const installed = fixture("installed");
const signedData = JSON.parse(installed.body).signedData as string;
const header = installed.headers["x-icr-signature-256"]!;

describe("sign", () => {
  test("matches the documented scheme and the fixture's header", () => {
    const hex = createHmac("sha256", FIXTURE_SECRET).update(signedData).digest("hex");
    expect(sign(FIXTURE_SECRET, signedData)).toBe(`sha256=${hex}`);
    expect(sign(FIXTURE_SECRET, signedData)).toBe(header);
  });

  test("signedData of the spec's test vector starts as documented", () => {
    expect(signedData.startsWith("eyJldmVudCI6Imluc3RhbGxlZCIsInN0YXRlIjoiIiwiaW5zdGFsbGF0aW")).toBe(true);
  });
});

describe("verify", () => {
  test("accepts the right signature, in either hex case", () => {
    expect(verify(FIXTURE_SECRET, signedData, header)).toBe(true);
    expect(verify(FIXTURE_SECRET, signedData, "sha256=" + header.slice(7).toUpperCase())).toBe(true);
  });

  test("rejects another secret, other data, and malformed values without throwing", () => {
    expect(verify("another secret", signedData, header)).toBe(false);
    expect(verify(FIXTURE_SECRET, signedData + "x", header)).toBe(false);
    for (const bad of [
      "",
      "sha256=",
      header.slice(0, -1),
      header + "0",
      "sha1=" + header.slice(7),
      "SHA256=" + header.slice(7),
      " " + header.slice(1),
      header.slice(7),
      "sha256=" + "z".repeat(64),
      "sha256=" + "é".repeat(64),
    ]) {
      expect(verify(FIXTURE_SECRET, signedData, bad)).toBe(false);
    }
  });
});

describe("verifyWithFallback", () => {
  const secrets = [
    { label: "new", secret: "the new secret" },
    { label: "old", secret: FIXTURE_SECRET },
  ];

  test("names the secret that matched", () => {
    expect(verifyWithFallback(secrets, signedData, header)).toBe("old");
    expect(verifyWithFallback(secrets, signedData, sign("the new secret", signedData))).toBe("new");
  });

  test("null when no secret matches", () => {
    expect(verifyWithFallback(secrets, signedData, sign("a third", signedData))).toBeNull();
    expect(verifyWithFallback([], signedData, header)).toBeNull();
  });

  test("the first label wins when two secrets are equal", () => {
    expect(verifyWithFallback([{ label: "a", secret: "s" }, { label: "b", secret: "s" }], "d", sign("s", "d"))).toBe("a");
  });
});
