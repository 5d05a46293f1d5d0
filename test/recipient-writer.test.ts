import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore, type Database } from '../src/store/database.js';
import { EVENT_NAMES, RecipientWriter } from '../src/store/recipient-writer.js';
import { Spool } from '../src/store/spool.js';
import { WEBHOOK_EVENTS } from '../src/webhooks/payload.js';
import { spoolMessage } from './support/spool-message.js';
import { makeTempDir } from './support/temp-dir.js';

const SRC = new URL('../src/', import.meta.url).pathname;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

async function storeWithOneRecipient(): Promise<{ db: Database; messageId: number; recipientId: number }> {
  const temp = makeTempDir();
  const db = openStore(join(temp.dir, 'store.sqlite'));
  cleanups.push(() => temp.remove());
  cleanups.push(() => db.close());
  const spool = new Spool(db);
  await spool.enqueue(spoolMessage('someone@example.net'));
  spool.close();
  const row = db.prepare('SELECT id, message_id AS messageId FROM recipients').get() as { id: number; messageId: number };
  return { db, messageId: row.messageId, recipientId: row.id };
}

describe('the one writer of recipients and events', () => {
  it('is the only module whose SQL inserts, updates or deletes rows of recipients or events', () => {
    const writes = /\b(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+(?:recipients|events)\b/i;
    const writers = sourceFiles(SRC)
      .filter((path) => writes.test(readFileSync(path, 'utf8')))
      .map((path) => relative(SRC, path))
      .sort();
    // (migrations.ts creates the tables; the retention job deletes messages, and their rows go by ON DELETE CASCADE.)
    expect(writers).toEqual(['store/recipient-writer.ts']);
  });

  it('names every event a webhook may carry', () => {
    for (const event of WEBHOOK_EVENTS) expect(EVENT_NAMES).toContain(event);
  });

  it('writes an accepted recipient with its event, and an event with every field it is given', async () => {
    const { db, messageId, recipientId } = await storeWithOneRecipient();
    expect(db.prepare('SELECT status, attempts, next_attempt_at IS NOT NULL AS due FROM recipients').get()).toEqual({ status: 'queued', attempts: 0, due: 1 });
    expect(db.prepare('SELECT event FROM events').pluck().all()).toEqual(['accepted']);
    const writer = RecipientWriter.of(db);
    expect(RecipientWriter.of(db)).toBe(writer);
    writer.event({
      event: 'permanent_fail',
      at: '2026-12-07T10:00:00.000Z',
      messageId,
      recipientId,
      detail: '550 5.1.1 no such user',
      source: 'immediate',
      reason: 'bounced',
      classification: { severity: 'permanent', type: 'hard', category: 'bad-mailbox', code: 550, enhancedCode: '5.1.1' },
      localIp: '192.0.2.10',
      mxHost: 'mx.example.net',
      attemptNo: 1,
    });
    const row = db.prepare(`SELECT * FROM events WHERE event = 'permanent_fail'`).get();
    expect(row).toMatchObject({
      at: '2026-12-07T10:00:00.000Z',
      message_id: messageId,
      recipient_id: recipientId,
      detail: '550 5.1.1 no such user',
      source: 'immediate',
      reason: 'bounced',
      severity: 'permanent',
      bounce_type: 'hard',
      category: 'bad-mailbox',
      code: 550,
      enhanced_code: '5.1.1',
      report_id: null,
      local_ip: '192.0.2.10',
      mx_host: 'mx.example.net',
      attempt_no: 1,
      actor: null,
    });
  });

  it('moves a recipient for an operator only from the status it was read in, and keeps its reply unless told', async () => {
    const { db, recipientId } = await storeWithOneRecipient();
    const writer = RecipientWriter.of(db);
    const at = new Date().toISOString();
    writer.change(recipientId, { status: 'deferred', attempts: 1, nextAttemptAt: at, lastReply: '451 4.7.1 try later', at });
    // Delivery claimed it meanwhile: the operator's hold (read as deferred) changes nothing.
    writer.markSending(recipientId, at);
    expect(writer.moveByOperator(recipientId, 'deferred', 'held', null, undefined, at)).toBe(0);
    expect(db.prepare('SELECT status FROM recipients').pluck().get()).toBe('sending');
    expect(writer.requeueSending(at)).toBe(1);
    expect(writer.moveByOperator(recipientId, 'queued', 'held', null, undefined, at)).toBe(1);
    expect(db.prepare('SELECT status, last_reply AS lastReply FROM recipients').get()).toEqual({ status: 'held', lastReply: '451 4.7.1 try later' });
    expect(writer.moveByOperator(recipientId, 'held', 'deleted', null, 'deleted by cli:ops', at)).toBe(1);
    expect(db.prepare('SELECT status, last_reply AS lastReply FROM recipients').get()).toEqual({ status: 'deleted', lastReply: 'deleted by cli:ops' });
  });
});
