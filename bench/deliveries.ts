// Distinct, validly signed ICR deliveries of about 1.4 KB (shaped like
// shared/fixtures/warehouse-transaction.json), and the per-thread pool files wrk reads them from.
//
// Each delivery's signed payload carries its wrk thread id and sequence number (installation id,
// transaction id, access-token URL), so no two deliveries of a run are the same signed payload:
// the receiver would count a repeat as a duplicate, which is not a real insert.
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { signDelivery, type SignedDelivery as SignedIcrDelivery } from "../src/verify/sign-delivery.ts";
import { BASE_TIME, EVENTS, ORGANIZATIONS, STATUSES, TYPES } from "./log-generator.ts";

const TRANSACTION_EVENTS = new Set<string>(["warehouseTransaction", "organizationTransaction"]);

export interface DeliverySpec {
  event: string;
  organization: string;
  /** Unique per delivery within a run: part of the sender id and of the transaction id. */
  uid: string;
  /** Drives the fields that merely vary (amounts, timestamps, statuses). */
  n: number;
}

/** signDelivery's signedData, body (the payload's fields plus signedData) and signature header value. */
export interface SignedDelivery extends Pick<SignedIcrDelivery, "signedData" | "body" | "signature"> {
  /** The compact JSON payload, exactly as signed (signedData is its base64). */
  payload: string;
}

const pick = <T>(values: readonly T[], n: number): T => values[n % values.length]!;

/**
 * The compact payload JSON, field order as ICR serialises it. Written as a template rather than
 * JSON.stringify: generation is on the benchmark's critical path (millions of deliveries), and
 * every value here is plain ASCII that needs no escaping, so the text is identical.
 * Non-transaction events have no transaction object; a larger permission set keeps them close
 * in size.
 */
export function payloadJson({ event, organization, uid, n }: DeliverySpec): string {
  const second = new Date(BASE_TIME + n * 1000).toISOString().slice(0, -4); // "YYYY-MM-DDTHH:MM:SS."
  const orgName = `Organization ${organization.replace(/\D/g, "") || "0"}`;
  // One installation per organization, as an app has: the installation index sees a handful of
  // keys, not one per delivery. The delivery's own uid goes into the sender and transaction ids.
  const installation = `inst-${organization}`;
  const installationHead = `"installation":{"id":"${installation}","createdAt":"${second}000Z","updatedAt":"${second}250Z",`;
  const installationTail =
    `"appNameId":"app1","appId":"1",` +
    `"accessTokensUrl":"https://api.carbonregistry.com/app/installations/${installation}/accessTokens"}`;
  const sender = `"sender":{"email":"user@example.com","fullName":"John Doe","id":"user-${uid}"}`;
  if (!TRANSACTION_EVENTS.has(event)) {
    return (
      `{"event":"${event}","state":"",${installationHead}` +
      `"organization":{"id":"${organization}","name":"${orgName}"},` +
      `"permissions":{"organization_info":"VIEW","organization_members":"VIEW","organization_warehouse":"WRITE",` +
      `"organization_inventory":"REQUEST","organization_projects":"VIEW"},${installationTail},${sender}}`
    );
  }
  const creditId = `exPost-2-0x${(Math.imul(n, 2654435761) >>> 0).toString(16).padStart(8, "0")}`;
  return (
    `{"event":"${event}","transaction":{"id":"tx-${uid}","createdAt":"${second}500Z","updatedAt":"${second}750Z",` +
    `"status":"${pick(STATUSES, n)}","type":"${pick(TYPES, n >> 2)}","amount":${1 + (n % 997)},"creditId":"${creditId}"},` +
    `${installationHead}"organization":{"id":"${organization}","name":"${orgName}"},` +
    `"permissions":{"organization_info":"VIEW","organization_inventory":"REQUEST"},${installationTail},${sender}}`
  );
}

/** One signed delivery; `secret` is the webhook secret (HMAC key). */
export function signedDelivery(spec: DeliverySpec, secret: string): SignedDelivery {
  const payload = payloadJson(spec);
  // ICR's own body: the payload's fields, then signedData.
  const { signedData, body, signature } = signDelivery(payload, secret);
  return { payload, signedData, body, signature };
}

/** The raw HTTP/1.1 request wrk sends. No port in Host, so the same bytes go to every server. */
export function httpRequest(delivery: SignedDelivery, path = "/webhook"): string {
  return (
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
    `x-icr-signature-256: ${delivery.signature}\r\nContent-Length: ${Buffer.byteLength(delivery.body)}\r\n\r\n` +
    delivery.body
  );
}

/** POSTs one delivery to a server on this machine, as ICR would. */
export function postDelivery(port: number, delivery: SignedDelivery): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}/webhook`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-icr-signature-256": delivery.signature },
    body: delivery.body,
  });
}

/** The n-th delivery of a wrk thread: events and organizations rotate; the thread id and n make
 * the sender (and transaction) id unique across all threads. */
export function threadSpec(thread: number, n: number): DeliverySpec {
  return {
    event: pick(EVENTS, n),
    organization: pick(ORGANIZATIONS, Math.floor(n / EVENTS.length)),
    uid: `${thread}-${n.toString(36)}`,
    n,
  };
}

interface ThreadFile {
  path: string;
  records: number;
  bytes: number;
}

/**
 * One file of raw HTTP requests ("<bytes>\n<request>" records) per wrk thread, grown on demand.
 * Every new server process reads the files from offset 0 (its database is new, so nothing in them
 * has been sent to it before); successive wrk runs against the same process continue where the
 * previous one stopped.
 */
export class DeliveryPool {
  private readonly files: ThreadFile[];
  private bodyBytes = 0;

  constructor(
    readonly dir: string,
    readonly threads: number,
    private readonly secret: string,
  ) {
    this.files = Array.from({ length: threads }, (_, i) => ({ path: join(dir, `thread-${i}.http`), records: 0, bytes: 0 }));
  }

  /** Where each thread starts reading for a server that has seen nothing yet. */
  threadsStart(): number[] {
    return this.files.map(() => 0);
  }

  /** Deliveries available to each thread. */
  get perThread(): number {
    return Math.min(...this.files.map((f) => f.records));
  }

  get totalRecords(): number {
    return this.files.reduce((sum, f) => sum + f.records, 0);
  }

  get totalBytes(): number {
    return this.files.reduce((sum, f) => sum + f.bytes, 0);
  }

  get meanBodyBytes(): number {
    return this.totalRecords === 0 ? 0 : this.bodyBytes / this.totalRecords;
  }

  /** Grows every thread's file to at least `records` deliveries; returns how many were added. */
  ensure(records: number): number {
    let added = 0;
    for (const [thread, file] of this.files.entries()) {
      if (file.records >= records) continue;
      added += records - file.records;
      this.append(thread, file, Math.ceil(records));
    }
    return added;
  }

  private append(thread: number, file: ThreadFile, target: number): void {
    const fd = openSync(file.path, "a");
    try {
      const CHUNK = 4000; // deliveries per write: ~7 MB, few syscalls, bounded memory
      while (file.records < target) {
        const parts: string[] = [];
        const end = Math.min(target, file.records + CHUNK);
        for (let n = file.records; n < end; n++) {
          const delivery = signedDelivery(threadSpec(thread, n), this.secret);
          const request = httpRequest(delivery);
          this.bodyBytes += delivery.body.length;
          parts.push(`${request.length}\n`, request); // ASCII only: length in characters = bytes
        }
        const chunk = Buffer.from(parts.join(""), "latin1");
        writeSync(fd, chunk);
        file.bytes += chunk.length;
        file.records = end;
      }
      // Flushed now, so no writeback of pool data competes with the servers' fsyncs later.
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
