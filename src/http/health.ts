// Liveness and readiness for load balancers and systemd checks: unauthenticated, so they say
// nothing about the data, only whether the receiver can take a delivery.
import type { Database } from "bun:sqlite";
import { Elysia } from "elysia";

/** Whether the log can take a write right now, without waiting for a lock another process holds. */
export function logWritable(sqlite: Database, busyTimeoutMs: number): boolean {
  try {
    sqlite.run("PRAGMA busy_timeout = 0");
    sqlite.run("BEGIN IMMEDIATE");
    sqlite.run("ROLLBACK");
    return true;
  } catch {
    return false;
  } finally {
    sqlite.run(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  }
}

export const health = ({ sqlite, busyTimeoutMs }: { sqlite: Database; busyTimeoutMs: number }) =>
  new Elysia({ name: "health" })
    .get("/healthz", () => ({ status: "ok" }))
    .get("/readyz", ({ set }) => {
      if (logWritable(sqlite, busyTimeoutMs)) return { status: "ready" };
      set.status = 503;
      return { error: "log_unavailable", message: "the event log cannot be written" };
    });
