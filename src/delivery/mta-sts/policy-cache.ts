import type { Database, Statement } from 'better-sqlite3';
import { writeTransaction } from '../../store/write-lock.js';
import type { StsPolicy } from './policy-text.js';

/** A policy as kept in the store: with the TXT id it was fetched for and when it stops counting. */
export interface CachedStsPolicy extends StsPolicy {
  id: string;
  expiresAt: number;
}

interface PolicyRow {
  policy_id: string;
  mode: StsPolicy['mode'];
  mx: string;
  max_age: number;
  expires_at: number;
}

/** The mta_sts_policies table: one policy per recipient domain, kept for its max_age (RFC 8461 5.1). */
export class StsPolicyCache {
  private readonly select: Statement<[string], PolicyRow>;
  private readonly upsert: Statement<[string, string, string, string, number, string, number]>;
  /** Through the relay's write lock, taking turns with the other thread's writes (store/write-lock.ts). */
  private readonly write: (run: () => void) => void;

  constructor(db: Database) {
    this.select = db.prepare('SELECT policy_id, mode, mx, max_age, expires_at FROM mta_sts_policies WHERE domain = ?');
    this.upsert = db.prepare(
      `INSERT INTO mta_sts_policies (domain, policy_id, mode, mx, max_age, fetched_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, mode = excluded.mode, mx = excluded.mx,
         max_age = excluded.max_age, fetched_at = excluded.fetched_at, expires_at = excluded.expires_at`,
    );
    this.write = writeTransaction(db, (run: () => void) => run());
  }

  /** The domain's policy while its max_age lasts; null when there is none or it expired. */
  get(domain: string, now = Date.now()): CachedStsPolicy | null {
    const row = this.select.get(domain);
    if (!row || row.expires_at <= now) return null;
    return { id: row.policy_id, mode: row.mode, mx: JSON.parse(row.mx) as string[], maxAgeSeconds: row.max_age, expiresAt: row.expires_at };
  }

  put(domain: string, id: string, policy: StsPolicy, now = Date.now()): CachedStsPolicy {
    const expiresAt = now + policy.maxAgeSeconds * 1000;
    this.write(() => this.upsert.run(domain, id, policy.mode, JSON.stringify(policy.mx), policy.maxAgeSeconds, new Date(now).toISOString(), expiresAt));
    return { ...policy, id, expiresAt };
  }
}
