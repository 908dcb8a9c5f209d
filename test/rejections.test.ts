// Refused deliveries: recorded for the operator without their body, in a ring that cannot grow
// past its capacity; an address that keeps being refused is answered 429, a valid delivery never.
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { batchAppender, REJECTIONS_KEPT } from "../src/log/append.ts";
import { closeDatabase, openDatabase } from "../src/log/database.ts";
import { limitedAddress } from "../src/http/client-address.ts";
import { RejectionLimiter } from "../src/http/rejection-limit.ts";
import { signDelivery } from "../src/verify/sign-delivery.ts";
import { signedDelivery, startServer, tempDir, type TestServer } from "./support/server.ts";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

const rows = (s: TestServer) =>
  s.database.sqlite.query<Record<string, unknown>, []>("SELECT * FROM rejections ORDER BY seq").all();

async function until<T>(read: () => T, done: (value: T) => boolean): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const value = read();
    if (done(value)) return value;
    await Bun.sleep(20);
  }
  return read();
}

describe("the rejections table", () => {
  test("holds time, address, status, reason, size and hash, never the body", async () => {
    server = await startServer();
    const forged = signedDelivery({}, { secret: "not the configured secret" });
    expect((await server.post(forged.body, forged.headers)).status).toBe(403);
    expect((await server.post("not json")).status).toBe(400);
    const recorded = await until(() => rows(server!), (r) => r.length === 2);
    expect(recorded.map((r) => [r.status, r.reason, r.body_size])).toEqual([
      [403, "invalid_signature", Buffer.byteLength(forged.body)],
      [400, "invalid_body", 8],
    ]);
    expect(recorded[0]!.remote_address).toBe("127.0.0.1");
    expect(recorded[0]!.body_sha256).toBe(new Bun.CryptoHasher("sha256").update(forged.body).digest("hex"));
    expect(JSON.stringify(recorded)).not.toContain(forged.signedData);
    expect(server.database.sqlite.query("SELECT count(*) AS n FROM events").get()).toEqual({ n: 0 });
  });

  test("is a ring: never more than its capacity, the newest kept", () => {
    const log = openDatabase(join(tempDir(), "ring.db"));
    const append = batchAppender(log);
    const refusal = (i: number) => ({ receivedAt: `t${i}`, remoteAddress: "a", status: 403, reason: "invalid_signature", bodySize: i, bodySha256: null });
    for (let start = 0; start < REJECTIONS_KEPT + 500; start += 1000) {
      append([], Array.from({ length: 1000 }, (_, k) => refusal(start + k)));
    }
    const { n, low, high } = log.sqlite.query<{ n: number; low: number; high: number }, []>(
      "SELECT count(*) AS n, min(body_size) AS low, max(body_size) AS high FROM rejections",
    ).get()!;
    expect(n).toBe(REJECTIONS_KEPT);
    expect(high).toBe(REJECTIONS_KEPT + 999);
    expect(low).toBe(high - REJECTIONS_KEPT + 1);
    closeDatabase(log);
  });
});

describe("rate limiting refusals", () => {
  test("the limiter: an allowance per minute that refills", () => {
    let now = 0;
    const limiter = new RejectionLimiter(3, () => now);
    expect([1, 2, 3, 4].map(() => limiter.allow("a"))).toEqual([true, true, true, false]);
    expect(limiter.allow("b")).toBe(true);
    expect(limiter.retryAfter("a")).toBe(20);
    now += 20_000;
    expect(limiter.allow("a")).toBe(true);
    expect(limiter.allow("a")).toBe(false);
    expect(new RejectionLimiter(0).allow("a")).toBe(true);
  });

  test("the limiter forgets addresses rather than grow without bound", () => {
    let now = 0;
    const limiter = new RejectionLimiter(1, () => now, 100);
    for (let i = 0; i < 1000; i++) limiter.allow(`10.0.${i >> 8}.${i & 255}`);
    expect((limiter as unknown as { buckets: Map<string, unknown> }).buckets.size).toBeLessThanOrEqual(100);
  });

  test("the address a refusal is counted against: the proxy's last X-Forwarded-For hop from loopback only", () => {
    const request = (xff?: string) => new Request("http://127.0.0.1/webhook", { headers: xff === undefined ? {} : { "x-forwarded-for": xff } });
    expect(limitedAddress(request("203.0.113.9"), "127.0.0.1")).toBe("203.0.113.9");
    expect(limitedAddress(request("198.51.100.1, 203.0.113.9"), "::1")).toBe("203.0.113.9");
    expect(limitedAddress(request("198.51.100.1, 2001:db8::7"), "::ffff:127.0.0.1")).toBe("2001:db8::7");
    // Not an address the proxy wrote, or no header: the socket.
    expect(limitedAddress(request("<b>"), "127.0.0.1")).toBe("127.0.0.1");
    expect(limitedAddress(request("203.0.113.9, "), "127.0.0.1")).toBe("127.0.0.1");
    expect(limitedAddress(request(), "127.0.0.1")).toBe("127.0.0.1");
    // From anyone else, the header is the sender's word: ignored.
    expect(limitedAddress(request("203.0.113.9"), "192.0.2.44")).toBe("192.0.2.44");
    expect(limitedAddress(request("127.0.0.1"), "192.0.2.44")).toBe("192.0.2.44");
    expect(limitedAddress(request("203.0.113.9"), null)).toBe("unknown");
  });

  test("behind a proxy on this machine, each client has its own allowance; the socket address is still what is stored", async () => {
    server = await startServer({ rejectionLimit: 2 });
    const forged = signedDelivery({}, { secret: "forger" });
    const from = (address: string) => ({ ...forged.headers, "x-forwarded-for": address });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await server.post(forged.body, from("203.0.113.9"))).status);
    statuses.push((await server.post(forged.body, from("198.51.100.7"))).status);
    statuses.push((await server.post(forged.body, forged.headers)).status);
    expect(statuses).toEqual([403, 403, 429, 403, 403]);
    const recorded = await until(() => rows(server!), (r) => r.length === 4);
    expect(recorded.map((r) => r.remote_address)).toEqual(["127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"]);
  });

  test("forgeries beyond the allowance get 429 with Retry-After; valid deliveries still get 202", async () => {
    server = await startServer({ rejectionLimit: 5 });
    const forged = signedDelivery({}, { secret: "forger" });
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await server.post(forged.body, forged.headers)).status);
    expect(statuses).toEqual([403, 403, 403, 403, 403, 429, 429, 429]);
    const limited = await server.post(forged.body, forged.headers);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await limited.json()).error).toBe("rate_limited");
    const valid = signedDelivery();
    expect((await server.post(valid.body, valid.headers)).status).toBe(202);
    // Only the refusals within the allowance are written down.
    expect((await until(() => rows(server!), (r) => r.length >= 5)).length).toBe(5);
    // A body that is no delivery at all is a refusal, limited the same way.
    expect((await server.post('{"event":"installed"}')).status).toBe(429);
    // A valid signature over a payload that is not an event is authentic: stored, even now.
    const unparsed = signDelivery("[]", "It's a Secret to Everybody", { envelope: {} });
    const response = await server.post(unparsed.body, unparsed.headers);
    expect(response.status).toBe(202);
  });
});
