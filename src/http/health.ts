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

export interface HealthOptions {
  sqlite: Database;
  busyTimeoutMs: number;
  /** True while the last commit failed: a full disk lets BEGIN IMMEDIATE through, not the commit. */
  commitsFailing: () => boolean;
}

export const health = ({ sqlite, busyTimeoutMs, commitsFailing }: HealthOptions) =>
  new Elysia({ name: "health" })
    .get("/healthz", () => ({ status: "ok" }))
    .get("/readyz", ({ set }) => {
      if (!commitsFailing() && logWritable(sqlite, busyTimeoutMs)) return { status: "ready" };
      set.status = 503;
      return { error: "log_unavailable", message: "the event log cannot be written" };
    });
