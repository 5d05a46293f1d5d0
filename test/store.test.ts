import BetterSqlite3 from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../src/store/database.js';
import { MIGRATIONS, SchemaTooNewError } from '../src/store/migrations.js';
import { queueSummary } from '../src/store/queue.js';
import { Spool, type SpoolMessage } from '../src/store/spool.js';
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
