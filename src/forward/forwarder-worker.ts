// The forwarding thread: every destination's Forwarder, on a connection of its own, so that a slow
// app, a retry storm or a wait for the log's write lock never holds up the thread that answers ICR.
import type { Destination, ForwardingConfig } from "../config.ts";
import { closeDatabase, openDatabase, type Checkpoints, type EventLogDatabase } from "../log/database.ts";
import { Forwarder, type Attempt } from "./forwarder.ts";

export type ForwarderRequest =
  | {
      type: "start";
      path: string;
      busyTimeoutMs: number;
      checkpoints: Checkpoints;
      destinations: Destination[];
      settings: Omit<ForwardingConfig, "destinations">;
      userAgent: string;
    }
  | { type: "poke" }
  | { type: "stop" };
export type ForwarderReply = { type: "started" } | { type: "failed"; message: string } | { type: "attempt"; attempt: Attempt } | { type: "stopped" };

declare const self: Worker;
const reply = (message: ForwarderReply) => self.postMessage(message);
let log: EventLogDatabase | undefined;
let forwarders: Forwarder[] = [];

self.onmessage = async ({ data: request }: MessageEvent<ForwarderRequest>) => {
  if (request.type === "start") {
    try {
      // Migrated already, by the thread that started this one.
      log = openDatabase(request.path, { busyTimeoutMs: request.busyTimeoutMs, migrate: false, checkpoints: request.checkpoints });
      // Progress, not deliveries: a commit of it lost to a power cut means events sent again,
      // which at-least-once allows; the fsync it would cost is the ingest thread's to spend.
      log.sqlite.run("PRAGMA synchronous = NORMAL");
      forwarders = request.destinations.map(
        (destination) =>
          new Forwarder(log!, destination, {
            settings: request.settings,
            userAgent: request.userAgent,
            onAttempt: (attempt) => reply({ type: "attempt", attempt }),
          }),
      );
      for (const forwarder of forwarders) forwarder.start();
      reply({ type: "started" });
    } catch (error) {
      reply({ type: "failed", message: error instanceof Error ? error.message : String(error) });
    }
    return;
  }
  if (request.type === "poke") {
    for (const forwarder of forwarders) forwarder.poke();
    return;
  }
  await Promise.all(forwarders.map((forwarder) => forwarder.stop()));
  if (log !== undefined) closeDatabase(log);
  reply({ type: "stopped" });
};
