// A stand-in for the app forwarding delivers to: a real HTTP server on loopback that verifies every
// request with the `standardwebhooks` package, records it, and answers as the test tells it to.
import { Webhook } from "standardwebhooks";

export interface Received {
  id: string;
  eventId: number;
  attempt: number;
  event: string | null;
  installation: string | null;
  body: string;
  headers: Record<string, string>;
  at: number;
}

export type Answer = { status: number; headers?: Record<string, string>; delayMs?: number } | "hang" | "close";

export interface Sink {
  url: string;
  received: Received[];
  /** Verified requests only; anything that failed verification is counted here. */
  unverified: number;
  /** How to answer the next request (default: 200). */
  answer: (request: Received) => Answer;
  stop(): void;
}

export function startSink(secrets: string[]): Sink {
  const verifiers = secrets.map((secret) => new Webhook(secret));
  const sink: Sink = {
    url: "",
    received: [],
    unverified: 0,
    answer: () => ({ status: 200 }),
    stop: () => server.stop(true),
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 30,
    async fetch(request, server) {
      const body = await request.text();
      const headers = Object.fromEntries(request.headers);
      // What an app does: verify with any one of its secrets, or refuse.
      const verified = verifiers.some((webhook) => {
        try {
          webhook.verify(body, headers);
          return true;
        } catch {
          return false;
        }
      });
      if (!verified) {
        sink.unverified++;
        return new Response("bad signature", { status: 401 });
      }
      let installation: string | null = null;
      try {
        installation = (JSON.parse(body) as { installation?: { id?: string } }).installation?.id ?? null;
      } catch {}
      const received: Received = {
        id: headers["webhook-id"]!,
        eventId: Number(headers["x-icr-receiver-event-id"]),
        attempt: Number(headers["x-icr-receiver-attempt"]),
        event: headers["x-icr-event"] ?? null,
        installation,
        body,
        headers,
        at: Date.now(),
      };
      const answer = sink.answer(received);
      if (answer === "close") {
        server.timeout(request, 1);
        return new Promise<Response>(() => {});
      }
      if (answer === "hang") return new Promise<Response>((resolve) => setTimeout(() => resolve(new Response("late")), 30_000));
      if (answer.delayMs !== undefined) await Bun.sleep(answer.delayMs);
      if (answer.status >= 200 && answer.status < 300) sink.received.push(received);
      return new Response(null, { status: answer.status, headers: answer.headers });
    },
  });
  sink.url = `http://127.0.0.1:${server.port}/icr`;
  return sink;
}
