// An AcceptedDelivery as the webhook route hands it to the log, for tests that drive the writer's
// appender directly: a payload and whatever facts the test cares about, the rest left empty.
import type { AcceptedDelivery } from "../../src/log/append.ts";

export function acceptedDelivery(payload: string, facts: Partial<AcceptedDelivery> = {}): AcceptedDelivery {
  return {
    event: "installed",
    unparsedReason: null,
    installationId: null,
    organizationId: null,
    appId: null,
    transactionId: null,
    transactionStatus: null,
    transactionType: null,
    transactionAmount: null,
    receivedAt: new Date().toISOString(),
    remoteAddress: "127.0.0.1",
    headers: "{}",
    rawBody: null,
    payload,
    payloadSha256: new Bun.CryptoHasher("sha256").update(payload).digest("hex"),
    secretLabel: "default",
    envelopeMismatch: false,
    ...facts,
  };
}
