import { randomBytes } from 'node:crypto';
import type { TokenHolder } from '../bearer-auth.js';

/** A signed-in browser: whose token it signed in with, and when it was last used. */
export interface PanelSession {
  holder: TokenHolder;
  createdAt: number;
  lastSeenAt: number;
}

/** Idle this long, a session ends; the operator signs in again. */
export const SESSION_IDLE_MS = 8 * 60 * 60 * 1000;
/** However busy, a session ends this long after sign-in. */
export const SESSION_MAX_MS = 24 * 60 * 60 * 1000;
/** More sessions than this (a script signing in in a loop) push out the least recently used. */
const MAX_SESSIONS = 1_000;

/**
 * The panel's sign-ins, in memory: the cookie carries only a random id (32 bytes), never the token,
 * so a cookie that leaks ends with sign-out, idleness or a restart, and the token stays unknown.
 * A restart signs everyone out, which for an admin panel is the safe side.
 */
export class PanelSessions {
  private readonly sessions = new Map<string, PanelSession>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A new session for this token holder; returns its id (the cookie's value). */
  open(holder: TokenHolder): string {
    const id = randomBytes(32).toString('base64url');
    const at = this.now();
    this.sessions.set(id, { holder, createdAt: at, lastSeenAt: at });
    if (this.sessions.size > MAX_SESSIONS) {
      // Map keeps insertion order and find() re-inserts on use: the first key is the least recently used.
      const oldest = this.sessions.keys().next().value as string;
      this.sessions.delete(oldest);
    }
    return id;
  }

  /** The live session with this id (and marks it used), or null. */
  find(id: string | undefined): PanelSession | null {
    if (id === undefined) return null;
    const session = this.sessions.get(id);
    if (!session) return null;
    const at = this.now();
    if (at - session.lastSeenAt > SESSION_IDLE_MS || at - session.createdAt > SESSION_MAX_MS) {
      this.sessions.delete(id);
      return null;
    }
    session.lastSeenAt = at;
    this.sessions.delete(id);
    this.sessions.set(id, session);
    return session;
  }

  close(id: string | undefined): void {
    if (id !== undefined) this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }
}
