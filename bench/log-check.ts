// After a receiver run: is every delivery that got a 2xx in the log?
//
// wrk's callbacks only count answers (they cannot tell which delivery an answer belongs to), so
// the check is by counts, and exact enough for what it guards: every delivery sent in a run is
// distinct, so the log must hold one event and one non-duplicate delivery row per stored request,
// at least as many as were answered 2xx (more only by the few still in flight when wrk stopped),
// and never more than were taken from the pools.
import { Database } from "bun:sqlite";

export interface LogCheck {
  /** 2xx answers the load generator received. */
  acknowledged: number;
  /** Deliveries taken from the pools: the most the log can hold. */
  generated: number;
  deliveries: number;
  events: number;
  duplicates: number;
  /** Acknowledged deliveries missing from the log (must be 0). */
  missing: number;
  integrity: string;
  problems: string[];
}

export function checkLog(dbPath: string, acknowledged: number, generated: number): LogCheck {
  // Read-write open: the receiver has stopped; if it had not checkpointed, SQLite recovers the WAL.
  const db = new Database(dbPath);
  try {
    const count = (sql: string) => db.query<{ n: number }, []>(sql).get()!.n;
    const deliveries = count("SELECT count(*) AS n FROM deliveries");
    const events = count("SELECT count(*) AS n FROM events");
    const duplicates = count("SELECT count(*) AS n FROM deliveries WHERE duplicate <> 0");
    const integrity = db.query<{ quick_check: string }, []>("PRAGMA quick_check").get()!.quick_check;
    const missing = Math.max(0, acknowledged - deliveries);
    const problems: string[] = [];
    if (missing > 0) problems.push(`${missing} acknowledged (2xx) deliveries are not in the log (${deliveries} rows for ${acknowledged} 2xx)`);
    if (deliveries > generated) problems.push(`the log holds ${deliveries} deliveries but only ${generated} were sent`);
    if (duplicates > 0) problems.push(`${duplicates} deliveries were stored as duplicates, but every delivery sent was distinct`);
    if (events !== deliveries) problems.push(`${events} events for ${deliveries} distinct deliveries`);
    if (integrity !== "ok") problems.push(`PRAGMA quick_check: ${integrity}`);
    return { acknowledged, generated, deliveries, events, duplicates, missing, integrity, problems };
  } finally {
    db.close();
  }
}
