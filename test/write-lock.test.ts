import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../src/store/database.js';
import { useWriteLock, writeTransaction, WriteLock } from '../src/store/write-lock.js';
import { makeTempDir } from './support/temp-dir.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function tempStore(): string {
  const temp = makeTempDir('rebound-write-lock-');
  cleanups.push(temp.remove);
  return join(temp.dir, 'rebound.sqlite');
}

// A second thread writing the same store through its own connection, as the delivery stage's
// thread does: each transaction reads a counter, then writes it back plus one (a read before the
// write, which fails with SQLITE_BUSY under BEGIN DEFERRED when the other thread committed between).
const WRITER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.betterSqlite3);
const cell = new Int32Array(workerData.lock);
const db = new Database(workerData.path);
// No busy handler: a collision between the threads would fail at once with SQLITE_BUSY.
db.pragma('busy_timeout = 0');
const read = db.prepare("SELECT value FROM settings WHERE key = 'counter'").pluck();
const write = db.prepare("UPDATE settings SET value = ? WHERE key = 'counter'");
const bump = db.transaction(() => write.run(String(Number(read.get()) + 1))).immediate;
for (let i = 0; i < workerData.count; i++) {
  while (Atomics.compareExchange(cell, 0, 0, 1) !== 0) Atomics.wait(cell, 0, 1, 1000);
  try { bump(); } finally { Atomics.store(cell, 0, 0); Atomics.notify(cell, 0, 1); }
}
db.close();
parentPort.postMessage('done');
`;

describe('WriteLock: the relay threads take turns writing the store', () => {
  it('two threads bumping one counter 2 x 2,000 times through their own connections, with no busy handler, never collide and lose no update', async () => {
    const path = tempStore();
    const db = openStore(path);
    cleanups.push(() => db.close());
    db.prepare("INSERT INTO settings (key, value) VALUES ('counter', '0')").run();
    db.pragma('busy_timeout = 0');
    const lock = new WriteLock();
    useWriteLock(db, lock);
    const read = db.prepare("SELECT value FROM settings WHERE key = 'counter'").pluck();
    const write = db.prepare("UPDATE settings SET value = ? WHERE key = 'counter'");
    const bump = writeTransaction(db, () => write.run(String(Number(read.get()) + 1)));

    const worker = new Worker(WRITER, {
      eval: true,
      workerData: { path, lock: lock.buffer, count: 2_000, betterSqlite3: createRequire(import.meta.url).resolve('better-sqlite3') },
    });
    const done = new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    // Interleaved with the worker: a turn of the event loop between batches of this thread's writes.
    for (let i = 0; i < 2_000; i++) {
      bump();
      if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await done;
    expect(read.get()).toBe('4000');
  });

  it('a transaction inside a transaction holds the lock it already has instead of waiting for itself', () => {
    const path = tempStore();
    const db = openStore(path);
    cleanups.push(() => db.close());
    useWriteLock(db, new WriteLock());
    const insert = db.prepare('INSERT INTO settings (key, value) VALUES (?, ?)');
    const inner = writeTransaction(db, (key: string) => insert.run(key, 'inner'));
    const outer = writeTransaction(db, () => {
      insert.run('outer', 'outer');
      inner('nested');
    });
    outer();
    expect(db.prepare("SELECT count(*) FROM settings WHERE key IN ('outer', 'nested')").pluck().get()).toBe(2);
  });

  it('takes the lock from a holder that vanished without releasing it, after staleAfterMs', () => {
    const lock = new WriteLock(undefined, 200);
    // As a thread ended in the middle of a transaction leaves it.
    Atomics.store(new Int32Array(lock.buffer), 0, 1);
    const started = Date.now();
    expect(lock.hold(() => 'written')).toBe('written');
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    // Released afterwards: the next writer does not wait.
    const next = Date.now();
    lock.hold(() => undefined);
    expect(Date.now() - next).toBeLessThan(100);
  });

  it('releases the lock when the transaction throws', () => {
    const lock = new WriteLock(undefined, 60_000);
    expect(() => lock.hold(() => {
      throw new Error('constraint failed');
    })).toThrow('constraint failed');
    expect(Atomics.load(new Int32Array(lock.buffer), 0)).toBe(0);
  });
});
