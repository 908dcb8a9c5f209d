import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import zlib from "node:zlib";
import { readRequestBody, type RequestBody } from "../src/http/request-body.ts";

const ENDPOINT = "http://localhost/webhook";
const MiB = 1024 * 1024;
const payload = new TextEncoder().encode(JSON.stringify({ event: "retirement.created", data: { id: "r-1", tonnes: 12.5, note: "é✓".repeat(50) } }));

function post(body: RequestInit["body"], headers: Record<string, string> = {}): Request {
  return new Request(ENDPOINT, { method: "POST", headers, body });
}

/** A body without Content-Length (as a chunked upload arrives), pulled only when read. */
function chunked(chunks: Uint8Array[], opts: { repeat?: { chunk: Uint8Array; times: number }; failAfter?: number } = {}) {
  const state = { pulls: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const i = state.pulls++;
        if (opts.failAfter !== undefined && i === opts.failAfter) return controller.error(new Error("socket closed"));
        if (i < chunks.length) return controller.enqueue(chunks[i]!);
        if (opts.repeat && i < chunks.length + opts.repeat.times) return controller.enqueue(opts.repeat.chunk);
        controller.close();
      },
      cancel() {
        state.cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, state };
}

function ok(result: RequestBody) {
  if (!result.ok) throw new Error(`expected ok, got ${result.status} ${result.reason}: ${result.message}`);
  return result;
}

/** Peak resident memory growth while `fn` runs, from Linux's VmHWM (reset through clear_refs). */
async function peakGrowth<T>(fn: () => Promise<T>): Promise<{ value: T; growth: number }> {
  const status = () => readFileSync("/proc/self/status", "utf8");
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status())![1]) * 1024;
  Bun.gc(true);
  writeFileSync("/proc/self/clear_refs", "5"); // resets VmHWM to the current VmRSS
  const base = kib("VmRSS");
  const value = await fn();
  return { value, growth: kib("VmHWM") - base };
}

describe("identity", () => {
  test("a body without Content-Encoding is returned as sent", async () => {
    const result = ok(await readRequestBody(post(payload), 1 * MiB));
    expect(result.encoding).toBeNull();
    expect(Buffer.from(result.bytes).equals(Buffer.from(payload))).toBe(true);
  });

  test("`identity`, in any case and with spaces, is no encoding", async () => {
    const result = ok(await readRequestBody(post(payload, { "content-encoding": "  IdEntity " }), 1 * MiB));
    expect(result.encoding).toBeNull();
    expect(result.bytes.byteLength).toBe(payload.byteLength);
  });

  test("a declared Content-Length over the limit is refused 413 without reading a byte", async () => {
    const { stream, state } = chunked([new Uint8Array(10)]);
    const request = new Request(ENDPOINT, { method: "POST", headers: { "content-length": String(2 * MiB) }, body: stream });
    const result = await readRequestBody(request, 1 * MiB);
    expect(result).toMatchObject({ ok: false, status: 413, reason: "body_too_large", bodySize: 2 * MiB, bodyRead: false });
    expect(state.pulls).toBe(0);
  });

  test("a chunked body is read incrementally and refused 413 once past the limit, cancelling the reader", async () => {
    const { stream, state } = chunked([], { repeat: { chunk: new Uint8Array(64 * 1024), times: 64 } }); // 4 MiB
    const result = await readRequestBody(post(stream), 1 * MiB);
    expect(result).toMatchObject({ ok: false, status: 413, reason: "body_too_large", bodySize: 1 * MiB + 64 * 1024, bodyRead: false });
    expect(state.pulls).toBe(17);
    expect(state.cancelled).toBe(true);
  });

  test("a chunked body of exactly the limit is accepted, whole", async () => {
    const { stream } = chunked([new Uint8Array(600).fill(1), new Uint8Array(400).fill(2)]);
    const result = ok(await readRequestBody(post(stream), 1000));
    expect(result.bytes.byteLength).toBe(1000);
    expect(result.bytes[599]).toBe(1);
    expect(result.bytes[600]).toBe(2);
  });

  test("a connection that closes mid-body is 400 incomplete_body", async () => {
    const { stream } = chunked([new Uint8Array(100), new Uint8Array(100)], { failAfter: 2 });
    const result = await readRequestBody(post(stream), 1 * MiB);
    expect(result).toMatchObject({ ok: false, status: 400, reason: "incomplete_body", bodySize: 200, bodyRead: false });
  });
});

describe("compressed bodies", () => {
  const cases = [
    ["gzip", "gzip", zlib.gzipSync(payload)],
    ["x-gzip", "gzip", zlib.gzipSync(payload)],
    ["deflate", "deflate", zlib.deflateSync(payload)],
    ["deflate", "deflate", zlib.deflateRawSync(payload)], // raw deflate, as many clients send
    ["br", "br", zlib.brotliCompressSync(payload)],
  ] as const;

  test.each(cases)("Content-Encoding %s round-trips (reported as %s)", async (header, name, compressed) => {
    const result = ok(await readRequestBody(post(compressed, { "content-encoding": header }), 1 * MiB));
    expect(result.encoding).toBe(name);
    expect(Buffer.from(result.bytes).equals(Buffer.from(payload))).toBe(true);
  });

  test("the raw deflate case really is raw (not zlib format)", () => {
    expect(() => zlib.inflateSync(zlib.deflateRawSync(payload))).toThrow();
  });

  test("a chunked compressed body is read, then decompressed", async () => {
    const compressed = zlib.gzipSync(payload);
    const { stream } = chunked([compressed.subarray(0, 7), compressed.subarray(7, 30), compressed.subarray(30)]);
    const result = ok(await readRequestBody(post(stream, { "content-encoding": "gzip" }), 1 * MiB));
    expect(Buffer.from(result.bytes).equals(Buffer.from(payload))).toBe(true);
  });

  test("Content-Encoding is case-insensitive and trimmed: ` GZIP `", async () => {
    const result = ok(await readRequestBody(post(zlib.gzipSync(payload), { "content-encoding": " GZIP " }), 1 * MiB));
    expect(result.encoding).toBe("gzip");
    expect(result.bytes.byteLength).toBe(payload.byteLength);
  });

  test("`identity` entries in a list are ignored: `identity , gzip` is gzip", async () => {
    const result = ok(await readRequestBody(post(zlib.gzipSync(payload), { "content-encoding": "identity , gzip" }), 1 * MiB));
    expect(result.encoding).toBe("gzip");
    expect(result.bytes.byteLength).toBe(payload.byteLength);
  });

  describe.each([
    ["gzip", zlib.gzipSync],
    ["deflate", zlib.deflateSync],
    ["br", zlib.brotliCompressSync],
  ] as const)("%s at the limit", (encoding, compress) => {
    const limit = 100_000;
    const text = (n: number) => new Uint8Array(n).map((_, i) => 97 + ((i * 7) % 26));

    test("exactly `limit` decompressed bytes are accepted", async () => {
      const result = ok(await readRequestBody(post(compress(text(limit)), { "content-encoding": encoding }), limit));
      expect(result.bytes.byteLength).toBe(limit);
    });

    test("one byte more is refused 413 after reading the (small) compressed body", async () => {
      const compressed = compress(text(limit + 1));
      expect(compressed.byteLength).toBeLessThan(limit); // the decompressed size is what trips
      const result = await readRequestBody(post(compressed, { "content-encoding": encoding }), limit);
      expect(result).toMatchObject({ ok: false, status: 413, reason: "body_too_large", bodySize: compressed.byteLength, bodyRead: true });
    });
  });

  test("the compressed bytes are limited too: a declared length over the limit is 413 unread", async () => {
    const compressed = zlib.gzipSync(randomBytes(2000));
    const result = await readRequestBody(post(compressed, { "content-encoding": "gzip", "content-length": String(compressed.byteLength) }), 1000);
    expect(result).toMatchObject({ ok: false, status: 413, reason: "body_too_large", bodySize: compressed.byteLength, bodyRead: false });
  });
});

describe("compression bombs", () => {
  const bombs: Record<string, Buffer> = {};
  beforeAll(() => {
    const zeros = new Uint8Array(256 * MiB);
    bombs.gzip = zlib.gzipSync(zeros);
    bombs.deflate = zlib.deflateSync(zeros);
    bombs.br = zlib.brotliCompressSync(zeros, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } });
  });

  test("the memory probe sees a transient allocation (so the bounds below mean something)", async () => {
    const { growth } = await peakGrowth(async () => {
      const big = new Uint8Array(256 * MiB).fill(1);
      return big[12345];
    });
    expect(growth).toBeGreaterThan(200 * MiB);
  });

  test.each(["gzip", "deflate", "br"])("a %s bomb (256 MiB of zeros, limit 1 MiB) is refused 413 with bounded output", async (encoding) => {
    const bomb = bombs[encoding]!;
    expect(bomb.byteLength).toBeLessThan(1 * MiB);
    const request = post(bomb, { "content-encoding": encoding });
    const { value: result, growth } = await peakGrowth(() => readRequestBody(request, 1 * MiB));
    expect(result).toMatchObject({ ok: false, status: 413, reason: "body_too_large", bodySize: bomb.byteLength, bodyRead: true });
    // Decompressing the whole bomb would need 256 MiB; stopping at the limit needs about 1 MiB.
    expect(growth).toBeLessThan(48 * MiB);
  });
});

describe("refused encodings and bad data", () => {
  const gz = zlib.gzipSync(payload);

  test.each([
    ["corrupt gzip", "gzip", Buffer.from("this is not gzip at all")],
    ["truncated gzip", "gzip", gz.subarray(0, gz.byteLength - 6)],
    ["gzip with a flipped byte", "gzip", Buffer.from(gz).fill(0xff, 12, 14)],
    ["trailing garbage after gzip", "gzip", Buffer.concat([gz, Buffer.from("zzzz")])],
    ["corrupt deflate", "deflate", Buffer.from([0x78, 0x9c, 0xff, 0xff, 0xff, 0xff])],
    ["corrupt br", "br", Buffer.from("garbage!!!")],
    ["an empty gzip body", "gzip", new Uint8Array(0)],
  ] as const)("%s is 400 invalid_encoding", async (_, encoding, body) => {
    const result = await readRequestBody(post(body, { "content-encoding": encoding }), 1 * MiB);
    expect(result).toMatchObject({ ok: false, status: 400, reason: "invalid_encoding", bodySize: body.byteLength, bodyRead: true });
  });

  test.each(["zstd", "compress", "gzip, br", "br,gzip", "gzip, gzip"])("Content-Encoding `%s` is 415 without reading the body", async (encoding) => {
    const { stream, state } = chunked([gz]);
    const result = await readRequestBody(post(stream, { "content-encoding": encoding }), 1 * MiB);
    expect(result).toMatchObject({ ok: false, status: 415, reason: "unsupported_encoding", bodyRead: false });
    expect(state.pulls).toBe(0);
  });

  test("an already consumed body is a bug, thrown, not a client refusal", async () => {
    const request = post(payload);
    await request.arrayBuffer();
    await expect(readRequestBody(request, 1 * MiB)).rejects.toThrow(/already read/);
  });
});

describe("over a socket", () => {
  let server: ReturnType<typeof Bun.serve>;
  beforeAll(() => {
    server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      async fetch(request) {
        const limit = Number(new URL(request.url).searchParams.get("limit") ?? MiB);
        const result = await readRequestBody(request, limit);
        if (!result.ok) return Response.json(result, { status: result.status, headers: result.bodyRead ? {} : { connection: "close" } });
        return Response.json({ encoding: result.encoding, text: new TextDecoder().decode(result.bytes) });
      },
    });
  });
  afterAll(() => server.stop(true));

  test.each([
    ["gzip", zlib.gzipSync(payload)],
    ["deflate", zlib.deflateRawSync(payload)],
    ["br", zlib.brotliCompressSync(payload)],
  ] as const)("a %s body sent with fetch arrives compressed and is decompressed", async (encoding, compressed) => {
    const response = await fetch(server.url, { method: "POST", headers: { "content-encoding": encoding }, body: compressed });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ encoding, text: new TextDecoder().decode(payload) });
  });

  test("a chunked gzip upload is decompressed", async () => {
    const compressed = zlib.gzipSync(payload);
    const { stream } = chunked([compressed.subarray(0, 10), compressed.subarray(10)]);
    const response = await fetch(server.url, { method: "POST", headers: { "content-encoding": "gzip" }, body: stream });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { text: string }).text).toBe(new TextDecoder().decode(payload));
  });

  test("a gzip bomb over the socket is 413", async () => {
    const bomb = zlib.gzipSync(new Uint8Array(64 * MiB));
    const response = await fetch(`${server.url}?limit=${MiB}`, { method: "POST", headers: { "content-encoding": "gzip" }, body: bomb });
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ reason: "body_too_large", bodySize: bomb.byteLength, bodyRead: true });
  });
});
