// Liveness and readiness for load balancers and systemd checks: unauthenticated, so they say
// nothing about the data, only whether the receiver can take a delivery.
import { Elysia } from "elysia";

interface HealthOptions {
  /** Whether the log can take a delivery now. */
  writable: () => boolean;
}

export const health = ({ writable }: HealthOptions) =>
  new Elysia({ name: "health" })
    .get("/healthz", () => ({ status: "ok" }))
    .get("/readyz", ({ set }) => {
      if (writable()) return { status: "ready" };
      set.status = 503;
      return { error: "log_unavailable", message: "the event log cannot be written" };
    });
