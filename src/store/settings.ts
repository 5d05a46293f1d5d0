import { randomBytes } from 'node:crypto';
import type { Database } from 'better-sqlite3';

/**
 * A value Rebound keeps in the store: the configured one when there is one, else the stored one,
 * else a new random one stored now (first start). INSERT OR IGNORE keeps two processes that start
 * at once on the same value.
 */
export function storedSecret(db: Database, key: string, configured: string | null): string {
  if (configured !== null) return configured;
  db.prepare('INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)').run(key, randomBytes(32).toString('base64url'));
  return (db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string }).value;
}
