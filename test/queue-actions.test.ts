import { execFile } from 'node:child_process';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { DeliveryState } from '../src/delivery/delivery-state.js';
import { openStore, type Database } from '../src/store/database.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { QueueListing, queueSummary } from '../src/store/queue.js';
import {
  bounceRecipients,
  deleteRecipients,
  flushDeferred,
  holdRecipients,
  MAX_QUEUE_IDS,
  QueueSelectorError,
  queueAudit,
  releaseRecipients,
  UnknownQueueIdError,
} from '../src/store/queue-actions.js';
import { Retention } from '../src/store/retention.js';
import { Spool, type SpoolMessage } from '../src/store/spool.js';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';
import { startFakeMx, type FakeMx, type FakeMxScript } from './support/fake-mx.js';
import { FAST_DELIVERY, startTestRelay, type ConfigOverride, type TestRelay } from './support/relay.js';
import { spoolMessage } from './support/spool-message.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';
import { startWebhookReceiver } from './support/webhook-receiver.js';

const execFileAsync = promisify(execFile);

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

const RECEIVED = new Date(Date.UTC(2026, 10, 22, 12));
const NOW = new Date(Date.UTC(2026, 10, 22, 13));

interface Store {
  db: Database;
  path: string;
  /** Queue ids by the first recipient's local part. */
  queueIds: Record<string, string>;
}

/** A store with one message per entry, as the spool commits them (all queued, due at receipt). */
async function storeWith(messages: Array<{ to: string[]; from?: string }>): Promise<Store> {
  const temp = makeTempDir('rebound-queue-actions-');
  const path = join(temp.dir, 'store.sqlite');
  const db = openStore(path);
  cleanups.push(temp.remove, () => db.close());
  const spool = new Spool(db);
  const queueIds: Record<string, string> = {};
  const spooled: SpoolMessage[] = messages.map(({ to, from }) => {
    const message = spoolMessage(to[0] as string, {
      receivedAt: RECEIVED,
      mailFrom: from ?? 'app@shop.example',
      recipients: to.map((address) => ({ address, domain: address.slice(address.lastIndexOf('@') + 1) })),
    });
    queueIds[(to[0] as string).split('@')[0] as string] = message.queueId;
    return message;
  });
  await Promise.all(spooled.map((message) => spool.enqueue(message)));
  spool.close();
  return { db, path, queueIds };
}

function statuses(db: Database): Record<string, string> {
  const rows = db.prepare('SELECT address, status FROM recipients ORDER BY id').all() as Array<{ address: string; status: string }>;
  return Object.fromEntries(rows.map((r) => [r.address, r.status]));
}

function setStatus(db: Database, address: string, status: string, nextAttemptAt: string | null = '2999-01-01T00:00:00.000Z'): void {
  db.prepare('UPDATE recipients SET status = ?, next_attempt_at = ?, attempts = 2 WHERE address = ?').run(status, nextAttemptAt, address);
}

function operatorEvents(db: Database): Array<Record<string, unknown>> {
  return db
    .prepare(`SELECT r.address, e.event, e.reason, e.source, e.actor, e.detail, e.attempt_no AS attemptNo FROM events e JOIN recipients r ON r.id = e.recipient_id WHERE e.source = 'operator' ORDER BY e.id`)
    .all() as Array<Record<string, unknown>>;
}

function count(db: Database, sql: string): number {
  return (db.prepare(sql).pluck().get() as number) ?? 0;
}

function claimed(db: Database, at: Date, perDomain: number, limit: number): string[] {
  const state = new DeliveryState(db, loadConfig({ env: {} }));
  try {
    return state.claimDue(at, perDomain, limit).batches.flatMap((batch) => batch.recipients.map((r) => r.address));
  } finally {
    state.close();
  }
}

describe('hold', () => {
  it('holds queued and deferred recipients of a domain, skips those being sent, and names the actor on each event and in the audit', async () => {
    const { db } = await storeWith([{ to: ['a@hold.test', 'b@hold.test', 'c@hold.test', 'd@hold.test'] }, { to: ['e@other.test'] }]);
    setStatus(db, 'b@hold.test', 'deferred');
    setStatus(db, 'c@hold.test', 'sending');
    setStatus(db, 'd@hold.test', 'delivered', null);

    const result = await holdRecipients(db, { domain: 'HOLD.test.' }, 'cli:alice', { now: NOW });

    expect(result).toEqual({
      action: 'hold',
      selector: { by: 'domain', domain: 'hold.test' },
      actor: 'cli:alice',
      at: NOW.toISOString(),
      auditId: 1,
      recipients: 2,
      skipped: { sending: 1 },
    });
    expect(statuses(db)).toEqual({ 'a@hold.test': 'held', 'b@hold.test': 'held', 'c@hold.test': 'sending', 'd@hold.test': 'delivered', 'e@other.test': 'queued' });
    expect(operatorEvents(db)).toEqual([
      { address: 'a@hold.test', event: 'held', reason: null, source: 'operator', actor: 'cli:alice', detail: 'held by cli:alice (domain hold.test)', attemptNo: 0 },
      { address: 'b@hold.test', event: 'held', reason: null, source: 'operator', actor: 'cli:alice', detail: 'held by cli:alice (domain hold.test)', attemptNo: 2 },
    ]);
    // A held recipient is not due: no next attempt, and the last reply it had is kept.
    expect(db.prepare(`SELECT next_attempt_at FROM recipients WHERE status = 'held'`).pluck().all()).toEqual([null, null]);
    expect(queueAudit(db)).toEqual([
      { id: 1, at: NOW.toISOString(), action: 'hold', selector: 'domain', value: 'hold.test', actor: 'cli:alice', recipients: 2, skippedSending: 1 },
    ]);
    // Not webhook events: the app hears about the outcome, not about the hold.
    expect(count(db, `SELECT count(*) FROM webhook_outbox o JOIN events e ON e.id = o.event_id WHERE e.source = 'operator'`)).toBe(0);
  });

  it('is never claimed by delivery, by either way a claim reads the queue, until released; release makes it due now with its attempts kept', async () => {
    // 200 of one domain in front make the claim read domain by domain (DeliveryState.dueRowsDomainByDomain).
    const { db } = await storeWith([{ to: ['h1@held.test', 'h2@held.test'] }, { to: Array.from({ length: 200 }, (_, n) => `x${n}@busy.test`) }, { to: ['o@open.test'] }]);
    setStatus(db, 'h2@held.test', 'deferred', RECEIVED.toISOString());
    await holdRecipients(db, { domain: 'held.test' }, 'api:ops', { now: NOW });
    // `rebound flush` (postqueue -f) makes deferred mail due; held mail is not deferred mail.
    expect(flushDeferred(db, null, 'api:ops', { now: NOW }).recipients).toBe(0);

    // Domain by domain: 10 of busy.test, then open.test; nothing of held.test.
    const domainByDomain = claimed(db, NOW, 10, 20);
    expect(domainByDomain.filter((a) => !a.endsWith('@busy.test'))).toEqual(['o@open.test']);
    expect(domainByDomain).toHaveLength(11);
    db.prepare(`UPDATE recipients SET status = 'queued' WHERE status = 'sending'`).run();
    // In due order, reading every due row an hour later: still nothing of held.test.
    const inDueOrder = claimed(db, new Date(NOW.getTime() + 3_600_000), 500, 500);
    expect(inDueOrder).toHaveLength(201);
    expect(inDueOrder.filter((a) => a.endsWith('@held.test'))).toEqual([]);
    db.prepare(`UPDATE recipients SET status = 'delivered' WHERE status = 'sending'`).run();

    const later = new Date(NOW.getTime() + 60_000);
    expect(await releaseRecipients(db, { domain: 'held.test' }, 'api:ops', { now: later })).toMatchObject({ recipients: 2, skipped: { sending: 0 } });
    expect(db.prepare(`SELECT address, status, next_attempt_at AS due, attempts FROM recipients WHERE domain = 'held.test' ORDER BY id`).all()).toEqual([
      { address: 'h1@held.test', status: 'queued', due: later.toISOString(), attempts: 0 },
      { address: 'h2@held.test', status: 'queued', due: later.toISOString(), attempts: 2 },
    ]);
    expect(claimed(db, later, 10, 20)).toEqual(['h1@held.test', 'h2@held.test']);
    expect(operatorEvents(db).map((e) => [e.address, e.event, e.detail])).toEqual([
      ['h1@held.test', 'held', 'held by api:ops (domain held.test)'],
      ['h2@held.test', 'held', 'held by api:ops (domain held.test)'],
      ['h1@held.test', 'released', 'released by api:ops (domain held.test); due now'],
      ['h2@held.test', 'released', 'released by api:ops (domain held.test); due now'],
    ]);
  });

  it('selects by sender without regard to case, and <> selects the null sender', async () => {
    const { db } = await storeWith([
      { to: ['n1@example.test'], from: 'News@Shop.example' },
      { to: ['n2@example.test'], from: 'news@shop.example' },
      { to: ['t1@example.test'], from: 'tx@shop.example' },
      { to: ['b1@example.test'], from: '' },
    ]);
    expect((await holdRecipients(db, { sender: '<NEWS@shop.EXAMPLE>' }, 'cli:ops', { now: NOW })).recipients).toBe(2);
    expect(await holdRecipients(db, { sender: '<>' }, 'cli:ops', { now: NOW })).toMatchObject({ selector: { by: 'sender', sender: '' }, recipients: 1 });
    expect(statuses(db)).toEqual({ 'n1@example.test': 'held', 'n2@example.test': 'held', 't1@example.test': 'queued', 'b1@example.test': 'held' });
    expect(queueAudit(db).map((a) => [a.selector, a.value])).toEqual([
      ['sender', '<>'],
      ['sender', 'NEWS@shop.example'],
    ]);
  });

  it('selects every recipient of the messages named, once each however often a queue id is given', async () => {
    const { db, queueIds } = await storeWith([{ to: ['m1@a.test', 'm2@b.test'] }, { to: ['k@a.test'] }]);
    const result = await holdRecipients(db, { queueIds: [queueIds.m1 as string, ` ${queueIds.m1} `] }, 'cli:ops', { now: NOW });
    expect(result).toMatchObject({ selector: { by: 'queue-ids', queueIds: [queueIds.m1] }, recipients: 2 });
    expect(statuses(db)).toEqual({ 'm1@a.test': 'held', 'm2@b.test': 'held', 'k@a.test': 'queued' });
    expect(queueAudit(db)[0]).toMatchObject({ selector: 'queue-ids', value: queueIds.m1 });
  });
});

describe('delete', () => {
  it('takes queued, deferred and held recipients out of the queue unsent: no bounce, no webhook, no suppression, kept for history', async () => {
    const { db } = await storeWith([{ to: ['q@del.test', 'd@del.test', 'h@del.test', 's@del.test'] }, { to: ['keep@other.test'] }]);
    setStatus(db, 'd@del.test', 'deferred');
    setStatus(db, 'h@del.test', 'held', null);
    setStatus(db, 's@del.test', 'sending');

    expect(await deleteRecipients(db, { domain: 'del.test' }, 'cli:bob', { now: NOW })).toMatchObject({ recipients: 3, skipped: { sending: 1 } });
    expect(statuses(db)).toEqual({ 'q@del.test': 'deleted', 'd@del.test': 'deleted', 'h@del.test': 'deleted', 's@del.test': 'sending', 'keep@other.test': 'queued' });
    expect(operatorEvents(db).map((e) => [e.address, e.event, e.reason, e.actor])).toEqual([
      ['q@del.test', 'deleted', null, 'cli:bob'],
      ['d@del.test', 'deleted', null, 'cli:bob'],
      ['h@del.test', 'deleted', null, 'cli:bob'],
    ]);
    expect(db.prepare(`SELECT last_reply FROM recipients WHERE address = 'q@del.test'`).pluck().get()).toBe('deleted by cli:bob (domain del.test); not sent, no bounce');
    expect(count(db, 'SELECT count(*) FROM suppressions')).toBe(0);
    expect(count(db, 'SELECT count(*) FROM suppression_audit')).toBe(0);
    expect(count(db, `SELECT count(*) FROM events WHERE event = 'permanent_fail'`)).toBe(0);
    expect(count(db, 'SELECT count(*) FROM webhook_outbox')).toBe(0);
    // Gone from the queue, still in the history.
    expect(db.prepare(`SELECT address FROM v_queue ORDER BY address`).pluck().all()).toEqual(['keep@other.test', 's@del.test']);
    expect(db.prepare(`SELECT event, actor FROM v_recipient_history WHERE address = 'q@del.test' ORDER BY at, event`).all()).toEqual([
      { event: 'accepted', actor: null },
      { event: 'deleted', actor: 'cli:bob' },
    ]);
    // Deleting again changes nothing, and says so.
    expect(await deleteRecipients(db, { domain: 'del.test' }, 'cli:bob', { now: NOW })).toMatchObject({ recipients: 0, skipped: { sending: 1 } });
    expect(queueAudit(db).map((a) => [a.action, a.recipients, a.skippedSending])).toEqual([
      ['delete', 0, 1],
      ['delete', 3, 1],
    ]);
  });

  it('counts as finished for retention, while held mail is kept like any mail still queued', async () => {
    const { db } = await storeWith([{ to: ['gone@del.test'] }, { to: ['wait@held.test'] }]);
    await deleteRecipients(db, { domain: 'del.test' }, 'cli:ops', { now: NOW });
    await holdRecipients(db, { domain: 'held.test' }, 'cli:ops', { now: NOW });
    const retention = new Retention(db, { bodyDays: 1, historyDays: 30, unmatchedReportDays: 1 });
    expect(retention.step(new Date(RECEIVED.getTime() + 2 * 86_400_000), 100)).toEqual({ bodiesDropped: 1, messagesDeleted: 0, reportsDeleted: 0, otherNodeEventsDeleted: 0 });
    expect(retention.step(new Date(RECEIVED.getTime() + 31 * 86_400_000), 100)).toEqual({ bodiesDropped: 0, messagesDeleted: 1, reportsDeleted: 0, otherNodeEventsDeleted: 0 });
    expect(statuses(db)).toEqual({ 'wait@held.test': 'held' });
    expect(db.prepare('SELECT length(raw) FROM messages').pluck().get()).toBeGreaterThan(0);
  });
});

describe('bounce', () => {
  it('bounces queued, deferred and held recipients now with a permanent_fail event naming the operator, feeds the webhook outbox, suppresses nothing', async () => {
    const { db, queueIds } = await storeWith([{ to: ['q@b.test', 'd@b.test', 'h@b.test', 's@b.test', 'done@b.test'] }]);
    setStatus(db, 'd@b.test', 'deferred');
    setStatus(db, 'h@b.test', 'held', null);
    setStatus(db, 's@b.test', 'sending');
    setStatus(db, 'done@b.test', 'delivered', null);

    expect(await bounceRecipients(db, { queueIds: [queueIds.q as string] }, 'api:ops', { now: NOW })).toMatchObject({ recipients: 3, skipped: { sending: 1 } });
    expect(statuses(db)).toEqual({ 'q@b.test': 'bounced', 'd@b.test': 'bounced', 'h@b.test': 'bounced', 's@b.test': 'sending', 'done@b.test': 'delivered' });
    const detail = `bounced by the operator api:ops (queue id ${queueIds.q}); not sent`;
    expect(operatorEvents(db)).toEqual([
      { address: 'q@b.test', event: 'permanent_fail', reason: 'bounced', source: 'operator', actor: 'api:ops', detail, attemptNo: 0 },
      { address: 'd@b.test', event: 'permanent_fail', reason: 'bounced', source: 'operator', actor: 'api:ops', detail, attemptNo: 2 },
      { address: 'h@b.test', event: 'permanent_fail', reason: 'bounced', source: 'operator', actor: 'api:ops', detail, attemptNo: 2 },
    ]);
    expect(db.prepare('SELECT next_attempt_at AS due, last_reply AS reply FROM recipients WHERE address = ?').get('q@b.test')).toEqual({ due: null, reply: detail });
    expect(count(db, `SELECT count(*) FROM webhook_outbox o JOIN events e ON e.id = o.event_id WHERE e.source = 'operator' AND e.event = 'permanent_fail'`)).toBe(3);
    expect(count(db, 'SELECT count(*) FROM suppressions')).toBe(0);
    // Not a bounce from any MX: the bounces report leaves it out.
    expect(count(db, 'SELECT count(*) FROM v_bounces')).toBe(0);
  });
});

describe('flush', () => {
  const LATER = '2999-01-01T00:00:00.000Z';
  const due = (db: Database): Record<string, string | null> =>
    Object.fromEntries((db.prepare('SELECT address, next_attempt_at AS at FROM recipients ORDER BY id').all() as Array<{ address: string; at: string | null }>).map((r) => [r.address, r.at]));

  it('makes deferred recipients due now by queue id, domain, sender or all, with one audit row each and no event; held, queued and sending mail is left alone', async () => {
    const { db, queueIds } = await storeWith([
      { to: ['a1@a.test', 'a2@a.test'], from: 'news@shop.example' },
      { to: ['b1@b.test', 'bh@b.test', 'bs@b.test', 'bq@b.test'] },
      { to: ['c1@c.test'], from: 'Alerts@Bank.example' },
      { to: ['d1@d.test'] },
    ]);
    for (const address of ['a1@a.test', 'a2@a.test', 'b1@b.test', 'c1@c.test', 'd1@d.test']) setStatus(db, address, 'deferred', LATER);
    setStatus(db, 'bh@b.test', 'held', null);
    setStatus(db, 'bs@b.test', 'sending', null);
    const at = NOW.toISOString();

    expect(flushDeferred(db, { queueIds: [queueIds.a1 as string] }, 'panel:ops', { now: NOW })).toEqual({
      selector: { by: 'queue-ids', queueIds: [queueIds.a1] },
      actor: 'panel:ops',
      at,
      auditId: 1,
      recipients: 2,
    });
    expect(flushDeferred(db, { domain: 'B.test' }, 'cli:alice', { now: NOW }).recipients).toBe(1);
    expect(flushDeferred(db, { sender: 'alerts@bank.EXAMPLE' }, 'api:ops', { now: NOW }).recipients).toBe(1);
    expect(due(db)).toEqual({ 'a1@a.test': at, 'a2@a.test': at, 'b1@b.test': at, 'bh@b.test': null, 'bs@b.test': null, 'bq@b.test': RECEIVED.toISOString(), 'c1@c.test': at, 'd1@d.test': LATER });
    // All: only d1 was still waiting for its retry; the ones already due are not counted again.
    expect(flushDeferred(db, null, 'panel:ops', { now: NOW }).recipients).toBe(1);
    expect(due(db)['d1@d.test']).toBe(at);
    expect(statuses(db)).toMatchObject({ 'bh@b.test': 'held', 'bs@b.test': 'sending', 'bq@b.test': 'queued', 'd1@d.test': 'deferred' });
    expect(
      queueAudit(db)
        .reverse()
        .map((a) => [a.action, a.selector, a.value, a.actor, a.recipients, a.skippedSending]),
    ).toEqual([
      ['flush', 'queue-ids', queueIds.a1, 'panel:ops', 2, 0],
      ['flush', 'domain', 'b.test', 'cli:alice', 1, 0],
      ['flush', 'sender', 'alerts@bank.example', 'api:ops', 1, 0],
      ['flush', 'all', '', 'panel:ops', 1, 0],
    ]);
    expect(count(db, `SELECT count(*) FROM events WHERE event <> 'accepted'`)).toBe(0);
  });

  it('refuses an unknown queue id or a malformed selector, flushing nothing and auditing nothing', async () => {
    const { db, queueIds } = await storeWith([{ to: ['a@example.test'] }]);
    setStatus(db, 'a@example.test', 'deferred', LATER);
    expect(() => flushDeferred(db, { queueIds: [queueIds.a as string, 'NOSUCHQUEUEID00000'] }, 'cli:ops', { now: NOW })).toThrow(UnknownQueueIdError);
    expect(() => flushDeferred(db, { domain: 'exa mple.test' }, 'cli:ops', { now: NOW })).toThrow('domain "exa mple.test" is not a domain name; give one such as example.com');
    expect(() => flushDeferred(db, {}, 'cli:ops', { now: NOW })).toThrow(QueueSelectorError);
    expect(() => flushDeferred(db, null, '', { now: NOW })).toThrow('a flush needs an actor');
    expect(due(db)).toEqual({ 'a@example.test': LATER });
    expect(queueAudit(db)).toEqual([]);
  });

  it('reads through the partial indexes of waiting mail, not the whole recipients table', async () => {
    const { db } = await storeWith([{ to: ['a@example.test'] }]);
    const plan = (sql: string): string => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all({ at: 'x', value: 'y' }) as Array<{ detail: string }>).map((row) => row.detail).join(' | ');
    const deferred = `status IN ('queued', 'deferred') AND status = 'deferred' AND next_attempt_at > @at`;
    expect(plan(`UPDATE recipients SET next_attempt_at = @at WHERE ${deferred}`)).toBe('SEARCH recipients USING INDEX recipients_due (next_attempt_at>?)');
    expect(plan(`UPDATE recipients SET next_attempt_at = @at WHERE domain = @value AND ${deferred}`)).toBe('SEARCH recipients USING INDEX recipients_due_by_domain (domain=? AND next_attempt_at>?)');
  });
});

describe('selectors that cannot be used', () => {
  it('refuses none, two, a malformed domain or sender, an empty or oversized list, and changes nothing', async () => {
    const { db } = await storeWith([{ to: ['a@example.test'] }]);
    const refusals: Array<[object, string]> = [
      [{}, 'select the mail: give queue ids, a recipient domain or a sender (exactly one)'],
      [{ domain: 'example.test', sender: 'app@shop.example' }, 'select the mail one way only: domain and sender were both given; use queue ids, a domain or a sender'],
      [{ queueIds: [], domain: 'example.test' }, 'select the mail one way only: queueIds and domain were both given; use queue ids, a domain or a sender'],
      [{ domain: '' }, 'the domain is empty; give a recipient domain such as example.com'],
      [{ domain: 'user@example.test' }, 'domain "user@example.test" is an address; give only the part after @ (example.test), or select by sender'],
      [{ domain: 'exa mple.test' }, 'domain "exa mple.test" is not a domain name; give one such as example.com'],
      [{ domain: '%' }, 'domain "%" is not a domain name; give one such as example.com'],
      [{ domain: `${'a'.repeat(64)}.test` }, `domain "${'a'.repeat(64)}.test" is not a domain name; give one such as example.com`],
      [{ domain: "x.test' OR '1'='1" }, `domain "x.test' OR '1'='1" is not a domain name; give one such as example.com`],
      [{ sender: '' }, 'the sender is empty; give an address such as app@shop.example, or <> for the null sender'],
      [{ sender: 'nobody' }, 'sender "nobody" is not an email address (local@domain); give one such as app@shop.example, or <> for the null sender'],
      [{ queueIds: [] }, 'the list of queue ids is empty; give at least one'],
      [{ queueIds: [' '] }, 'a queue id is empty; give ids as `rebound queue` prints them'],
      [{ queueIds: ['X'.repeat(100)] }, `"${'X'.repeat(24)}…" is not a queue id (they are 18 characters, e.g. 01M82FV3W8MQ8KC7XR)`],
      [{ queueIds: Array.from({ length: MAX_QUEUE_IDS + 1 }, (_, n) => `ID${n}`) }, `${MAX_QUEUE_IDS + 1} queue ids is more than ${MAX_QUEUE_IDS} in one action; split the list, or select by domain or sender`],
    ];
    for (const [selector, message] of refusals) {
      await expect(holdRecipients(db, selector, 'cli:ops', { now: NOW }), JSON.stringify(selector).slice(0, 80)).rejects.toThrow(new QueueSelectorError(message));
    }
    expect(statuses(db)).toEqual({ 'a@example.test': 'queued' });
    expect(queueAudit(db)).toEqual([]);
  });

  it('names unknown queue ids and changes nothing, not even for the ids that exist', async () => {
    const { db, queueIds } = await storeWith([{ to: ['a@example.test'] }]);
    const attempt = () => deleteRecipients(db, { queueIds: [queueIds.a as string, 'NOSUCHQUEUEID00000'] }, 'cli:ops', { now: NOW });
    await expect(attempt()).rejects.toThrow(UnknownQueueIdError);
    await expect(attempt()).rejects.toThrow('no message with queue id "NOSUCHQUEUEID00000"; nothing was changed (`rebound queue` or GET /v1/queue lists what is waiting)');
    expect(statuses(db)).toEqual({ 'a@example.test': 'queued' });
    expect(count(db, `SELECT count(*) FROM events WHERE source = 'operator'`)).toBe(0);
    expect(queueAudit(db)).toEqual([]);
  });

  it('needs an actor for the audit', async () => {
    const { db } = await storeWith([{ to: ['a@example.test'] }]);
    await expect(holdRecipients(db, { domain: 'example.test' }, ' ', { now: NOW })).rejects.toThrow('a queue action needs an actor');
  });
});

describe('the queue as operators read it', () => {
  it('counts held and deleted recipients, lists held mail among the oldest waiting, and shows it in v_queue', async () => {
    const { db } = await storeWith([{ to: ['h@one.test'] }, { to: ['d@two.test'] }, { to: ['q@three.test'] }]);
    await holdRecipients(db, { domain: 'one.test' }, 'cli:ops', { now: NOW });
    await deleteRecipients(db, { domain: 'two.test' }, 'cli:ops', { now: NOW });
    const summary = queueSummary(db);
    expect(summary.recipientsByStatus).toEqual({ queued: 1, sending: 0, deferred: 0, held: 1, delivered: 0, bounced: 0, expired: 0, suppressed: 0, deleted: 1 });
    expect(summary.oldest.map((entry) => [entry.address, entry.status])).toEqual([
      ['h@one.test', 'held'],
      ['q@three.test', 'queued'],
    ]);
    expect(db.prepare('SELECT address, status FROM v_queue ORDER BY address').all()).toEqual([
      { address: 'h@one.test', status: 'held' },
      { address: 'q@three.test', status: 'queued' },
    ]);
  });

  it('lists deferred mail by domain (count, oldest, the latest reply, the next attempt), a domain\'s recipients and the held messages', async () => {
    const { db, queueIds } = await storeWith([
      { to: ['a1@a.test', 'a2@a.test', 'h1@h.test', 'h2@h.test'], from: 'news@shop.example' },
      { to: ['a3@a.test', 'b1@b.test', 'q@a.test'] },
      { to: ['h3@h.test'], from: '' },
    ]);
    const defer = (address: string, next: string, reply: string, updated: string): void => {
      db.prepare(`UPDATE recipients SET status = 'deferred', attempts = 1, next_attempt_at = ?, last_reply = ?, updated_at = ? WHERE address = ?`).run(next, reply, updated, address);
    };
    defer('a1@a.test', '2026-11-22T15:00:00.000Z', '451 first', '2026-11-22T13:00:00.000Z');
    defer('a2@a.test', '2026-11-22T14:00:00.000Z', '451 latest', '2026-11-22T13:30:00.000Z');
    defer('a3@a.test', '2026-11-22T16:00:00.000Z', '451 middle', '2026-11-22T13:10:00.000Z');
    defer('b1@b.test', '2026-11-22T17:00:00.000Z', '452 full', '2026-11-22T13:00:00.000Z');
    db.prepare(`UPDATE recipients SET last_reply = '450 busy' WHERE address = 'h2@h.test'`).run();
    await holdRecipients(db, { domain: 'h.test' }, 'cli:ops', { now: NOW });

    const listing = new QueueListing(db);
    expect(listing.deferredDomains(10)).toEqual({
      items: [
        { domain: 'a.test', recipients: 3, oldestReceivedAt: RECEIVED.toISOString(), lastReply: '451 latest', nextAttemptAt: '2026-11-22T14:00:00.000Z' },
        { domain: 'b.test', recipients: 1, oldestReceivedAt: RECEIVED.toISOString(), lastReply: '452 full', nextAttemptAt: '2026-11-22T17:00:00.000Z' },
      ],
      total: 2,
    });
    expect(listing.deferredDomains(1)).toMatchObject({ items: [{ domain: 'a.test' }], total: 2 });
    // The next due first; q@a.test is queued, not deferred.
    const ofA = listing.deferredAt('a.test', 2);
    expect(ofA.total).toBe(3);
    expect(ofA.items).toEqual([
      { queueId: queueIds.a1, receivedAt: RECEIVED.toISOString(), mailFrom: 'news@shop.example', address: 'a2@a.test', attempts: 1, lastReply: '451 latest', nextAttemptAt: '2026-11-22T14:00:00.000Z' },
      { queueId: queueIds.a1, receivedAt: RECEIVED.toISOString(), mailFrom: 'news@shop.example', address: 'a1@a.test', attempts: 1, lastReply: '451 first', nextAttemptAt: '2026-11-22T15:00:00.000Z' },
    ]);
    expect(listing.deferredAt('nowhere.test', 10)).toEqual({ items: [], total: 0 });
    expect(listing.heldMessages(10)).toEqual({
      items: [
        { queueId: queueIds.a1, receivedAt: RECEIVED.toISOString(), mailFrom: 'news@shop.example', recipients: 2, firstAddress: 'h1@h.test', heldSince: NOW.toISOString(), lastReply: '450 busy' },
        { queueId: queueIds.h3, receivedAt: RECEIVED.toISOString(), mailFrom: '', recipients: 1, firstAddress: 'h3@h.test', heldSince: NOW.toISOString(), lastReply: null },
      ],
      total: 2,
    });
  });

  it('reads through indexes, not the whole recipients or messages table', async () => {
    const { db } = await storeWith([{ to: ['a@example.test'] }]);
    const plan = (sql: string): string =>
      (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all({ value: 'x', upTo: 1, limit: 1 }) as Array<{ detail: string }>).map((row) => row.detail).join(' | ');
    const columns = 'r.id, r.message_id AS messageId, r.status, r.attempts';
    for (const group of [`r.status IN ('queued', 'deferred')`, `r.status = 'held'`, `r.status = 'sending'`]) {
      expect(plan(`SELECT ${columns} FROM recipients r WHERE r.domain = @value AND ${group} AND +r.id <= @upTo LIMIT @limit`)).toMatch(
        /^SEARCH r USING INDEX recipients_(due_by_domain|held) \(domain=\?\)$|^SCAN r USING INDEX recipients_sending$/,
      );
      expect(plan(`SELECT ${columns} FROM recipients r CROSS JOIN messages m ON m.id = r.message_id WHERE ${group} AND lower(m.mail_from) = lower(@value) AND +r.id <= @upTo LIMIT @limit`)).toMatch(
        /^SCAN r USING INDEX recipients_(due|held|sending) \| SEARCH m USING INTEGER PRIMARY KEY \(rowid=\?\)$/,
      );
    }
  });

  it('works in steps of recipientsPerStep, each its own transaction, and counts them all in one audit row', async () => {
    const { db } = await storeWith([{ to: Array.from({ length: 25 }, (_, n) => `r${n}@step.test`) }, { to: ['s@step.test'] }]);
    setStatus(db, 's@step.test', 'sending');
    // Another connection, looking between turns of the event loop (the steps yield with
    // setImmediate; this watcher is queued first, so it runs before each next step).
    const reader = new BetterSqlite3(db.name, { readonly: true });
    cleanups.push(() => reader.close());
    const heldNow = reader.prepare(`SELECT count(*) FROM recipients WHERE status = 'held'`).pluck();
    const seen: number[] = [];
    let done = false;
    const watch = (): void => {
      if (done || seen.length >= 10) return;
      seen.push(heldNow.get() as number);
      setImmediate(watch);
    };
    setImmediate(watch);
    const result = await holdRecipients(db, { domain: 'step.test' }, 'cli:ops', { now: NOW, recipientsPerStep: 10 });
    done = true;
    expect(seen).toEqual([10, 20]);
    expect(result).toMatchObject({ recipients: 25, skipped: { sending: 1 } });
    expect(queueAudit(db)).toEqual([{ id: 1, at: NOW.toISOString(), action: 'hold', selector: 'domain', value: 'step.test', actor: 'cli:ops', recipients: 25, skippedSending: 1 }]);
    expect(count(db, `SELECT count(*) FROM events WHERE event = 'held'`)).toBe(25);
  });

  it('migrates a store made before queue actions: events gain actor, queue_audit exists, v_queue and the history are rebuilt', async () => {
    const temp = makeTempDir('rebound-queue-migrate-');
    cleanups.push(temp.remove);
    const path = join(temp.dir, 'old.sqlite');
    const old = new BetterSqlite3(path);
    for (const [n, sql] of MIGRATIONS.slice(0, 8).entries()) {
      old.exec(sql);
      old.pragma(`user_version = ${n + 1}`);
    }
    old.exec(`INSERT INTO messages (queue_id, received_at, mail_from, client_ip, protocol, size, received_header, raw) VALUES ('OLD1', '2026-11-01T00:00:00.000Z', 'a@b.test', '127.0.0.1', 'ESMTP', 1, 'Received: x', X'61')`);
    old.exec(`INSERT INTO recipients (message_id, address, domain, status, next_attempt_at, updated_at) VALUES (1, 'r@old.test', 'old.test', 'deferred', '2026-11-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z')`);
    old.close();

    const db = openStore(path);
    cleanups.push(() => db.close());
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    expect((await holdRecipients(db, { queueIds: ['OLD1'] }, 'cli:ops', { now: NOW })).recipients).toBe(1);
    expect(db.prepare(`SELECT address, status FROM v_queue`).all()).toEqual([{ address: 'r@old.test', status: 'held' }]);
    expect(db.prepare(`SELECT event, actor FROM v_recipient_history WHERE event = 'held'`).all()).toEqual([{ event: 'held', actor: 'cli:ops' }]);
  });
});

describe('with a running relay', () => {
  const stops: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  async function fakeMx(script: FakeMxScript = {}): Promise<FakeMx> {
    const mx = await startFakeMx(script);
    stops.push(() => mx.close());
    return mx;
  }

  async function relay(override: ConfigOverride): Promise<TestRelay> {
    const started = await startTestRelay(override);
    stops.push(() => started.stop());
    return started;
  }

  /** A read-write connection of its own, as an operator's `rebound` command or the admin API has. */
  function operatorStore(path: string): Database {
    const db = openStore(path);
    stops.push(() => {
      db.close();
    });
    return db;
  }

  function relayStatuses(running: TestRelay): Record<string, string> {
    return statuses(running.db as unknown as Database);
  }

  it('does not send held mail (the MX receives nothing for it) and sends it once `rebound queue release` releases it', async () => {
    const mx = await fakeMx();
    // Two messages in the store before the relay starts, one of them held.
    const temp = makeTempDir('rebound-held-');
    stops.push(temp.remove);
    const path = join(temp.dir, 'store.sqlite');
    const before = openStore(path);
    const spool = new Spool(before);
    const held = spoolMessage('held@example.test');
    await Promise.all([spool.enqueue(held), spool.enqueue(spoolMessage('free@example.test'))]);
    spool.close();
    expect((await holdRecipients(before, { queueIds: [held.queueId] }, 'cli:test')).recipients).toBe(1);
    before.close();

    const running = await relay({ store: { path }, delivery: { ...FAST_DELIVERY, retry: { ...FAST_DELIVERY.retry, maxAgeSeconds: 86_400 * 3650 }, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    await waitFor('free@ delivered', () => relayStatuses(running), (now) => now['free@example.test'] === 'delivered');
    // Twenty polls later, still nothing for the held recipient.
    await new Promise((resolve) => setTimeout(resolve, 20 * FAST_DELIVERY.pollIntervalMs));
    expect(mx.received.map((m) => m.to)).toEqual([['free@example.test']]);
    expect(relayStatuses(running)['held@example.test']).toBe('held');

    const release = await execFileAsync(process.execPath, [CLI, 'queue', 'release', '--queue-id', held.queueId, '--config', join(running.dir, 'config.json')], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, REBOUND_CONFIG: '' },
    });
    expect(release.stdout).toBe(`release (queue id ${held.queueId}): 1 recipient(s) released (due now)\nthe running relay sends them within delivery.pollIntervalMs (50 ms)\n`);
    await waitFor('held@ delivered', () => relayStatuses(running), (now) => now['held@example.test'] === 'delivered');
    expect(mx.received.map((m) => m.to)).toEqual([['free@example.test'], ['held@example.test']]);
    expect(
      running.db.prepare(`SELECT e.event, e.actor FROM events e JOIN recipients r ON r.id = e.recipient_id WHERE r.address = 'held@example.test' ORDER BY e.id`).all(),
    ).toEqual([
      { event: 'accepted', actor: null },
      { event: 'held', actor: 'cli:test' },
      { event: 'released', actor: `cli:${userInfo().username}` },
      { event: 'delivered', actor: null },
    ]);
  });

  it('leaves a recipient the relay is sending alone, and says it skipped it', async () => {
    const mx = await fakeMx({ dataDelayMs: 1_500 });
    const running = await relay({ delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    await nodemailer.createTransport({ host: '127.0.0.1', port: running.port, ignoreTLS: true }).sendMail({ from: 'app@shop.example', to: 'slow@example.test', text: 'x' });
    await waitFor('the MX to be in DATA', () => mx.openConnections, (open) => open === 1);
    await waitFor('slow@ sending', () => relayStatuses(running), (now) => now['slow@example.test'] === 'sending');
    const db = operatorStore(running.config.store.path);
    expect(await holdRecipients(db, { domain: 'example.test' }, 'api:ops')).toMatchObject({ recipients: 0, skipped: { sending: 1 } });
    expect(await bounceRecipients(db, { sender: 'app@shop.example' }, 'api:ops')).toMatchObject({ recipients: 0, skipped: { sending: 1 } });
    await waitFor('slow@ delivered', () => relayStatuses(running), (now) => now['slow@example.test'] === 'delivered');
    expect(mx.received).toHaveLength(1);
    expect(queueAudit(db).map((a) => [a.action, a.recipients, a.skippedSending])).toEqual([
      ['bounce', 0, 1],
      ['hold', 0, 1],
    ]);
  });

  it('posts a webhook for an operator bounce (permanent, reason generic, the operator named) and none for a delete', async () => {
    const receiver = await startWebhookReceiver();
    stops.push(() => receiver.close());
    const running = await relay({
      webhooks: {
        endpoints: [{ url: receiver.url, secret: 'whsec-test-0123456789abcdef', events: ['permanent_fail', 'temporary_fail', 'delivered'] }],
        allowPrivateTargets: true,
        pollIntervalMs: 50,
      },
    });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: running.port, ignoreTLS: true });
    const queueIdOf = (info: { response: string }): string => info.response.split(' ').pop() as string;
    const deleted = queueIdOf(await transport.sendMail({ from: 'app@shop.example', to: 'deleted@example.test', text: 'x' }));
    const bounced = queueIdOf(await transport.sendMail({ from: 'app@shop.example', to: 'bounced@example.test', text: 'y' }));
    const db = operatorStore(running.config.store.path);
    await deleteRecipients(db, { queueIds: [deleted] }, 'api:ops');
    await bounceRecipients(db, { queueIds: [bounced] }, 'api:ops');

    await waitFor('the bounce webhook', () => receiver.received.length, (n) => n >= 1);
    // The outbox is read every 50 ms: ten rounds more, and still only the bounce came.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(receiver.received).toHaveLength(1);
    const data = receiver.received[0]?.body['event-data'];
    expect(data).toMatchObject({
      event: 'failed',
      severity: 'permanent',
      reason: 'generic',
      recipient: 'bounced@example.test',
      'delivery-status': { code: null, message: '', description: `bounced by the operator api:ops (queue id ${bounced}); not sent`, 'bounce-type': null, category: null },
      flags: { 'is-delayed-bounce': false },
      rebound: { 'queue-id': bounced, event: 'permanent_fail', reason: 'bounced', source: 'operator' },
    });
    expect(count(db, 'SELECT count(*) FROM suppressions')).toBe(0);
    expect(relayStatuses(running)).toEqual({ 'deleted@example.test': 'deleted', 'bounced@example.test': 'bounced' });
  });
});
