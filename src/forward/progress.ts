// What an operator asks of forwarding, read from (and, for a replay, written to) the forward_*
// tables: how far each destination is, its dead letters, and replays. Used by the CLI on the file
// and by the receiver's HTTP API and metrics alike; the forwarder picks replays up within a second.
import type { Database, SQLQueryBindings } from "bun:sqlite";
import type { Destination } from "../config.ts";
import { existsSync } from "node:fs";
import { openDatabase } from "../log/database.ts";
import { KEYS_COPIED_THROUGH } from "../log/event-keys.ts";
import { parseEventFilter } from "../log/event-log.ts";

export interface DestinationStatus {
  name: string;
  url: string;
  /** Events delivered (a 2xx), replays included. */
  delivered: number;
  /** Events in the log not yet delivered or dead-lettered: the lag, in events. */
  pending: number;
  /** Of those, the ones whose last attempt failed (waiting for their retry), and replays waiting. */
  retrying: number;
  deadLetters: number;
  /** Age of the oldest event not yet delivered, in seconds (null: none). */
  oldestUndeliveredAgeSeconds: number | null;
  /** Every event up to this id has been handed to forwarding. */
  discoveredThrough: number;
}

export interface DeadLetter {
  destination: string;
  eventId: number;
  event: string | null;
  receivedAt: string | null;
  attempts: number;
  lastError: string;
  deadAt: string;
}

const only = (destination: Destination, column = "event") =>
  destination.events === null ? "" : `AND ${column} IN (${destination.events.map(() => "?").join(", ")})`;
const names = (destination: Destination) => (destination.events ?? []) as SQLQueryBindings[];
const keysThrough = (sqlite: Database) => sqlite.query<{ id: number }, []>(`SELECT ${KEYS_COPIED_THROUGH} AS id`).get()!.id;

/**
 * Counts and the first id of the events of `destination` in (from, to], of one installation when
 * `installation` is given ("" for none): through event_keys (narrow, indexed by installation) up to
 * its last copied row, and `events` only for the few past it, so a status stays cheap on a backlog
 * of hundreds of thousands.
 */
function waiting(sqlite: Database, destination: Destination, from: number, to: number, installation?: string): { first: number | null; n: number } {
  const copied = keysThrough(sqlite);
  const byInstallation = installation === undefined ? "" : "AND installation_id IS ?";
  const bound = (lo: number, hi: number): SQLQueryBindings[] => [lo, hi, ...(installation === undefined ? [] : [installation === "" ? null : installation]), ...names(destination)];
  const keyed = sqlite
    .query<{ first: number | null; n: number }, SQLQueryBindings[]>(
      `SELECT min(event_id) AS first, count(*) AS n FROM event_keys WHERE event_id > ? AND event_id <= ? ${byInstallation} ${only(destination)}`,
    )
    .get(...bound(from, Math.min(to, copied)))!;
  const recent = sqlite
    .query<{ first: number | null; n: number }, SQLQueryBindings[]>(
      `SELECT min(id) AS first, count(*) AS n FROM events WHERE id > ? AND id <= ? ${byInstallation} ${only(destination)}`,
    )
    .get(...bound(Math.max(from, copied), to))!;
  return { first: keyed.first ?? recent.first, n: keyed.n + recent.n };
}

/** One destination's progress; a destination that never started reports the whole log as pending from its end. */
export function destinationStatus(sqlite: Database, destination: Destination, now = Date.now()): DestinationStatus {
  const row = sqlite
    .query<{ discovered_through: number; delivered: number }, [string]>("SELECT discovered_through, delivered FROM forward_destinations WHERE name = ?")
    .get(destination.name);
  const newest = sqlite.query<{ id: number | null }, []>("SELECT max(id) AS id FROM events").get()?.id ?? 0;
  const discoveredThrough = row?.discovered_through ?? newest;
  const lanes = sqlite
    .query<{ installation: string; through: number; attempts: number }, [string]>("SELECT installation, through, attempts FROM forward_lanes WHERE destination = ?")
    .all(destination.name);
  const undiscovered = waiting(sqlite, destination, discoveredThrough, newest);
  let pending = undiscovered.n;
  let oldest = undiscovered.first;
  let retrying = 0;
  for (const lane of lanes) {
    const inLane = waiting(sqlite, destination, lane.through, discoveredThrough, lane.installation);
    pending += inLane.n;
    if (inLane.first !== null && (oldest === null || inLane.first < oldest)) oldest = inLane.first;
    if (lane.attempts > 0 && inLane.n > 0) retrying++;
  }
  const count = (sql: string) => sqlite.query<{ n: number }, [string]>(sql).get(destination.name)!.n;
  retrying += count("SELECT count(*) AS n FROM forward_replays WHERE destination = ? AND attempts > 0");
  const receivedAt =
    oldest === null ? null : sqlite.query<{ received_at: string }, [number]>("SELECT received_at FROM events WHERE id = ?").get(oldest)?.received_at;
  return {
    name: destination.name,
    url: destination.url,
    delivered: row?.delivered ?? 0,
    pending,
    retrying,
    deadLetters: count("SELECT count(*) AS n FROM forward_dead_letters WHERE destination = ?"),
    oldestUndeliveredAgeSeconds: receivedAt ? Math.max(0, (now - Date.parse(receivedAt)) / 1000) : null,
    discoveredThrough,
  };
}

/** The dead letters, oldest first, of one destination or all. */
export function deadLetters(sqlite: Database, destination?: string): DeadLetter[] {
  return sqlite
    .query<{ destination: string; event_id: number; event: string | null; received_at: string | null; attempts: number; last_error: string; dead_at: number }, SQLQueryBindings[]>(
      `SELECT d.destination, d.event_id, e.event, e.received_at, d.attempts, d.last_error, d.dead_at
       FROM forward_dead_letters d LEFT JOIN events e ON e.id = d.event_id
       ${destination === undefined ? "" : "WHERE d.destination = ?"} ORDER BY d.event_id, d.destination`,
    )
    .all(...(destination === undefined ? [] : [destination]))
    .map((r) => ({
      destination: r.destination,
      eventId: r.event_id,
      event: r.event,
      receivedAt: r.received_at,
      attempts: r.attempts,
      lastError: r.last_error,
      deadAt: new Date(r.dead_at).toISOString(),
    }));
}

/** Which events to send again: one, a time range (of one event name), or every dead letter. */
export type ReplaySelection = { id: number } | { since: string; until?: string; event?: string } | { dead: true };

/** A replay that names no events, or more than one way of naming them. */
export class ReplayChoiceError extends Error {}

/**
 * The replay asked for: exactly one of an event id, `since` (with `until` and `event` if wanted;
 * times as GET /events takes them) or `dead`. Throws ReplayChoiceError, or FilterError for a time
 * or a name that is not one.
 */
export function replaySelection(asked: { id?: number; since?: string; until?: string; event?: string; dead?: boolean }): ReplaySelection {
  const given = [asked.id !== undefined, asked.since !== undefined, asked.dead === true].filter(Boolean).length;
  if (given !== 1 || ((asked.until !== undefined || asked.event !== undefined) && asked.since === undefined)) throw new ReplayChoiceError();
  if (asked.id !== undefined) return { id: asked.id };
  if (asked.dead) return { dead: true };
  const { since, until, event } = parseEventFilter({ since: asked.since, until: asked.until, event: asked.event });
  return { since: since!, until, event };
}

/**
 * Asks for events to be sent again to `destinations` (each only the events its filter takes),
 * keeping their webhook-id; a dead letter replayed stops being one. Returns how many sends were
 * asked for.
 */
export function requestReplay(sqlite: Database, destinations: readonly Destination[], selection: ReplaySelection, now = Date.now()): number {
  const ask = sqlite.prepare<never, [string, number, number, number]>(
    `INSERT INTO forward_replays (destination, event_id, requested_at, attempts, next_attempt_at, last_error)
     VALUES (?, ?, ?, 0, ?, NULL) ON CONFLICT (destination, event_id) DO UPDATE SET requested_at = excluded.requested_at, attempts = 0, next_attempt_at = excluded.next_attempt_at`,
  );
  const undead = sqlite.prepare<never, [string, number]>("DELETE FROM forward_dead_letters WHERE destination = ? AND event_id = ?");
  // Read before the write lock is taken: past event_keys' last row a time is found by reading every
  // row, which on a log whose keys are being rebuilt is most of it, and deliveries would wait.
  const wanted = destinations.map((destination) => ({ destination, ids: replayedIds(sqlite, destination, selection) }));
  return sqlite.transaction(() => {
    let asked = 0;
    for (const { destination, ids } of wanted) {
      for (const id of ids) {
        ask.run(destination.name, id, now, now);
        undead.run(destination.name, id);
        asked++;
      }
    }
    return asked;
  }).immediate();
}

/** The events of `destination` that `selection` names, in log order. */
function replayedIds(sqlite: Database, destination: Destination, selection: ReplaySelection): number[] {
  if ("dead" in selection) {
    return sqlite.query<{ event_id: number }, [string]>("SELECT event_id FROM forward_dead_letters WHERE destination = ?").all(destination.name).map((r) => r.event_id);
  }
  if ("id" in selection) {
    return sqlite
      .query<{ id: number }, SQLQueryBindings[]>(`SELECT id FROM events WHERE id = ? ${only(destination)}`)
      .all(selection.id, ...names(destination))
      .map((r) => r.id);
  }
  // Times are indexed in event_keys: through it up to its last row, past it from events.
  const where = `received_at >= ? ${selection.until === undefined ? "" : "AND received_at < ?"}
    ${selection.event === undefined ? "" : "AND event = ?"} ${only(destination)}`;
  const bounds: SQLQueryBindings[] = [
    selection.since,
    ...(selection.until === undefined ? [] : [selection.until]),
    ...(selection.event === undefined ? [] : [selection.event]),
    ...names(destination),
  ];
  const copied = keysThrough(sqlite);
  return sqlite
    .query<{ id: number }, SQLQueryBindings[]>(
      `SELECT event_id AS id FROM event_keys WHERE ${where} AND event_id <= ?
       UNION ALL SELECT id FROM events WHERE ${where} AND id > ? ORDER BY id`,
    )
    .all(...bounds, copied, ...bounds, copied)
    .map((r) => r.id);
}

/** Forwarding's progress over one connection to the log, for the destinations configured. */
export class ForwardProgress {
  constructor(
    private readonly sqlite: Database,
    readonly destinations: readonly Destination[],
  ) {}

  status(now = Date.now()): DestinationStatus[] {
    return this.destinations.map((destination) => destinationStatus(this.sqlite, destination, now));
  }

  deadLetters(destination?: string): DeadLetter[] {
    if (destination !== undefined) this.named(destination);
    return deadLetters(this.sqlite, destination);
  }

  /** Where one event stands with each destination; null when the log has no such event. */
  ofEvent(eventId: number): EventForwarding[] | null {
    return eventForwarding(this.sqlite, this.destinations, eventId);
  }

  /** Asks for a replay to one destination (by name) or every one; how many sends were asked for. */
  replay(selection: ReplaySelection, destination?: string): number {
    return requestReplay(this.sqlite, destination === undefined ? this.destinations : [this.named(destination)], selection);
  }

  private named(name: string): Destination {
    const found = this.destinations.find((d) => d.name === name);
    if (found === undefined) throw new UnknownDestination(name);
    return found;
  }
}

export class UnknownDestination extends Error {
  constructor(readonly destination: string) {
    super(`no destination named "${destination}"`);
  }
}

/** Opens a connection of forwarding's own to the log (migrated already) for its progress. */
export function openForwardProgress(path: string, destinations: readonly Destination[]): ForwardProgress & { close(): void } {
  if (!existsSync(path)) throw new Error(`no event log at ${path}`);
  const { sqlite } = openDatabase(path, { migrate: false });
  return Object.assign(new ForwardProgress(sqlite, destinations), { close: () => sqlite.close() });
}

/** Where one event stands with one destination. */
export interface EventForwarding {
  destination: string;
  /**
   * `not_sent`: the destination's event filter skips it; `waiting`: not tried yet (behind its
   * installation's earlier events, or not yet discovered); `retrying`: its last attempt failed and
   * it is tried again at `nextAttemptAt`; `replay`: asked to be sent again; `dead`: a dead letter;
   * `delivered`: the destination answered 2xx.
   */
  state: "not_sent" | "waiting" | "retrying" | "replay" | "dead" | "delivered";
  /** Failed attempts so far (of the replay, for a replay). */
  attempts: number;
  /** The last failed attempt's error, with its HTTP status when there was one; null if none. */
  lastError: string | null;
  nextAttemptAt: string | null;
}

/** Where event `eventId` stands with each of `destinations`; null when the log has no such event. */
export function eventForwarding(sqlite: Database, destinations: readonly Destination[], eventId: number): EventForwarding[] | null {
  const event = sqlite.query<{ event: string | null; installation_id: string | null }, [number]>("SELECT event, installation_id FROM events WHERE id = ?").get(eventId);
  if (event === null) return null;
  const installation = event.installation_id ?? "";
  const at = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return destinations.map((destination): EventForwarding => {
    const state = (state: EventForwarding["state"], attempts = 0, lastError: string | null = null, nextAttemptAt: string | null = null) => ({
      destination: destination.name,
      state,
      attempts,
      lastError,
      nextAttemptAt,
    });
    if (destination.events !== null && (event.event === null || !destination.events.includes(event.event))) return state("not_sent");
    const dead = sqlite
      .query<{ attempts: number; last_error: string }, [string, number]>("SELECT attempts, last_error FROM forward_dead_letters WHERE destination = ? AND event_id = ?")
      .get(destination.name, eventId);
    if (dead !== null) return state("dead", dead.attempts, dead.last_error);
    const replay = sqlite
      .query<{ attempts: number; last_error: string | null; next_attempt_at: number }, [string, number]>(
        "SELECT attempts, last_error, next_attempt_at FROM forward_replays WHERE destination = ? AND event_id = ?",
      )
      .get(destination.name, eventId);
    if (replay !== null) return state("replay", replay.attempts, replay.last_error, at(replay.next_attempt_at));
    const discovered = sqlite.query<{ discovered_through: number }, [string]>("SELECT discovered_through FROM forward_destinations WHERE name = ?").get(destination.name);
    if (discovered === null || eventId > discovered.discovered_through) return state("waiting");
    const lane = sqlite
      .query<{ through: number; attempts: number; next_attempt_at: number; last_error: string | null }, [string, string]>(
        "SELECT through, attempts, next_attempt_at, last_error FROM forward_lanes WHERE destination = ? AND installation = ?",
      )
      .get(destination.name, installation);
    // A lane without a row has nothing left to send: every event of it is done.
    if (lane === null || eventId <= lane.through) return state("delivered");
    const next = waiting(sqlite, destination, lane.through, discovered.discovered_through, installation).first;
    return next === eventId && lane.attempts > 0 ? state("retrying", lane.attempts, lane.last_error, at(lane.next_attempt_at)) : state("waiting");
  });
}
