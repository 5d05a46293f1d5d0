import type { SMTPServerSession } from 'smtp-server';
import { verifyPassword } from './passwords.js';

/**
 * What stands between AUTH and password guessing. Each password check runs scrypt (~60 ms, 32 MiB)
 * on libuv's thread pool, which the spool's WAL fsync uses too, so unchecked guessing both tries
 * passwords and slows every commit. The guard:
 *
 * - closes a connection after `maxFailuresPerConnection` failures;
 * - locks out a client address after `maxFailuresPerClient` failures, and a username after
 *   `maxFailuresPerUser`, within `failureWindowSeconds`: their next tries are refused without
 *   running scrypt, until failures drop out of the window;
 * - runs at most `maxConcurrentVerifications` scrypt checks at once, the rest wait their turn,
 *   so the thread pool always has threads left for fsync.
 */
export interface AuthLimitSettings {
  maxFailuresPerConnection: number;
  maxFailuresPerClient: number;
  maxFailuresPerUser: number;
  failureWindowSeconds: number;
  maxConcurrentVerifications: number;
}

export type Lockout = 'client' | 'user';

/** Addresses and usernames tracked at most; the least recently failed are forgotten first. */
const MAX_TRACKED_KEYS = 100_000;

/** Failure times per key within a sliding window, in a map of bounded size. */
class FailureWindow {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  private recent(key: string): number[] {
    const times = this.failures.get(key);
    if (!times) return [];
    const since = this.now() - this.windowMs;
    const recent = times.filter((time) => time > since);
    if (recent.length === 0) this.failures.delete(key);
    else if (recent.length !== times.length) this.failures.set(key, recent);
    return recent;
  }

  reached(key: string): boolean {
    return this.recent(key).length >= this.limit;
  }

  add(key: string): void {
    // Only the last `limit` times matter: memory per key stays bounded whatever the attacker does.
    const times = [...this.recent(key), this.now()].slice(-this.limit);
    this.failures.delete(key);
    this.failures.set(key, times);
    if (this.failures.size > MAX_TRACKED_KEYS) this.failures.delete(this.failures.keys().next().value as string);
  }
}

export class AuthGuard {
  private readonly byClient: FailureWindow;
  private readonly byUser: FailureWindow;
  private readonly failuresOnConnection = new WeakMap<SMTPServerSession, number>();
  private slotsTaken = 0;
  private checking = 0;
  private readonly waiting: Array<() => void> = [];
  /** scrypt checks run so far, and the most that ever ran at once (metrics, tests). */
  readonly stats = { verifications: 0, peakConcurrentVerifications: 0 };

  constructor(
    private readonly settings: AuthLimitSettings,
    now: () => number = Date.now,
  ) {
    const windowMs = settings.failureWindowSeconds * 1000;
    this.byClient = new FailureWindow(settings.maxFailuresPerClient, windowMs, now);
    this.byUser = new FailureWindow(settings.maxFailuresPerUser, windowMs, now);
  }

  /** Why this try is refused without checking the password, or null when it may go ahead. */
  lockout(client: string, username: string): Lockout | null {
    if (this.byClient.reached(client)) return 'client';
    if (this.byUser.reached(username)) return 'user';
    return null;
  }

  /** Records a failed try; true when the connection has used up its tries and must be closed. */
  failed(session: SMTPServerSession, username: string): boolean {
    this.byClient.add(session.remoteAddress);
    this.byUser.add(username);
    return this.refused(session);
  }

  /** Counts a refused try against the connection; true when it must be closed. */
  refused(session: SMTPServerSession): boolean {
    const failures = (this.failuresOnConnection.get(session) ?? 0) + 1;
    this.failuresOnConnection.set(session, failures);
    return failures >= this.settings.maxFailuresPerConnection;
  }

  /** Checks a password against its hash, waiting for a free slot first. */
  async verify(password: string, hash: string): Promise<boolean> {
    await this.acquireSlot();
    this.checking++;
    this.stats.verifications++;
    this.stats.peakConcurrentVerifications = Math.max(this.stats.peakConcurrentVerifications, this.checking);
    try {
      return await verifyPassword(password, hash);
    } finally {
      this.checking--;
      this.releaseSlot();
    }
  }

  private async acquireSlot(): Promise<void> {
    if (this.slotsTaken < this.settings.maxConcurrentVerifications) {
      this.slotsTaken++;
      return;
    }
    // The slot is handed over by releaseSlot, so no newcomer can slip in between.
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private releaseSlot(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.slotsTaken--;
  }
}
