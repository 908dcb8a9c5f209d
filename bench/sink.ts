// The forwarding benchmark's destination: a tiny Bun.serve on 127.0.0.1, started as a process of its
// own (like the peers) so that it shares no event loop with the benchmark. It reads each request's
// body and answers 204; it does NOT verify the Standard Webhooks signatures (a real app would: that
// cost is the app's, not the receiver's).
//
//   SINK_PORT  port to listen on (127.0.0.1 only)
//   SINK_DOWN  "1": start "down", answering 503 with Retry-After: 1 to every forwarded request
//              (an outage the receiver retries once a second) until POST /_sink/up
//
// GET /count answers {"count": <requests answered 2xx>, "refused": <requests answered 503>,
// "up": <bool>}; POST /_sink/up and POST /_sink/down switch the mode. Every other request is a
// forwarded event.
const port = Number(process.env.SINK_PORT);
if (!Number.isInteger(port) || port <= 0) throw new Error("SINK_PORT is not set");

let up = process.env.SINK_DOWN !== "1";
let count = 0;
let refused = 0;

Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/count" && request.method === "GET") return Response.json({ count, refused, up });
    if (pathname === "/_sink/up" && request.method === "POST") return (up = true), new Response(null, { status: 204 });
    if (pathname === "/_sink/down" && request.method === "POST") return (up = false), new Response(null, { status: 204 });
    await request.arrayBuffer();
    if (!up) {
      refused++;
      return new Response("down for the benchmark\n", { status: 503, headers: { "retry-after": "1" } });
    }
    count++;
    return new Response(null, { status: 204 });
  },
});
