// The read side of the log: filtered, keyset-paginated listing and one event with its deliveries.
import { and, asc, desc, eq, getTableColumns, gt, gte, inArray, isNotNull, isNull, lt, lte, max, sql, type SQL } from "drizzle-orm";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";
import { canonicalBody } from "../verify/delivery.ts";
import { KEYS_COPIED_THROUGH } from "./event-keys.ts";
import { redactCredentials } from "./headers.ts";
import type { Drizzle } from "./database.ts";
import { deliveries, eventKeys, events, type EventRow } from "./schema.ts";

export interface EventFilter {
  event?: string;
  installation?: string;
  organization?: string;
  /** ISO-8601 UTC with milliseconds, inclusive. */
  since?: string;
  /** ISO-8601 UTC with milliseconds, exclusive. */
  until?: string;
  /** Only events whose signed data was (true) or was not (false) a readable event. */
  parsed?: boolean;
  order: "asc" | "desc";
  limit: number;
  /** Id of the last event of the previous page. */
  after?: number;
}

export interface EventView {
  id: number;
  receivedAt: string;
  /** Null for an unparsed event. */
  event: string | null;
  /** False when the signed data is not a JSON object with a string event (stored all the same). */
  parsed: boolean;
  /** Unparsed events only: why (`not_json`, …). */
  unparsedReason?: string;
  /** Unparsed events only: the decoded signed data as text, null where it is not base64 or UTF-8. */
  payloadText?: string | null;
  installationId: string | null;
  organizationId: string | null;
  appId: string | null;
  transaction: { id: string | null; status: string | null; type: string | null; amount: number | null } | null;
  /** The signed payload's JSON text as stored (null when unparsed); `eventJson` splices it in as `payload`. */
  payloadJson: string | null;
  secretLabel: string;
  envelopeMismatch: boolean;
  deliveryCount: number;
}

export interface DeliveryView {
  id: number;
  receivedAt: string;
  remoteAddress: string | null;
  headers: Record<string, string>;
  rawBody: string;
  secretLabel: string;
  envelopeMismatch: boolean;
  duplicate: boolean;
}

// Every column of an event but the two that are the log's own business (the digest that finds
// repeats, the chain hash), and how many deliveries it has.
const { payloadSha256: _digest, chainHash: _chain, ...storedColumns } = getTableColumns(events);
const eventColumns = {
  ...storedColumns,
  // Written out: inside a select list Drizzle would leave both ids unqualified.
  deliveryCount: sql<number>`(SELECT count(*) FROM "deliveries" WHERE "deliveries"."event_id" = "events"."id")`,
};

type EventRecord = Omit<EventRow, "payloadSha256" | "chainHash"> & { deliveryCount: number };

function toView(row: EventRecord): EventView {
  const { id, receivedAt, event, unparsedReason, transactionId, transactionStatus, transactionType, transactionAmount, payload, ...rest } = row;
  const hasTransaction = [transactionId, transactionStatus, transactionType, transactionAmount].some((v) => v !== null);
  const parsed = unparsedReason === null;
  return {
    id,
    receivedAt,
    event,
    parsed,
    ...(!parsed && { unparsedReason, payloadText: payload }),
    ...rest,
    transaction: hasTransaction
      ? { id: transactionId, status: transactionStatus, type: transactionType, amount: transactionAmount }
      : null,
    payloadJson: parsed ? payload : null,
  };
}

/**
 * An event (with its deliveries, if given) as JSON, the stored payload spliced in verbatim as
 * `payload`. Never parsed and re-serialised: that costs time on every page, and a payload nested
 * deeper than the serialiser's stack (signed, so stored) would turn a query into a 500.
 */
export function eventJson({ payloadJson, ...rest }: EventView & { deliveries?: DeliveryView[] }): string {
  return `${JSON.stringify(rest).slice(0, -1)},"payload":${payloadJson ?? "null"}}`;
}

/** A page of `list` as the API answers it. */
export function pageJson(page: { events: EventView[]; next: string | null }): string {
  return `{"events":[${page.events.map(eventJson).join(",")}],"next":${JSON.stringify(page.next)}}`;
}

/** An installation's last lifecycle event in the log (`installed` or `uninstalled`). */
export interface InstallationFact {
  installationId: string;
  event: "installed" | "uninstalled";
  eventId: number;
  receivedAt: string;
}

/** A transaction's last `warehouseTransaction` / `organizationTransaction` event in the log. */
export interface TransactionFact {
  transactionId: string;
  /** The signed payload's `transaction.status` and `transaction.updatedAt` (null when absent). */
  status: string | null;
  updatedAt: string | null;
  eventId: number;
  receivedAt: string;
}

/** What the log knows of installations and transactions, for a comparison with ICR's API. */
export interface ReconcileFacts {
  /** When the log's first event arrived (null: an empty log). */
  firstReceivedAt: string | null;
  installations: InstallationFact[];
  transactions: TransactionFact[];
}

const LIFECYCLE_EVENTS = `'installed', 'uninstalled'`;
const TRANSACTION_EVENTS = `'warehouseTransaction', 'organizationTransaction'`;

/**
 * The events named in `names` with `columns`, through event_keys' index on the event name up to
 * its last row and from `events` itself past it (the newest events, not yet copied there).
 */
const eventsNamed = (names: string, columns: string) => `
  SELECT ${columns} FROM "event_keys" k JOIN "events" e ON e.id = k.event_id WHERE k.event IN (${names})
  UNION ALL
  SELECT ${columns} FROM "events" e WHERE e.id > ${KEYS_COPIED_THROUGH} AND e.event IN (${names})`;

export class EventQueries {
  constructor(private readonly db: Drizzle) {}

  /**
   * One page of events and the cursor of the next page (null on the last one). A filter on a key
   * or a time reads event_keys up to its last row, and `events` itself past it: the newest events,
   * whose keys the writer has not copied yet (at most a fraction of a second's worth).
   */
  list(filter: EventFilter): { events: EventView[]; next: string | null } {
    const ascending = filter.order === "asc";
    const byId = ascending ? asc : desc;
    const limit = filter.limit + 1;
    // An unparsed event is one without an event name, in event_keys as in events.
    const keyed = (keys: typeof eventKeys | typeof events, id: SQLiteColumn) => [
      filter.event === undefined ? undefined : eq(keys.event, filter.event),
      filter.parsed === undefined ? undefined : filter.parsed ? isNotNull(keys.event) : isNull(keys.event),
      filter.installation === undefined ? undefined : eq(keys.installationId, filter.installation),
      filter.organization === undefined ? undefined : eq(keys.organizationId, filter.organization),
      filter.since === undefined ? undefined : gte(keys.receivedAt, filter.since),
      filter.until === undefined ? undefined : lt(keys.receivedAt, filter.until),
      filter.after === undefined ? undefined : ascending ? gt(id, filter.after) : lt(id, filter.after),
    ];
    const fromEvents = (...conditions: (SQL | undefined)[]) =>
      this.db
        .select(eventColumns)
        .from(events)
        .where(and(...keyed(events, events.id), ...conditions))
        .orderBy(byId(events.id))
        .limit(limit)
        .all();

    let rows: EventRecord[];
    const { event, installation, organization, since, until } = filter;
    if ([event, installation, organization, since, until].every((value) => value === undefined)) {
      rows = fromEvents();
    } else {
      const watermark = this.db.select({ id: max(eventKeys.eventId) }).from(eventKeys).get()?.id ?? 0;
      const indexed = () =>
        this.db
          .select(eventColumns)
          .from(eventKeys)
          .innerJoin(events, eq(events.id, eventKeys.eventId))
          .where(and(...keyed(eventKeys, eventKeys.eventId), lte(eventKeys.eventId, watermark)))
          .orderBy(byId(eventKeys.eventId))
          .limit(limit)
          .all();
      const recent = () => fromEvents(gt(events.id, watermark));
      // Pages run across the watermark in id order: below it first going up, above it going down.
      rows = ascending ? indexed() : recent();
      if (rows.length < limit) rows = rows.concat(ascending ? recent() : indexed()).slice(0, limit);
    }
    const page = rows.slice(0, filter.limit);
    const next = rows.length > filter.limit ? String(page[page.length - 1]!.id) : null;
    return { events: page.map(toView), next };
  }

  /** One event with every accepted delivery of it, oldest first; null if there is no such event. */
  get(id: number): (EventView & { deliveries: DeliveryView[] }) | null {
    const row = this.db.select(eventColumns).from(events).where(eq(events.id, id)).get();
    if (row === undefined) return null;
    return { ...toView(row), deliveries: this.deliveriesOf([id]).get(id) ?? [] };
  }

  /** The accepted deliveries of these events, oldest first, by event id. */
  deliveriesOf(eventIds: number[]): Map<number, DeliveryView[]> {
    const byEvent = new Map<number, DeliveryView[]>();
    const rows = this.db
      .select({ delivery: deliveries, payload: events.payload })
      .from(deliveries)
      .innerJoin(events, eq(events.id, deliveries.eventId))
      .where(inArray(deliveries.eventId, eventIds))
      .orderBy(asc(deliveries.id))
      .all();
    for (const { delivery: { eventId, chainHash: _, headers, rawBody, ...delivery }, payload } of rows) {
      const list = byEvent.get(eventId) ?? [];
      // A NULL raw_body was the canonical form of the event's payload, which rebuilds it exactly.
      // Rows stored before credentials were dropped at the door still hold them: never shown.
      list.push({ ...delivery, headers: redactCredentials(JSON.parse(headers)), rawBody: rawBody ?? canonicalBody(payload!)! });
      byEvent.set(eventId, list);
    }
    return byEvent;
  }

  /**
   * Each installation's last lifecycle event and each transaction's last event, in log order.
   * SQLite takes a bare column of a `max()` aggregate from the row holding the maximum.
   */
  reconcileFacts(): ReconcileFacts {
    const first = this.db.select({ receivedAt: events.receivedAt }).from(events).orderBy(asc(events.id)).limit(1).get();
    const installations = this.db.all<InstallationFact>(
      sql.raw(`SELECT installation_id AS installationId, event, max(id) AS eventId, received_at AS receivedAt
        FROM (${eventsNamed(LIFECYCLE_EVENTS, "e.id, e.installation_id, e.event, e.received_at")})
        WHERE installation_id IS NOT NULL GROUP BY installation_id ORDER BY installation_id`),
    );
    const transactions = this.db.all<TransactionFact>(
      sql.raw(`SELECT transaction_id AS transactionId, transaction_status AS status, max(id) AS eventId, received_at AS receivedAt,
          json_extract(payload, '$.transaction.updatedAt') AS updatedAt
        FROM (${eventsNamed(TRANSACTION_EVENTS, "e.id, e.transaction_id, e.transaction_status, e.received_at, e.payload")})
        WHERE transaction_id IS NOT NULL GROUP BY transaction_id ORDER BY transaction_id`),
    );
    return { firstReceivedAt: first?.receivedAt ?? null, installations, transactions };
  }
}
