import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { DeliveryState } from '../src/delivery/delivery-state.js';
import { openStore } from '../src/store/database.js';
import { RecentContent, recentContentOf } from '../src/store/recent-content.js';
import { Spool } from '../src/store/spool.js';
import { spoolMessage } from './support/spool-message.js';
import { makeTempDir } from './support/temp-dir.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

describe('recent content', () => {
  it('gives a message to each of its batches, then forgets it', () => {
    const recent = new RecentContent(1024);
    recent.add(1, 'Received: x\r\n', Buffer.from('body'), 3);
    expect(recent.take(1, 2)?.raw.toString()).toBe('body');
    expect(recent.take(1, 1)?.raw.toString()).toBe('body');
    expect(recent.take(1, 1)).toBeNull();
  });

  it('drops the oldest messages past its byte budget', () => {
    const recent = new RecentContent(100);
    recent.add(1, '', Buffer.alloc(60), 1);
    recent.add(2, '', Buffer.alloc(60), 1);
    expect(recent.take(1, 1)).toBeNull();
    expect(recent.take(2, 1)?.raw.length).toBe(60);
    recent.add(3, '', Buffer.alloc(101), 1);
    expect(recent.take(3, 1)).toBeNull();
  });

  it('hands delivery the committed bytes without reading the store, and the store\'s bytes once taken', async () => {
    const temp = makeTempDir('rebound-recent-');
    const db = openStore(join(temp.dir, 'store.sqlite'));
    cleanups.push(temp.remove, () => db.close());
    const spool = new Spool(db);
    const message = spoolMessage('a@example.test');
    await spool.enqueue(message);
    spool.close();
    const id = db.prepare('SELECT id FROM messages').pluck().get() as number;
    expect(recentContentOf(db).size).toBe(1);
    const state = new DeliveryState(db, loadConfig({ env: {} }));
    // Changed in the store behind the cache's back: the first read is the cache's, the next the store's.
    db.prepare(`UPDATE messages SET raw = ? WHERE id = ?`).run(Buffer.from('from the store'), id);
    expect(state.contentOf(id, 1).raw.equals(message.raw)).toBe(true);
    expect(recentContentOf(db).size).toBe(0);
    expect(state.contentOf(id, 1).raw.toString()).toBe('from the store');
  });
});
