import { randomUUID } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import { readSetting } from './settings.js';

/** The settings key that says this store is shared (store.shared.url): every process using it then queues its changes. */
export const SHARED_SETTING = 'shared.enabled';

const outboxes = new WeakMap<Database, Statement>();

/**
 * Whether changes to shared state (the suppression lists, the allowlist, DKIM keys) are also to
 * be queued for the shared store. The relay writes the setting at start, before any stage reads
 * it, so the CLI's changes are shipped too, by the running relay (src/shared/change-sync.ts).
 */
export function isStoreShared(db: Database): boolean {
  return readSetting(db, SHARED_SETTING) === '1';
}

/**
 * Queues one change for the shared store, in the caller's transaction (so it is queued exactly
 * when the change itself commits). `change` is JSON with a `kind`; a random uid lets the shared
 * store keep it once however often it is shipped.
 */
export function queueSharedChange(db: Database, change: { kind: string }, at: string): void {
  let insert = outboxes.get(db);
  if (!insert) {
    insert = db.prepare('INSERT INTO shared_outbox (uid, at, change) VALUES (?, ?, ?)');
    outboxes.set(db, insert);
  }
  insert.run(randomUUID(), at, JSON.stringify(change));
}
