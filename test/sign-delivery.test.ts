// signDelivery, the one signer: against the documented test vector, and each framing it offers.
import { describe, expect, test } from "bun:test";
import { canonicalBody } from "../src/verify/delivery.ts";
import { signDelivery } from "../src/verify/sign-delivery.ts";
import { verifyDelivery } from "../src/verify/verify-delivery.ts";

// The test vector of ICR's webhook documentation (the spec's "Test vectors"), kept here so the
// test needs nothing outside the repository.
const SECRET = "It's a Secret to Everybody";
const PAYLOAD =
  '{"event":"installed","state":"","installation":{"id":"123","createdAt":"2022-03-14T11:01:55.941Z","updatedAt":"2022-03-14T11:01:55.941Z",' +
  '"organization":{"id":"org1","name":"Organization 1","url":"https://api.carbonregistry.com/organizations/org1"},' +
  '"permissions":{"organization_info":"VIEW","organization_inventory":"REQUEST"},"appNameId":"app1","appId":"1",' +
  '"accessTokensUrl":"https://api.carbonregistry.com/app/installations/123/accessTokens"},' +
  '"sender":{"email":"user@example.com","fullName":"John Doe","id":"user1","profilePicture":"https://example.com/profiles/user1.jpg"}}';
// printf %s "$SIGNED_DATA" | openssl dgst -sha256 -hmac "It's a Secret to Everybody" -hex
const HEADER = "sha256=99a7fe21fa4e9d9c661f1406848fd3f6d32864e01dcbc26499ebcb089f75b164";

const secrets = [{ label: "default", secret: SECRET }];
const bytes = (text: string) => new TextEncoder().encode(text);

describe("signDelivery", () => {
  test("the documented test vector: signedData, body and header", () => {
    const d = signDelivery(PAYLOAD, SECRET);
    expect(d.signedData.startsWith("eyJldmVudCI6Imluc3RhbGxlZCIsInN0YXRlIjoiIiwiaW5zdGFsbGF0aW")).toBe(true);
    expect(d.signedData).toBe(Buffer.from(PAYLOAD, "utf8").toString("base64"));
    expect(d.signature).toBe(HEADER);
    expect(d.headers).toEqual({ "x-icr-signature-256": HEADER });
    expect(d.body).toBe(`${PAYLOAD.slice(0, -1)},"signedData":"${d.signedData}"}`);
    expect(d.body).toBe(canonicalBody(PAYLOAD)!);
    expect(d.body).toBe(JSON.stringify({ ...JSON.parse(PAYLOAD), signedData: d.signedData }));
    const verified = verifyDelivery(bytes(d.body), d.signature, secrets);
    expect(verified.ok && verified.canonical && verified.payload.text).toBe(PAYLOAD);
  });

  test("non-ASCII payloads are signed over their UTF-8 bytes", () => {
    const text = JSON.stringify({ event: "organizationTransaction", name: "Guðmundur & Þórður 🌱" });
    const d = signDelivery(text, SECRET);
    expect(Buffer.from(d.signedData, "base64").toString("utf8")).toBe(text);
    expect(d.body).toBe(JSON.stringify({ ...JSON.parse(text), signedData: d.signedData }));
    expect(verifyDelivery(bytes(d.body), d.signature, secrets)).toMatchObject({ ok: true, canonical: true });
  });

  test("an envelope replaces the unsigned top-level copy; the signed data is the payload's", () => {
    const d = signDelivery(PAYLOAD, SECRET, { envelope: { event: "tampered" } });
    expect(d.signedData).toBe(signDelivery(PAYLOAD, SECRET).signedData);
    expect(d.signature).toBe(HEADER);
    expect(d.body).toBe(JSON.stringify({ event: "tampered", signedData: d.signedData }));
    expect(signDelivery(PAYLOAD, SECRET, { envelope: {} }).body).toBe(JSON.stringify({ signedData: d.signedData }));
    const verified = verifyDelivery(bytes(d.body), d.signature, secrets);
    expect(verified.ok && verified.envelopeMismatch).toBe(true);
  });

  test("bare bodies: {}, text that is not an object, bytes", () => {
    expect(signDelivery("{}", SECRET).body).toBe('{"signedData":"e30="}');
    expect(signDelivery("[1,2,3]", SECRET).body).toBe(`{"signedData":"${Buffer.from("[1,2,3]").toString("base64")}"}`);
    expect(signDelivery("not json", SECRET).body).toBe(`{"signedData":"${Buffer.from("not json").toString("base64")}"}`);
    const raw = new Uint8Array([0xff, 0xfe, 0x00, 0x80]);
    const d = signDelivery(raw, SECRET);
    expect(d.signedData).toBe("//4AgA==");
    expect(d.body).toBe('{"signedData":"//4AgA=="}');
    expect(signDelivery(raw, SECRET, { envelope: { event: "installed" } }).body).toBe('{"event":"installed","signedData":"//4AgA=="}');
    expect(verifyDelivery(bytes(signDelivery("{}", SECRET).body), signDelivery("{}", SECRET).signature, secrets)).toMatchObject({ ok: true });
  });

  test("a given signedData is sent and signed verbatim", () => {
    const urlSafe = Buffer.from(PAYLOAD, "utf8").toString("base64url");
    const d = signDelivery({ signedData: urlSafe }, SECRET, { envelope: JSON.parse(PAYLOAD) });
    expect(d.signedData).toBe(urlSafe);
    expect(d.body).toBe(`${PAYLOAD.slice(0, -1)},"signedData":"${urlSafe}"}`);
    expect(d.signature).not.toBe(HEADER);
    const verified = verifyDelivery(bytes(d.body), d.signature, secrets);
    expect(verified.ok && !verified.canonical && verified.payload.text).toBe(PAYLOAD);
    // Line breaks are escaped in the JSON body and signed as the string they are.
    const mime = signDelivery({ signedData: "ab\ncd" }, SECRET);
    expect(mime.body).toBe('{"signedData":"ab\\ncd"}');
    expect(mime.signature).toBe(signDelivery({ signedData: "ab\ncd" }, SECRET, { envelope: {} }).signature);
    expect(signDelivery({ signedData: "%%%" }, "another secret").signature).not.toBe(signDelivery({ signedData: "%%%" }, SECRET).signature);
  });
});
