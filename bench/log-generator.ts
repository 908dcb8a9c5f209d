// The deliveries of the long-lived app's log (big-log.ts builds it from them): event i of the log,
// its payload, its signed delivery and its line of `export --deliveries` NDJSON. Only what decides
// the log's content is here: this file's text is part of the log's cache key.
import { signDelivery } from "../src/verify/sign-delivery.ts";

/** The (event, organization) pair the query benchmark pages through. */
export const QUERY_EVENT = "warehouseTransaction";
export const QUERY_ORGANIZATION = "org-1";

/** The webhook secret the cached log's deliveries are signed with: a fixture of the benchmark (the
 * receiver serving that log must verify repeats of them), not anybody's credential. */
export const LOG_FIXTURE_SECRET = "icr-receiver-bench-log-fixture-secret";

/** ICR's event names, the bench's organizations, and the transaction fields' values: shared with deliveries.ts. */
export const EVENTS = ["warehouseTransaction", "organizationTransaction", "installed", "newPermissionsAccepted", "suspended", "unsuspended", "uninstalled"] as const;
export const ORGANIZATIONS = ["org-1", "org-2", "org-3", "org-4"] as const;
export const STATUSES = ["processed", "failed", "pending_queue"] as const;
export const TYPES = ["transfer", "transfer_retire", "retire"] as const;
export const BASE_TIME = Date.parse("2025-01-01T00:00:00.000Z");

export interface LogSpec {
  events: number;
  /** Of every 10 events, how many are the queried (event, organization) pair. */
  matchingPerTen: number;
}

export interface EventSpec {
  event: string;
  organization: string;
  uid: string;
  n: number;
}

/** Event i of the log: `matchingPerTen` of every ten are the queried pair, the rest spread over
 * every other (event, organization) combination. */
export function eventSpec(i: number, matchingPerTen: number): EventSpec {
  if (i % 10 < matchingPerTen) return { event: QUERY_EVENT, organization: QUERY_ORGANIZATION, uid: `q-${i.toString(36)}`, n: i };
  let event: string = EVENTS[i % EVENTS.length]!;
  const organization = ORGANIZATIONS[Math.floor(i / EVENTS.length) % ORGANIZATIONS.length]!;
  if (event === QUERY_EVENT && organization === QUERY_ORGANIZATION) event = "organizationTransaction";
  return { event, organization, uid: `q-${i.toString(36)}`, n: i };
}

/**
 * A payload of about 250 bytes in ICR's shape (the organization inside the installation, where the
 * receiver reads it), with the fields the log's columns take: what is measured on this log (start-up,
 * memory, queries) depends on the number of events, not on their size.
 */
export function compactPayload({ event, organization, uid, n }: EventSpec): string {
  const installation = `"installation":{"id":"inst-${organization}","organization":{"id":"${organization}","name":"Organization ${organization.slice(4)}"},"appId":"1"}`;
  const sender = `"sender":{"id":"user-${uid}"}`;
  if (event !== "warehouseTransaction" && event !== "organizationTransaction") return `{"event":"${event}",${installation},${sender}}`;
  const transaction = `"transaction":{"id":"tx-${uid}","status":"${STATUSES[n % 3]}","type":"${TYPES[(n >> 2) % 3]}","amount":${1 + (n % 997)}}`;
  return `{"event":"${event}",${transaction},${installation},${sender}}`;
}

/** Delivery i as ICR would have sent it, signed with LOG_FIXTURE_SECRET. */
export function logDelivery(spec: EventSpec) {
  return signDelivery(compactPayload(spec), LOG_FIXTURE_SECRET);
}

/** Receive time of event i: 50 ms apart from 2025-01-01. */
const receivedAt = (i: number) => new Date(BASE_TIME + i * 50).toISOString();

/** One line of `export --deliveries` NDJSON, as `import` reads it. */
export function importLine(i: number, matchingPerTen: number): string {
  const { body, signature } = logDelivery(eventSpec(i, matchingPerTen));
  return (
    `{"deliveries":[{"receivedAt":"${receivedAt(i)}","remoteAddress":"127.0.0.1",` +
    `"headers":{"content-type":"application/json","x-icr-signature-256":"${signature}"},"rawBody":${JSON.stringify(body)}}]}\n`
  );
}
