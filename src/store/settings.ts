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

/** A value kept in the settings table, or undefined when none is. */
export function readSetting(db: Database, key: string): string | undefined {
  return db.prepare('SELECT value FROM settings WHERE key = ?').pluck().get(key) as string | undefined;
}

/** Keeps a value in the settings table (replacing the one there). Call inside the caller's transaction. */
export function writeSetting(db: Database, key: string, value: string): void {
  db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
}
