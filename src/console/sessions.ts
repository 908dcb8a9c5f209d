// The console's sessions: a random id in a cookie, held in memory only (a restart logs everyone
// out), each with an idle and an absolute limit, at most `maxSessions` at once, and a CSRF token
// of its own for every form that changes state.
import { randomBytes } from "node:crypto";

export interface SessionLimits {
  /** A session unused this long ends (ms). */
  idleMs: number;
  /** A session ends this long after its login, however busy (ms). */
  absoluteMs: number;
  /** Sessions held at once; a login past it ends the least recently used one. */
  maxSessions: number;
}

export const SESSION_LIMITS: SessionLimits = { idleMs: 30 * 60_000, absoluteMs: 12 * 3_600_000, maxSessions: 64 };

export interface Session {
  readonly id: string;
  /** Put in every form that changes state; compared with `sameSecret` (src/http/auth.ts). */
  readonly csrfToken: string;
  readonly createdAt: number;
  lastUsedAt: number;
  /**
   * What the last action did, for the next page to say once. Kept here, not in the redirect's
   * URL, so that a link cannot make the console claim something happened.
   */
  flash: string | null;
}

const randomId = () => randomBytes(32).toString("base64url");

export class Sessions {
  /** In order of last use, oldest first (a Map keeps insertion order; a use re-inserts). */
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly limits: SessionLimits = SESSION_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  start(): Session {
    const now = this.now();
    this.dropExpired(now);
    while (this.sessions.size >= this.limits.maxSessions) this.sessions.delete(this.sessions.keys().next().value!);
    const session: Session = { id: randomId(), csrfToken: randomId(), createdAt: now, lastUsedAt: now, flash: null };
    this.sessions.set(session.id, session);
    return session;
  }

  /** The live session with this id, its idle time restarted; null when there is none or it expired. */
  use(id: string | undefined): Session | null {
    if (id === undefined) return null;
    const session = this.sessions.get(id);
    if (session === undefined) return null;
    const now = this.now();
    this.sessions.delete(id);
    if (this.expired(session, now)) return null;
    session.lastUsedAt = now;
    this.sessions.set(id, session);
    return session;
  }

  end(id: string): void {
    this.sessions.delete(id);
  }

  private expired(session: Session, now: number): boolean {
    return now - session.lastUsedAt >= this.limits.idleMs || now - session.createdAt >= this.limits.absoluteMs;
  }

  private dropExpired(now: number): void {
    for (const session of this.sessions.values()) if (this.expired(session, now)) this.sessions.delete(session.id);
  }
}
