import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/store/database.js';
import { EventCounts } from '../src/store/event-counts.js';
import { QueueGauges } from '../src/store/queue.js';
import { ReportCounts } from '../src/inbound/report-counts.js';
import { WebhookDeliveryCounts } from '../src/webhooks/delivery-counts.js';
import { SuppressionLists } from '../src/suppressions/lists.js';
import { tempStore } from './support/temp-store.js';

// The reads /metrics makes at every scrape, each in the module that owns its table.

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function store(): Database {
  return tempStore(cleanups);
}

function message(db: Database, queueId: string, receivedAt: string): number {
  const { lastInsertRowid } = db
    .prepare(
      `INSERT INTO messages (queue_id, received_at, mail_from, client_ip, protocol, size, received_header, raw)
       VALUES (?, ?, 'app@shop.test', '127.0.0.1', 'ESMTP', 1, 'Received: test', x'00')`,
    )
    .run(queueId, receivedAt);
  return Number(lastInsertRowid);
}

function recipient(db: Database, messageId: number, address: string, status: string): number {
  const { lastInsertRowid } = db
    .prepare(`INSERT INTO recipients (message_id, address, domain, status, updated_at) VALUES (?, ?, ?, ?, '2026-01-01T00:00:00.000Z')`)
    .run(messageId, address, address.split('@')[1], status);
  return Number(lastInsertRowid);
}

function event(db: Database, messageId: number, name: string, at: string, fields: { reason?: string; category?: string } = {}): number {
  const { lastInsertRowid } = db
    .prepare(`INSERT INTO events (at, event, message_id, reason, category) VALUES (?, ?, ?, ?, ?)`)
    .run(at, name, messageId, fields.reason ?? null, fields.category ?? null);
  return Number(lastInsertRowid);
}

function delivery(db: Database, eventId: number, status: string): number {
  const at = '2026-01-01T00:00:00.000Z';
  const { lastInsertRowid } = db
    .prepare(`INSERT INTO webhook_deliveries (event_id, endpoint_url, status, next_attempt_at, created_at, updated_at) VALUES (?, 'http://127.0.0.1:9/hook', ?, ?, ?, ?)`)
    .run(eventId, status, at, at, at);
  return Number(lastInsertRowid);
}

describe('EventCounts', () => {
  it('reads only the events after one id and up to another, grouped, with each delivery latency from acceptance', () => {
    const db = store();
    const counts = new EventCounts(db);
    expect([counts.newestEventId(), counts.newestMessageId()]).toEqual([0, 0]);
    const m = message(db, 'Q1', '2026-01-01T00:00:00.000Z');
    const before = event(db, m, 'delivered', '2026-01-01T00:00:10.000Z');
    event(db, m, 'temporary_fail', '2026-01-01T00:00:20.000Z', { category: 'quota-issues' });
    event(db, m, 'temporary_fail', '2026-01-01T00:00:30.000Z', { category: 'quota-issues' });
    const last = event(db, m, 'delivered', '2026-01-01T00:01:00.000Z');
    event(db, m, 'delivered', '2026-01-01T00:02:00.000Z'); // after upTo: not read yet

    expect(counts.newestMessageId()).toBe(m);
    const groups = counts.groupsBetween(before, last);
    expect(groups.map((g) => [g.event, g.category, g.n]).sort()).toEqual([
      ['delivered', null, 1],
      ['temporary_fail', 'quota-issues', 2],
    ]);
    expect(counts.deliveryLatenciesBetween(before, last).map((s) => Math.round(s))).toEqual([60]);
    expect(counts.groupsBetween(last + 1, last + 1)).toEqual([]);
  });
});

describe('QueueGauges', () => {
  it('counts waiting, sending and held recipients and dates the oldest waiting message', () => {
    const db = store();
    const gauges = new QueueGauges(db);
    expect([gauges.waitingByStatus(), gauges.sendingCount(), gauges.heldCount(), gauges.oldestWaitingReceivedAt()]).toEqual([[], 0, 0, null]);
    const old = message(db, 'Q1', '2026-01-01T00:00:00.000Z');
    const young = message(db, 'Q2', '2026-01-02T00:00:00.000Z');
    recipient(db, old, 'a@one.test', 'delivered');
    recipient(db, young, 'b@one.test', 'deferred');
    recipient(db, young, 'c@two.test', 'queued');
    recipient(db, young, 'd@two.test', 'queued');
    recipient(db, young, 'e@two.test', 'sending');
    recipient(db, old, 'f@two.test', 'held');

    expect(gauges.waitingByStatus().sort((a, b) => a.status.localeCompare(b.status))).toEqual([
      { status: 'deferred', n: 1 },
      { status: 'queued', n: 2 },
    ]);
    expect(gauges.sendingCount()).toBe(1);
    expect(gauges.heldCount()).toBe(1);
    // The delivered and held recipients of the older message do not make it the oldest waiting one.
    expect(gauges.oldestWaitingReceivedAt()).toBe('2026-01-02T00:00:00.000Z');
  });

  it('does not count sending at all where no index serves it, rather than scan recipients at every scrape', () => {
    const db = store();
    db.exec('DROP INDEX recipients_sending');
    const gauges = new QueueGauges(db);
    recipient(db, message(db, 'Q1', '2026-01-01T00:00:00.000Z'), 'a@one.test', 'sending');
    expect(gauges.sendingCount()).toBeNull();
  });
});

describe('ReportCounts', () => {
  it('reads reports after an id, oldest first, and one report by id until retention removes it', () => {
    const db = store();
    const counts = new ReportCounts(db);
    expect(counts.newestId()).toBe(0);
    const insert = db.prepare(
      `INSERT INTO inbound_reports (received_at, client_ip, mail_from, rcpt_to, size, raw, parse_status, kind) VALUES ('2026-01-01T00:00:00.000Z', '127.0.0.1', '', 'b@x.test', 1, x'00', ?, ?)`,
    );
    const first = Number(insert.run('parsed', 'bounce').lastInsertRowid);
    const second = Number(insert.run('pending', null).lastInsertRowid);
    expect(counts.newestId()).toBe(second);
    expect(counts.after(0)).toEqual([
      { id: first, status: 'parsed', kind: 'bounce' },
      { id: second, status: 'pending', kind: null },
    ]);
    expect(counts.after(first)).toEqual([{ id: second, status: 'pending', kind: null }]);
    db.prepare('DELETE FROM inbound_reports WHERE id = ?').run(second);
    expect(counts.byId(second)).toBeUndefined();
    expect(counts.byId(first)).toEqual({ id: first, status: 'parsed', kind: 'bounce' });
  });
});

describe('WebhookDeliveryCounts', () => {
  it('counts the backlog, and each delivery that gave up once, leaving out those that gave up before it started', () => {
    const db = store();
    const m = message(db, 'Q1', '2026-01-01T00:00:00.000Z');
    const e = event(db, m, 'delivered', '2026-01-01T00:00:01.000Z'); // the trigger queues it in the outbox
    delivery(db, e, 'failed'); // gave up before the start
    const pendingAtStart = delivery(db, e, 'pending');
    delivery(db, e, 'rejected'); // after the oldest pending one: in the window read at start

    const counts = new WebhookDeliveryCounts(db);
    expect(counts.outboxWaiting()).toBe(1);
    expect(counts.pendingDeliveries()).toBe(1);
    expect(counts.givenUp()).toBe(1);
    expect(counts.givenUp()).toBe(1); // read again: not counted twice

    db.prepare(`UPDATE webhook_deliveries SET status = 'failed' WHERE id = ?`).run(pendingAtStart);
    expect(counts.pendingDeliveries()).toBe(0);
    expect(counts.givenUp()).toBe(2);
    delivery(db, e, 'pending');
    delivery(db, e, 'failed');
    expect(counts.givenUp()).toBe(3);
    expect(counts.givenUp()).toBe(3);
    db.prepare(`UPDATE webhook_outbox SET fanned_out = 1`).run();
    expect(counts.outboxWaiting()).toBe(0);
  });
});

describe('SuppressionLists.allowlistEntry', () => {
  it('finds exactly the value asked for: a domain entry does not answer for an address at it', () => {
    const db = store();
    const lists = new SuppressionLists(db);
    lists.allow('partner.test', 'cli:ops', 'contract');
    expect(lists.allowlistEntry('partner.test')).toMatchObject({ value: 'partner.test', kind: 'domain', reason: 'contract', createdBy: 'cli:ops' });
    expect(lists.allowlistEntry('someone@partner.test')).toBeUndefined();
    expect(lists.allowlistEntry("' OR 1=1 --")).toBeUndefined();
  });
});
