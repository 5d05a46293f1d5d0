/**
 * Blocks: a hard failure whose category is not in suppression.categories (by default everything
 * but bad-mailbox, bad-domain and inactive-mailbox) is never retried and reported as
 * permanent_fail, reason `blocked`, but the address stays off the bounces list. Both paths: the
 * MX's reply in our session, and a DSN that comes back later.
 */
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { startAdmin } from '../src/admin/server.js';
import { HARD_CATEGORIES } from '../src/bounces/categories.js';
import { createLogger } from '../src/logger.js';
import { openStore } from '../src/store/database.js';
import { startFakeMx, type FakeMx, type FakeMxScript } from './support/fake-mx.js';
import { postfixDsn } from './support/postfix-dsn.js';
import { FAST_DELIVERY, startTestRelay, type ConfigOverride, type TestRelay } from './support/relay.js';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.js';
import { waitFor } from './support/wait-for.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TOKEN = 'ops-0123456789abcdefghijklmnop';
/** RFC 3463 5.7.1 "delivery not authorized, message refused": about the sender or the message. */
const POLICY_REFUSAL = { code: 550, text: '5.7.1 Message rejected due to local policy' };
const USER_UNKNOWN = (address: string) => ({ code: 550, text: `5.1.1 <${address}>: Recipient address rejected: User unknown` });

async function fakeMx(script: FakeMxScript = {}): Promise<FakeMx> {
  const mx = await startFakeMx(script);
  cleanups.push(() => mx.close());
  return mx;
}

async function webhookReceiver(): Promise<WebhookReceiver> {
  const receiver = await startWebhookReceiver();
  cleanups.push(() => receiver.close());
  return receiver;
}

async function relayTo(mx: FakeMx, override: ConfigOverride = {}): Promise<TestRelay> {
  const relay = await startTestRelay({
    returnPath: { domain: 'bounces.relay.test' },
    inbound: { enabled: true },
    delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
    ...override,
  });
  cleanups.push(() => relay.stop());
  return relay;
}

async function submit(relay: TestRelay, to: string[]): Promise<void> {
  await nodemailer
    .createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true })
    .sendMail({ from: 'app@shop.example', to, subject: 'hello', text: 'hi', messageId: '<orig@shop.example>' });
}

function statuses(relay: TestRelay): Record<string, string> {
  const rows = relay.db.prepare('SELECT address, status FROM recipients ORDER BY id').all() as Array<{ address: string; status: string }>;
  return Object.fromEntries(rows.map((row) => [row.address, row.status]));
}

async function waitForStatuses(relay: TestRelay, expected: Record<string, string>): Promise<void> {
  await waitFor('recipient statuses', () => statuses(relay), (now) => Object.entries(expected).every(([address, status]) => now[address] === status));
}

function lastFailure(relay: TestRelay, address: string): Record<string, unknown> | undefined {
  return relay.db
    .prepare(`
      SELECT e.event, e.reason, e.source, e.bounce_type, e.category, e.enhanced_code FROM events e JOIN recipients r ON r.id = e.recipient_id
       WHERE r.address = ? AND e.event = 'permanent_fail' ORDER BY e.id DESC LIMIT 1`)
    .get(address) as Record<string, unknown> | undefined;
}

function suppressed(relay: TestRelay): string[] {
  return (relay.db.prepare(`SELECT address FROM suppressions WHERE type = 'bounces' ORDER BY address`).pluck().all() as string[]);
}

async function sendReport(relay: TestRelay, to: string, raw: string): Promise<number> {
  const info = await nodemailer
    .createTransport({ host: '127.0.0.1', port: relay.relay.inbound?.port, ignoreTLS: true })
    .sendMail({ envelope: { from: '', to: [to] }, raw });
  return Number(info.response.split(' ').pop());
}

async function applied(relay: TestRelay, reportId: number): Promise<string> {
  const row = await waitFor(
    `report ${reportId} to be applied`,
    () => relay.db.prepare('SELECT applied_at, outcome FROM inbound_reports WHERE id = ?').get(reportId) as { applied_at: string | null; outcome: string } | undefined,
    (r) => r !== undefined && r.applied_at !== null,
  );
  return (row as { outcome: string }).outcome;
}

function returnPathOf(mx: FakeMx, address: string): string {
  const message = mx.received.find((m) => m.to.includes(address));
  if (!message) throw new Error(`${address} was not delivered`);
  return message.from;
}

describe('immediate failures: blocks and bounces', () => {
  it('records a 550 5.7.1 policy refusal as blocked, not suppressed, and a 550 5.1.1 as bounced and suppressed; the webhook and the admin API say so', async () => {
    const mx = await fakeMx({ rcpt: (address) => (address.startsWith('policy@') ? POLICY_REFUSAL : address.startsWith('gone@') ? USER_UNKNOWN(address) : null) });
    const receiver = await webhookReceiver();
    const relay = await relayTo(mx, {
      webhooks: {
        endpoints: [{ url: receiver.url, events: ['permanent_fail'], secret: 'blocks-webhook-secret-0123456789' }],
        allowPrivateTargets: true,
        pollIntervalMs: 50,
      },
    });
    const db = openStore(relay.config.store.path);
    const admin = await startAdmin({ ...relay.config, admin: { ...relay.config.admin, tokens: [{ name: 'ops', token: TOKEN, role: 'admin' as const }] } }, db, createLogger('silent'));
    cleanups.push(async () => {
      await admin.stop();
      db.close();
    });
    const get = async (path: string): Promise<Response> => fetch(`http://127.0.0.1:${admin.address.port}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    await submit(relay, ['policy@example.test', 'gone@example.test']);
    await waitForStatuses(relay, { 'policy@example.test': 'bounced', 'gone@example.test': 'bounced' });

    expect(lastFailure(relay, 'policy@example.test')).toEqual({
      event: 'permanent_fail', reason: 'blocked', source: 'immediate', bounce_type: 'hard', category: 'policy-related', enhanced_code: '5.7.1',
    });
    expect(lastFailure(relay, 'gone@example.test')).toEqual({
      event: 'permanent_fail', reason: 'bounced', source: 'immediate', bounce_type: 'hard', category: 'bad-mailbox', enhanced_code: '5.1.1',
    });
    expect(suppressed(relay)).toEqual(['gone@example.test']);
    // Never retried: one try each.
    expect(relay.db.prepare('SELECT address, attempts FROM recipients ORDER BY id').all()).toEqual([
      { address: 'policy@example.test', attempts: 1 },
      { address: 'gone@example.test', attempts: 1 },
    ]);

    // The webhook: a permanent failure (Mailgun's `bounce`), Rebound's own reason `blocked`.
    const hooks = await waitFor('two webhooks', () => receiver.accepted(), (got) => got.length >= 2);
    const byRecipient = new Map(hooks.map((hook) => [hook.body['event-data'].recipient as string, hook.body['event-data']]));
    expect(byRecipient.get('policy@example.test')).toMatchObject({
      event: 'failed',
      severity: 'permanent',
      reason: 'bounce',
      'delivery-status': { code: 550, 'enhanced-code': '5.7.1', 'bounce-type': 'hard', category: 'policy-related' },
      rebound: { event: 'permanent_fail', reason: 'blocked', source: 'immediate' },
    });
    expect(byRecipient.get('gone@example.test')).toMatchObject({ reason: 'bounce', rebound: { reason: 'bounced' } });

    // The address was not suppressed: the next message to it is sent (and blocked again), not dropped.
    await submit(relay, ['policy@example.test']);
    await waitFor('the second try', () => relay.db.prepare(`SELECT count(*) FROM events e JOIN recipients r ON r.id = e.recipient_id WHERE r.address = 'policy@example.test' AND e.reason = 'blocked'`).pluck().get() as number, (n) => n === 2);

    // The admin API: events and metrics (counted from when it started).
    const events = (await (await get('/v1/events?recipient=policy@example.test')).json()) as { items: Array<{ event: string; reason: string | null }> };
    expect(events.items.filter((e) => e.event === 'permanent_fail').map((e) => e.reason)).toEqual(['blocked', 'blocked']);
    const metrics = await (await get('/metrics')).text();
    expect(metrics).toMatch(/^rebound_blocked_total\{category="policy-related",source="immediate"\} 2$/m);
    expect(metrics).toMatch(/^rebound_bounced_total\{category="bad-mailbox",type="hard",source="immediate"\} 1$/m);
    expect(metrics).toMatch(/^rebound_bounced_total\{category="policy-related",type="hard",source="immediate"\} 0$/m);
  });

  it('suppresses a block category too with the strict rule (every hard category in suppression.categories)', async () => {
    const mx = await fakeMx({ rcpt: () => POLICY_REFUSAL });
    const relay = await relayTo(mx, { suppression: { categories: [...HARD_CATEGORIES] } });
    await submit(relay, ['policy@example.test']);
    await waitForStatuses(relay, { 'policy@example.test': 'bounced' });
    expect(lastFailure(relay, 'policy@example.test')).toMatchObject({ reason: 'bounced', category: 'policy-related' });
    expect(suppressed(relay)).toEqual(['policy@example.test']);
  });
});

describe('delayed failures (DSNs): blocks and bounces', () => {
  async function deliverThenReport(override: ConfigOverride = {}): Promise<TestRelay> {
    const mx = await fakeMx();
    const relay = await relayTo(mx, override);
    await submit(relay, ['policy@example.test']);
    await submit(relay, ['gone@example.test']);
    await waitForStatuses(relay, { 'policy@example.test': 'delivered', 'gone@example.test': 'delivered' });
    const policy = await sendReport(relay, returnPathOf(mx, 'policy@example.test'), postfixDsn('policy@example.test', '5.7.1', '550 5.7.1 Message rejected due to local policy'));
    const gone = await sendReport(relay, returnPathOf(mx, 'gone@example.test'), postfixDsn('gone@example.test', '5.1.1', '550 5.1.1 <gone@example.test>: Recipient address rejected: User unknown'));
    await applied(relay, policy);
    await applied(relay, gone);
    return relay;
  }

  it('records a DSN with 5.7.1 policy refusal as blocked, not suppressed; one with 5.1.1 as bounced and suppressed', async () => {
    const relay = await deliverThenReport();
    expect(statuses(relay)).toEqual({ 'policy@example.test': 'bounced', 'gone@example.test': 'bounced' });
    expect(lastFailure(relay, 'policy@example.test')).toEqual({
      event: 'permanent_fail', reason: 'blocked', source: 'delayed', bounce_type: 'hard', category: 'policy-related', enhanced_code: '5.7.1',
    });
    expect(lastFailure(relay, 'gone@example.test')).toEqual({
      event: 'permanent_fail', reason: 'bounced', source: 'delayed', bounce_type: 'hard', category: 'bad-mailbox', enhanced_code: '5.1.1',
    });
    expect(suppressed(relay)).toEqual(['gone@example.test']);
    expect(relay.db.prepare(`SELECT outcome FROM inbound_reports ORDER BY id`).pluck().all()).toEqual([
      'policy@example.test: blocked (policy-related, hard)',
      'gone@example.test: bounced (bad-mailbox); added to bounces',
    ]);
  });

  it('suppresses the blocked DSN too with the strict rule', async () => {
    const relay = await deliverThenReport({ suppression: { categories: [...HARD_CATEGORIES] } });
    expect(lastFailure(relay, 'policy@example.test')).toMatchObject({ reason: 'bounced', category: 'policy-related' });
    expect(suppressed(relay)).toEqual(['gone@example.test', 'policy@example.test']);
  });
});
