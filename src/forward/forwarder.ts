// Forwarding: every event of the log, to one destination, retried until the app has taken it.
// The events of one installation go in log order (a lane each); lanes proceed independently, up
// to the destination's concurrency. What is done is committed to the forward_* tables, so a
// restart resumes where the last commit left off: at-least-once, with a stable webhook-id.
import type { SQLQueryBindings } from "bun:sqlite";
import type { Destination, ForwardingConfig } from "../config.ts";
import type { EventLogDatabase } from "../log/database.ts";
import { KEYS_COPIED_THROUGH } from "../log/event-keys.ts";
import { parseEnvelope } from "../verify/delivery.ts";
import { webhookId, webhookSignature } from "./standard-webhooks.ts";

/** What one attempt came to, for the metrics and the log (never a body, never a secret). */
export interface Attempt {
  destination: string;
  eventId: number;
  attempt: number;
  outcome: "delivered" | "failed" | "dead";
  /** The HTTP status, or null when there was none (a connection error, a timeout). */
  status: number | null;
  error: string | null;
  seconds: number;
  replay: boolean;
}

export interface ForwarderOptions {
  settings: Omit<ForwardingConfig, "destinations">;
  userAgent: string;
  onAttempt?: (attempt: Attempt) => void;
  now?: () => number;
  random?: () => number;
}

/** Events read per discovery step, and events a lane keeps in memory (the rest stay in the log). */
const DISCOVER_BATCH = 1000;
const LANE_QUEUE = 64;
/** Lanes held in memory at most: past it, discovery waits for lanes to drain. */
const MAX_LANES = 10_000;
/** How often replays (the CLI and the HTTP API write them) and other writers' events are looked for. */
const REPLAY_POLL_MS = 1000;
/**
 * A destination is forwarded to by one receiver at a time: it holds a lease, renewed well before it
 * runs out, released when it stops. A receiver without it waits and tries again, so that during an
 * upgrade's hand-over the new one takes over once the old one has stopped (or its lease ran out).
 */
const LEASE_MS = 10_000;
const LEASE_RENEW_MS = 2000;
const STANDBY_POLL_MS = 1000;

interface Lane {
  key: string;
  /** The last event of the lane that is done. */
  through: number;
  /** Ids discovered after `through`, in order; `complete` when it holds every one of them. */
  queue: number[];
  complete: boolean;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  busy: boolean;
  timer?: Timer;
}

interface EventToSend {
  id: number;
  receivedAt: string;
  event: string | null;
  payload: string | null;
  payloadSha256: string;
  unparsedReason: string | null;
  envelopeMismatch: number;
}

const laneKey = (installationId: string | null) => installationId ?? "";

/** The delay before retry `attempt` (1: the first): the backoff, then doubling with full jitter, capped. */
export function retryDelay(attempt: number, backoffMs: number, maxBackoffMs: number, random: () => number = Math.random): number {
  if (attempt <= 1) return Math.min(backoffMs, maxBackoffMs);
  const cap = Math.min(maxBackoffMs, backoffMs * 2 ** (attempt - 1));
  return Math.max(backoffMs, Math.round(random() * cap));
}

/** `Retry-After` as milliseconds from `now`: seconds, or an HTTP date; null when absent or unreadable. */
export function retryAfterMs(header: string | null, now: number): number | null {
  if (header === null) return null;
  if (/^\d{1,9}$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** One destination's forwarding, on its own connection to the log. */
export class Forwarder {
  private discoveredThrough = 0;
  private delivered = 0;
  private readonly lanes = new Map<string, Lane>();
  private readonly ready = new Set<Lane>();
  private readonly replaysInFlight = new Set<number>();
  private inFlight = 0;
  private stopped = false;
  private dirty: (() => void)[] = [];
  private flushScheduled = false;
  private replayTimer: Timer | undefined;
  private leaseTimer: Timer | undefined;
  private leading = false;
  private readonly owner = crypto.randomUUID();
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly q;
  /** The destination's event names, bound after the other parameters of a query that filters by them. */
  private readonly only: SQLQueryBindings[];

  constructor(
    private readonly log: EventLogDatabase,
    private readonly destination: Destination,
    private readonly options: ForwarderOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    const { sqlite } = log;
    const only = destination.events === null ? "" : `AND event IN (${destination.events.map(() => "?").join(", ")})`;
    const names = (destination.events ?? []) as SQLQueryBindings[];
    // Plain statements: these are the forwarding tables' own queries, run on every event.
    this.only = names;
    this.q = {
      destination: sqlite.prepare<{ discovered_through: number; delivered: number }, [string]>(
        "SELECT discovered_through, delivered FROM forward_destinations WHERE name = ?",
      ),
      createDestination: sqlite.prepare<never, [string, number]>(
        "INSERT INTO forward_destinations (name, discovered_through, delivered) VALUES (?, ?, 0)",
      ),
      saveDestination: sqlite.prepare<never, [number, number, string]>(
        "UPDATE forward_destinations SET discovered_through = ?, delivered = ? WHERE name = ?",
      ),
      lastEventId: sqlite.prepare<{ id: number | null }, []>("SELECT max(id) AS id FROM events"),
      claim: sqlite.prepare<never, [string, number, string, string, number]>(
        "UPDATE forward_destinations SET owner = ?, lease_until = ? WHERE name = ? AND (owner IS NULL OR owner = ? OR lease_until IS NULL OR lease_until < ?)",
      ),
      release: sqlite.prepare<never, [string, string]>("UPDATE forward_destinations SET lease_until = 0 WHERE name = ? AND owner = ?"),
      lanes: sqlite.prepare<{ installation: string; through: number; attempts: number; next_attempt_at: number; last_error: string | null }, [string]>(
        "SELECT installation, through, attempts, next_attempt_at, last_error FROM forward_lanes WHERE destination = ?",
      ),
      saveLane: sqlite.prepare<never, [string, string, number, number, number, string | null]>(
        `INSERT INTO forward_lanes (destination, installation, through, attempts, next_attempt_at, last_error) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (destination, installation) DO UPDATE SET through = excluded.through, attempts = excluded.attempts,
           next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error`,
      ),
      dropLane: sqlite.prepare<never, [string, string]>("DELETE FROM forward_lanes WHERE destination = ? AND installation = ?"),
      discover: sqlite.prepare<{ id: number; installation_id: string | null }, SQLQueryBindings[]>(
        `SELECT id, installation_id FROM events WHERE id > ? ${only} ORDER BY id LIMIT ${DISCOVER_BATCH}`,
      ),
      // Through the installation index up to the keys' last copied row, then the few events past it.
      laneByKeys: sqlite.prepare<{ id: number }, SQLQueryBindings[]>(
        `SELECT event_id AS id FROM event_keys WHERE installation_id IS ? AND event_id > ? AND event_id <= ? ${only} ORDER BY event_id LIMIT ${LANE_QUEUE}`,
      ),
      laneRecent: sqlite.prepare<{ id: number }, SQLQueryBindings[]>(
        `SELECT id FROM events WHERE id > ? AND id <= ? AND installation_id IS ? ${only} ORDER BY id LIMIT ${LANE_QUEUE}`,
      ),
      keysThrough: sqlite.prepare<{ id: number }, []>(`SELECT ${KEYS_COPIED_THROUGH} AS id`),
      event: sqlite.prepare<EventToSend, [number]>(
        `SELECT id, received_at AS receivedAt, event, payload, payload_sha256 AS payloadSha256,
                unparsed_reason AS unparsedReason, envelope_mismatch AS envelopeMismatch FROM events WHERE id = ?`,
      ),
      firstBody: sqlite.prepare<{ raw_body: string | null }, [number]>("SELECT raw_body FROM deliveries WHERE event_id = ? ORDER BY id LIMIT 1"),
      dead: sqlite.prepare<never, [string, number, number, string, number]>(
        "INSERT OR REPLACE INTO forward_dead_letters (destination, event_id, attempts, last_error, dead_at) VALUES (?, ?, ?, ?, ?)",
      ),
      replays: sqlite.prepare<{ event_id: number; requested_at: number; attempts: number }, [string, number]>(
        "SELECT event_id, requested_at, attempts FROM forward_replays WHERE destination = ? AND next_attempt_at <= ? ORDER BY event_id LIMIT 100",
      ),
      replayFailed: sqlite.prepare<never, [number, number, string, string, number]>(
        "UPDATE forward_replays SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE destination = ? AND event_id = ?",
      ),
      replayDone: sqlite.prepare<never, [string, number]>("DELETE FROM forward_replays WHERE destination = ? AND event_id = ?"),
    };
  }

  /**
   * Takes (or renews) the destination's lease; false when another receiver holds it. A new
   * destination starts at the end of the log.
   */
  private claim(): boolean {
    const now = this.now();
    return this.log.sqlite.transaction(() => {
      if (this.q.destination.get(this.destination.name) === null) {
        this.q.createDestination.run(this.destination.name, this.q.lastEventId.get()?.id ?? 0);
      }
      return this.q.claim.run(this.owner, now + LEASE_MS, this.destination.name, this.owner, now).changes === 1;
    }).immediate();
  }

  /** Starts forwarding once this receiver holds the destination's lease, and keeps it. */
  start(): void {
    if (this.stopped) return;
    let claimed = false;
    try {
      claimed = this.claim();
    } catch {
      // The log is busy: try again in a moment.
    }
    if (!claimed) {
      this.leaseTimer = setTimeout(() => this.start(), STANDBY_POLL_MS);
      return;
    }
    this.leading = true;
    this.leaseTimer = setInterval(() => this.renew(), LEASE_RENEW_MS);
    this.load();
  }

  private renew(): void {
    try {
      if (this.claim()) return;
    } catch {
      return; // busy: the next renewal, well within the lease
    }
    // Another receiver holds it now (this one stalled past its lease): stand by, and start over
    // from the committed progress when it comes back.
    this.standBy();
    this.leaseTimer = setTimeout(() => this.start(), STANDBY_POLL_MS);
  }

  private standBy(): void {
    this.leading = false;
    clearInterval(this.leaseTimer);
    clearInterval(this.replayTimer);
    for (const lane of this.lanes.values()) clearTimeout(lane.timer);
    this.lanes.clear();
    this.ready.clear();
    this.dirty = [];
  }

  /** Loads the destination's committed progress and starts sending. */
  private load(): void {
    const saved = this.q.destination.get(this.destination.name)!;
    this.discoveredThrough = saved.discovered_through;
    this.delivered = saved.delivered;
    for (const row of this.q.lanes.all(this.destination.name)) {
      const lane: Lane = {
        key: row.installation,
        through: row.through,
        queue: [],
        complete: false,
        attempts: row.attempts,
        nextAttemptAt: row.next_attempt_at,
        lastError: row.last_error,
        busy: false,
      };
      this.lanes.set(lane.key, lane);
      this.wake(lane);
    }
    this.poke();
    // Replays, and events another receiver appended to this log (a hand-over): no commit of this
    // one's pokes for those.
    this.replayTimer = setInterval(() => {
      this.pollReplays();
      this.poke();
    }, REPLAY_POLL_MS);
  }

  /** New events may be in the log: look for them and send what can be sent. */
  poke(): void {
    if (this.stopped || !this.leading) return;
    this.discover();
    this.dispatch();
  }

  /** Stops sending; resolves once the requests in flight have settled and their outcome is committed. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.replayTimer);
    clearInterval(this.leaseTimer);
    clearTimeout(this.leaseTimer);
    for (const lane of this.lanes.values()) clearTimeout(lane.timer);
    while (this.inFlight > 0) await Bun.sleep(10);
    this.flush();
    // The next receiver need not wait for the lease to run out.
    if (this.leading) this.q.release.run(this.destination.name, this.owner);
  }

  private discover(): void {
    const from = this.discoveredThrough;
    this.discoverBatches();
    // The lanes created and the progress past the events they got, in one commit.
    if (this.discoveredThrough !== from) this.change(() => this.saveDestination());
  }

  private discoverBatches(): void {
    while (this.lanes.size < MAX_LANES) {
      const rows = this.q.discover.all(this.discoveredThrough, ...this.only);
      if (rows.length === 0) return;
      for (const { id, installation_id } of rows) {
        const key = laneKey(installation_id);
        let lane = this.lanes.get(key);
        if (lane === undefined) {
          if (this.lanes.size >= MAX_LANES) return;
          lane = { key, through: id - 1, queue: [], complete: true, attempts: 0, nextAttemptAt: 0, lastError: null, busy: false };
          this.lanes.set(key, lane);
          const created = lane;
          this.change(() => this.saveLane(created));
        }
        if (lane.complete && lane.queue.length < LANE_QUEUE) lane.queue.push(id);
        else lane.complete = false;
        this.discoveredThrough = id;
        this.wake(lane);
      }
      if (rows.length < DISCOVER_BATCH) return;
    }
  }

  /** The next event of a lane, reading the log when its queue ran dry; null when it has none yet. */
  private next(lane: Lane): number | null {
    if (lane.queue.length === 0 && !lane.complete) {
      const installation = lane.key === "" ? null : lane.key;
      const keysThrough = Math.min(this.q.keysThrough.get()!.id, this.discoveredThrough);
      let ids = this.q.laneByKeys.all(installation, lane.through, keysThrough, ...this.only).map((r) => r.id);
      if (ids.length < LANE_QUEUE) {
        const from = Math.max(lane.through, keysThrough);
        ids = ids.concat(this.q.laneRecent.all(from, this.discoveredThrough, installation, ...this.only).map((r) => r.id)).slice(0, LANE_QUEUE);
      }
      lane.queue = ids;
      lane.complete = ids.length < LANE_QUEUE;
    }
    return lane.queue[0] ?? null;
  }

  private wake(lane: Lane): void {
    if (lane.busy || this.stopped) return;
    const wait = lane.nextAttemptAt - this.now();
    if (wait > 0) {
      clearTimeout(lane.timer);
      lane.timer = setTimeout(() => {
        lane.timer = undefined;
        this.ready.add(lane);
        this.dispatch();
      }, wait);
      return;
    }
    this.ready.add(lane);
  }

  private dispatch(): void {
    for (const lane of this.ready) {
      if (this.stopped || this.inFlight >= this.options.settings.concurrency) return;
      this.ready.delete(lane);
      if (lane.busy) continue;
      const id = this.next(lane);
      if (id === null) {
        // Nothing left to send: the lane goes until its installation has a new event.
        if (lane.attempts === 0 && lane.timer === undefined) {
          this.lanes.delete(lane.key);
          this.change(() => this.q.dropLane.run(this.destination.name, lane.key));
        }
        continue;
      }
      lane.busy = true;
      void this.send(id, lane.attempts + 1, false).then((result) => this.settleLane(lane, id, result));
    }
  }

  private settleLane(lane: Lane, id: number, result: SendResult): void {
    lane.busy = false;
    // The lease went while this was in flight: the other receiver's progress counts now.
    if (!this.leading) return;
    const { settings } = this.options;
    if (result.outcome === "failed") {
      lane.attempts++;
      lane.lastError = result.error;
      lane.nextAttemptAt = this.now() + (result.retryAfterMs ?? retryDelay(lane.attempts, settings.backoffMs, settings.maxBackoffMs, this.random));
      this.change(() => this.saveLane(lane));
    } else {
      if (result.outcome === "dead") {
        const attempts = lane.attempts + 1;
        const error = result.error ?? "dead";
        this.change(() => this.q.dead.run(this.destination.name, id, attempts, error, this.now()));
      } else {
        this.delivered++;
      }
      lane.queue.shift();
      lane.through = id;
      lane.attempts = 0;
      lane.nextAttemptAt = 0;
      lane.lastError = null;
      this.change(() => {
        this.saveLane(lane);
        this.saveDestination();
      });
    }
    this.wake(lane);
    this.dispatch();
  }

  private pollReplays(): void {
    if (this.stopped || !this.leading) return;
    for (const replay of this.q.replays.all(this.destination.name, this.now())) {
      if (this.inFlight >= this.options.settings.concurrency) return;
      if (this.replaysInFlight.has(replay.event_id)) continue;
      this.replaysInFlight.add(replay.event_id);
      void this.send(replay.event_id, replay.attempts + 1, true, replay.requested_at).then((result) => {
        this.replaysInFlight.delete(replay.event_id);
        const { settings } = this.options;
        if (result.outcome === "failed") {
          const attempts = replay.attempts + 1;
          const next = this.now() + (result.retryAfterMs ?? retryDelay(attempts, settings.backoffMs, settings.maxBackoffMs, this.random));
          this.change(() => this.q.replayFailed.run(attempts, next, result.error ?? "failed", this.destination.name, replay.event_id));
        } else {
          if (result.outcome === "delivered") this.delivered++;
          const error = result.error ?? "dead";
          this.change(() => {
            this.q.replayDone.run(this.destination.name, replay.event_id);
            if (result.outcome === "dead") this.q.dead.run(this.destination.name, replay.event_id, replay.attempts + 1, error, this.now());
            this.saveDestination();
          });
        }
      });
    }
  }

  /**
   * One attempt at one event. `since`: when its maximum age started (the event's receipt, or the
   * replay's request).
   */
  private async send(id: number, attempt: number, replay: boolean, since?: number): Promise<SendResult> {
    this.inFlight++;
    const started = performance.now();
    let result: SendResult;
    const event = this.q.event.get(id);
    if (event === null) {
      result = { outcome: "dead", status: null, error: "no such event in the log", retryAfterMs: null };
    } else {
      result = await this.post(event, attempt);
      const age = this.now() - (since ?? Date.parse(event.receivedAt));
      if (result.outcome === "failed" && age >= this.options.settings.maxAgeMs) result = { ...result, outcome: "dead" };
    }
    this.inFlight--;
    this.options.onAttempt?.({
      destination: this.destination.name,
      eventId: id,
      attempt,
      outcome: result.outcome,
      status: result.status,
      error: result.error,
      seconds: (performance.now() - started) / 1000,
      replay,
    });
    return result;
  }

  private async post(event: EventToSend, attempt: number): Promise<SendResult> {
    const { settings, userAgent } = this.options;
    const parsed = event.unparsedReason === null;
    // An unparsed event's payload is no JSON to forward: its signedData goes, exactly as received,
    // in the only JSON an app can count on ({"signedData": …}), so that any verifier parses it.
    const body = parsed ? event.payload! : JSON.stringify({ signedData: this.signedDataOf(event.id) });
    const id = webhookId(event.payloadSha256);
    const timestamp = Math.floor(this.now() / 1000);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": userAgent,
      "webhook-id": id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": webhookSignature(settings.secrets, id, timestamp, body),
      "x-icr-receiver-event-id": String(event.id),
      "x-icr-receiver-attempt": String(attempt),
      "x-icr-envelope-mismatch": event.envelopeMismatch ? "true" : "false",
    };
    if (parsed) headers["x-icr-event"] = event.event!;
    else headers["x-icr-unparsed-reason"] = event.unparsedReason!;
    // A timer of our own, cleared once the answer is in: AbortSignal.timeout's would live on for the
    // whole timeout after every request, thousands of them (and their signals) during a catch-up.
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new DOMException("timed out", "TimeoutError")), settings.timeoutMs);
    let response: Response;
    try {
      response = await fetch(this.destination.url, {
        method: "POST",
        headers,
        body,
        redirect: "manual",
        signal: timeout.signal,
      });
      await response.body?.cancel().catch(() => {});
    } catch (error) {
      const name = (error as Error).name;
      const message = name === "TimeoutError" ? `no answer within ${settings.timeoutMs} ms` : (error as Error).message || name;
      return { outcome: "failed", status: null, error: message, retryAfterMs: null };
    } finally {
      clearTimeout(timer);
    }
    if (response.status >= 200 && response.status < 300) return { outcome: "delivered", status: response.status, error: null, retryAfterMs: null };
    // The app says this destination is gone for good: no retry, a dead letter to replay later.
    if (response.status === 410) return { outcome: "dead", status: 410, error: "HTTP 410 Gone", retryAfterMs: null };
    return { outcome: "failed", status: response.status, error: `HTTP ${response.status}`, retryAfterMs: retryAfterMs(response.headers.get("retry-after"), this.now()) };
  }

  private signedDataOf(eventId: number): string {
    const raw = this.q.firstBody.get(eventId)?.raw_body;
    const envelope = raw === null || raw === undefined ? null : parseEnvelope(Buffer.from(raw, "utf8"));
    return envelope?.ok ? envelope.envelope.signedData : "";
  }

  private saveLane(lane: Lane): void {
    this.q.saveLane.run(this.destination.name, lane.key, lane.through, lane.attempts, lane.nextAttemptAt, lane.lastError);
  }

  private saveDestination(): void {
    this.q.saveDestination.run(this.discoveredThrough, this.delivered, this.destination.name);
  }

  /** A change of state, committed with the others of this turn in one transaction. */
  private change(write: () => void): void {
    if (!this.leading) return;
    this.dirty.push(write);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const writes = this.dirty;
    this.dirty = [];
    if (writes.length === 0) return;
    try {
      this.log.sqlite.transaction(() => {
        for (const write of writes) write();
      }).immediate();
    } catch {
      // The log is busy or full: the same changes, in the same order, a moment later.
      this.dirty = writes.concat(this.dirty);
      this.flushScheduled = true;
      setTimeout(() => this.flush(), 100);
    }
  }
}

interface SendResult {
  outcome: "delivered" | "failed" | "dead";
  status: number | null;
  error: string | null;
  retryAfterMs: number | null;
}
