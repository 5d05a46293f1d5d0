import BetterSqlite3 from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../src/store/database.js';
import { MIGRATIONS, SchemaTooNewError } from '../src/store/migrations.js';
import { queueSummary } from '../src/store/queue.js';
import { Spool, type SpoolMessage } from '../src/store/spool.js';
import { WalSync } from '../src/store/wal-sync.js';
import { newQueueId } from '../src/store/queue-id.js';
import { makeTempDir } from './support/temp-dir.js';

const temps: Array<() => void> = [];
afterEach(() => {
  for (const remove of temps.splice(0)) remove();
});

function tempDbPath(): string {
  const temp = makeTempDir('rebound-store-');
  temps.push(temp.remove);
  return join(temp.dir, 'nested', 'store.sqlite');
}

function message(n: number, recipients = 1): SpoolMessage {
  return {
    queueId: newQueueId(),
    receivedAt: new Date(Date.UTC(2026, 10, 22, 12, 0, n)),
    mailFrom: 'app@shop.example',
    recipients: Array.from({ length: recipients }, (_, i) => ({ address: `r${n}-${i}@example.net`, domain: 'example.net' })),
    clientIp: '127.0.0.1',
    clientHelo: 'client.test',
    authUser: null,
    protocol: 'ESMTP',
    messageIdHeader: `m${n}@shop.example`,
    fromDomain: 'shop.example',
    subject: `message ${n}`,
    campaignId: null,
    tags: [],
    variables: null,
    receivedHeader: 'Received: from x\r\n',
    raw: Buffer.from(`Subject: message ${n}\r\n\r\nbody\r\n`),
  };
}

describe('openStore', () => {
  it('creates the directory, uses WAL with synchronous=FULL and records the schema version', () => {
    const path = tempDbPath();
    const db = openStore(path);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2); // FULL
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    db.close();
    // Opening again applies nothing twice.
    const again = openStore(path);
    expect(again.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    again.close();
  });

  it('refuses a database written by a newer Rebound, saying what to do', () => {
    const path = tempDbPath();
    openStore(path).close();
    const raw = new BetterSqlite3(path);
    raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    raw.close();
    expect(() => openStore(path)).toThrow(SchemaTooNewError);
    expect(() => openStore(path)).toThrow(/newer than this Rebound knows .*upgrade Rebound/);
  });
});

describe('Spool', () => {
  it('commits messages that arrive together in one transaction (group commit), each with its recipients and events', async () => {
    const db = openStore(tempDbPath());
    const spool = new Spool(db, 50);
    await Promise.all(Array.from({ length: 120 }, (_, n) => spool.enqueue(message(n, 2))));
    expect(spool.stats).toEqual({ messages: 120, commits: 3 }); // 50 + 50 + 20
    const counts = db
      .prepare("SELECT (SELECT count(*) FROM messages) AS m, (SELECT count(*) FROM recipients) AS r, (SELECT count(*) FROM events WHERE event = 'accepted') AS e")
      .get();
    expect(counts).toEqual({ m: 120, r: 240, e: 240 });
    expect(queueSummary(db, 1)).toMatchObject({ messages: 120, recipientsByStatus: { queued: 240 }, oldest: [{ address: 'r0-0@example.net' }] });
    spool.close();
    db.close();
  });

  it('commits a lone message on its own, promptly', async () => {
    const db = openStore(tempDbPath());
    const spool = new Spool(db);
    await spool.enqueue(message(1));
    expect(spool.stats).toEqual({ messages: 1, commits: 1 });
    spool.close();
    await expect(spool.enqueue(message(2))).rejects.toThrow(/closed/);
    db.close();
  });

  it('refuses only the message that cannot be written when a batch commit fails', async () => {
    const db = openStore(tempDbPath());
    const spool = new Spool(db);
    const duplicate = message(1);
    const results = await Promise.allSettled([spool.enqueue(message(0)), spool.enqueue(duplicate), spool.enqueue({ ...duplicate }), spool.enqueue(message(2))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_CONSTRAINT_UNIQUE' });
    const stored = db.prepare('SELECT subject FROM messages ORDER BY id').all();
    expect(stored).toEqual([{ subject: 'message 0' }, { subject: 'message 1' }, { subject: 'message 2' }]);
    expect((db.prepare('SELECT count(*) AS n FROM recipients').get() as { n: number }).n).toBe(3);
    spool.close();
    db.close();
  });
});

describe('WalSync: commits made durable off the event loop', () => {
  it('commits the spool with synchronous=NORMAL, resolves each message only after a WAL sync, and shares syncs between callers', async () => {
    const path = tempDbPath();
    const db = openStore(path);
    const walSync = new WalSync(path);
    const spool = new Spool(db, 10, walSync);
    const synchronousSeen: number[] = [];
    spool.onCommitted(() => synchronousSeen.push(Number(db.pragma('synchronous', { simple: true }))));
    await Promise.all(Array.from({ length: 40 }, (_, n) => spool.enqueue(message(n))));
    expect(spool.stats).toEqual({ messages: 40, commits: 4 });
    // One flush of four commits: one sync, and the connection is back to FULL (2) afterwards.
    expect(walSync.syncs).toBe(1);
    expect(synchronousSeen).toEqual([2]);
    // Callers that arrive while a sync runs share the next one.
    await Promise.all([walSync.sync(), walSync.sync(), walSync.sync(), walSync.sync()]);
    expect(walSync.syncs).toBe(3);
    await walSync.close();
    db.close();
    const reopened = openStore(path);
    expect(reopened.prepare('SELECT count(*) AS n FROM messages').get()).toEqual({ n: 40 });
    reopened.close();
  });

  it('follows a WAL file that was replaced, and refuses to report a commit as stored when the WAL cannot be synced', async () => {
    const path = tempDbPath();
    const db = openStore(path);
    const walSync = new WalSync(path);
    await walSync.sync();
    // Leaving WAL mode deletes the WAL file; coming back creates a new one (a new inode).
    db.pragma('journal_mode = DELETE');
    db.pragma('journal_mode = WAL');
    const spool = new Spool(db, 10, walSync);
    await spool.enqueue(message(1));
    db.pragma('journal_mode = DELETE');
    await expect(spool.enqueue(message(2))).rejects.toThrow(/the store could not sync its write-ahead log: ENOENT/);
    await walSync.close();
    db.close();
  });
});
