// Forwarding as the receiver runs it: the forwarding thread, told of every commit so that a new
// event leaves within milliseconds, and stopped with the receiver (requests in flight settle first).
import type { ForwardingConfig } from "../config.ts";
import type { Checkpoints } from "../log/database.ts";
import { FORWARDER_WORKER_URL } from "../workers.ts";
import type { Attempt } from "./forwarder.ts";
import type { ForwarderReply, ForwarderRequest } from "./forwarder-worker.ts";

export interface Forwarding {
  /** New events are in the log. */
  poke(): void;
  stop(): Promise<void>;
}

export async function startForwarding(
  path: string,
  config: ForwardingConfig,
  {
    busyTimeoutMs = 5000,
    checkpoints = "receiver",
    userAgent,
    onAttempt,
  }: { busyTimeoutMs?: number; checkpoints?: Checkpoints; userAgent: string; onAttempt: (attempt: Attempt) => void },
): Promise<Forwarding> {
  const worker = new Worker(FORWARDER_WORKER_URL);
  const post = (request: ForwarderRequest) => worker.postMessage(request);
  const replies = (handle: (reply: ForwarderReply) => void) => worker.addEventListener("message", ({ data }: MessageEvent<ForwarderReply>) => handle(data));
  replies((reply) => reply.type === "attempt" && onAttempt(reply.attempt));
  await new Promise<void>((resolve, reject) => {
    replies((reply) => (reply.type === "started" ? resolve() : reply.type === "failed" ? reject(new Error(reply.message)) : undefined));
    worker.addEventListener("error", (event) => reject(new Error(event.message)), { once: true });
    const { destinations, ...settings } = config;
    post({ type: "start", path, busyTimeoutMs, checkpoints, destinations, settings, userAgent });
  });
  // Commits come in bursts: one poke a turn is enough.
  let poked = false;
  return {
    poke() {
      if (poked) return;
      poked = true;
      setImmediate(() => {
        poked = false;
        post({ type: "poke" });
      });
    },
    async stop() {
      const stopped = new Promise<void>((resolve) => replies((reply) => reply.type === "stopped" && resolve()));
      post({ type: "stop" });
      await stopped;
      worker.terminate();
    },
  };
}
