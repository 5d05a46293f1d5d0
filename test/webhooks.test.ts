import { createHmac } from 'node:crypto';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { forbiddenTargetReason, startWebhooks, verifyWebhookSignature, type WebhookStage } from '../src/webhooks/index.js';
import { readHeaders, webhookEventId } from '../src/webhooks/payload.js';
import { startFakeMx, type FakeMx, type FakeMxScript } from './support/fake-mx.js';
import { FAST_DELIVERY, startTestRelay, type TestRelay } from './support/relay.js';
import { startWebhookReceiver, type ReceivedWebhook, type WebhookReceiver, type WebhookScript } from './support/webhook-receiver.js';
import { waitFor } from './support/wait-for.js';

const SECRET = 'whsec-test-0123456789abcdef';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fakeMx(script: FakeMxScript = {}): Promise<FakeMx> {
  const mx = await startFakeMx(script);
  cleanups.push(() => mx.close());
  return mx;
}

async function receiver(script?: WebhookScript): Promise<WebhookReceiver> {
  const started = await startWebhookReceiver(script);
  cleanups.push(() => started.close());
  return started;
}

interface Setup {
  relay: TestRelay;
  stage: WebhookStage;
  /** A read-write connection, as the stage's own (tests write events through it as apply-report would). */
  writer: Database;
}

type Endpoint = { url: string; events: string[]; secret?: string };

/**
 * A delivering relay routed to a fake MX, and the webhook stage beside it: the relay's own when
 * it starts one (RunningRelay.webhooks), else one started here on a second connection to the
 * store, as src/relay.ts would with its own.
 */
async function relayWithWebhooks(mx: FakeMx, endpoints: Endpoint[], webhooks: Record<string, unknown> = {}): Promise<Setup> {
  const relay = await startTestRelay({
    delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
    webhooks: {
      endpoints: endpoints.map((e) => ({ secret: SECRET, ...e })),
      allowPrivateTargets: true,
      pollIntervalMs: 50,
      timeoutSeconds: 2,
      concurrency: 4,
      retryScheduleSeconds: [0.1, 0.1, 0.1],
      ...webhooks,
    },
  });
  cleanups.push(() => relay.stop());
  const writer = new BetterSqlite3(relay.config.store.path);
  writer.pragma('busy_timeout = 5000');
  writer.pragma('foreign_keys = ON');
  const own = (relay.relay as unknown as { webhooks?: WebhookStage | null }).webhooks;
  const stage = own ?? startWebhooks(relay.config, writer, createLogger('silent'));
  cleanups.push(async () => {
    if (!own) await stage.stop();
    writer.close();
  });
  return { relay, stage, writer };
}

async function submit(relay: TestRelay, to: string[], options: { subject?: string; headers?: Record<string, string> } = {}): Promise<string> {
  const info = await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({
    from: 'Shop <app@shop.example>',
    to,
    subject: options.subject ?? 'hello',
    text: 'Hello there.\r\n',
    messageId: `<${Math.random().toString(36).slice(2)}@shop.example>`,
    headers: options.headers ?? {},
  });
  return info.response.split(' ').pop() as string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function statuses(relay: TestRelay): Record<string, string> {
  const rows = relay.db.prepare('SELECT address, status FROM recipients ORDER BY id').all() as Array<{ address: string; status: string }>;
  return Object.fromEntries(rows.map((r) => [r.address, r.status]));
}

function deliveries(relay: TestRelay): Array<Record<string, unknown>> {
  return relay.db.prepare('SELECT id, event_id, endpoint_url, status, attempts, last_http_status, last_error FROM webhook_deliveries ORDER BY id').all() as Array<Record<string, unknown>>;
}

function attempts(relay: TestRelay, deliveryId?: number): Array<{ delivery_id: number; http_status: number | null; error: string | null; duration_ms: number }> {
  const where = deliveryId === undefined ? '' : `WHERE delivery_id = ${Number(deliveryId)}`;
  return relay.db.prepare(`SELECT delivery_id, http_status, error, duration_ms FROM webhook_attempts ${where} ORDER BY id`).all() as Array<{
    delivery_id: number;
    http_status: number | null;
    error: string | null;
    duration_ms: number;
  }>;
}

/** The receiver's check, exactly as docs/webhooks.md shows it (independent of src/webhooks). */
function receiverVerifies(secret: string, body: { signature: { timestamp: string; token: string; signature: string } }): boolean {
  const { timestamp, token, signature } = body.signature;
  const expected = createHmac('sha256', secret).update(timestamp + token).digest('hex');
  return expected === signature && Math.abs(Date.now() / 1000 - Number(timestamp)) < 300;
}

describe('webhooks against a real HTTP server on 127.0.0.1', () => {
  it('POSTs a failed event once after the target answered 500 twice: signed, Mailgun-shaped, every try recorded', async () => {
    const target = await receiver((nth) => (nth <= 2 ? 500 : 200));
    const mx = await fakeMx({
      rcpt: (address) => (address.startsWith('unknown@') ? { code: 550, text: '5.1.1 <unknown@example.test>: Recipient address rejected: User unknown in virtual mailbox table' } : null),
    });
    const { relay, stage } = await relayWithWebhooks(mx, [{ url: target.url, events: ['permanent_fail'] }]);
    const queueId = await submit(relay, ['unknown@example.test', 'ok@example.test'], { subject: 'Spring sale', headers: { 'X-Campaign-ID': 'spring-2026' } });

    await waitFor('the 2xx', () => target.accepted().length, (n) => n === 1);
    await sleep(400); // eight polls: nothing more may come
    expect(target.received.map((r) => r.answer)).toEqual([500, 500, 200]);
    expect(target.accepted()).toHaveLength(1);

    // Every try is the same event (same id), signed afresh (new token) with the endpoint's secret.
    const bodies = target.received.map((r) => r.body);
    expect(new Set(bodies.map((b) => b['event-data'].id)).size).toBe(1);
    expect(new Set(bodies.map((b) => b.signature.token)).size).toBe(3);
    for (const body of bodies) {
      expect(body.signature.token).toMatch(/^[0-9a-f]{50}$/);
      expect(body.signature.timestamp).toMatch(/^\d{10}$/);
      expect(receiverVerifies(SECRET, body)).toBe(true);
      expect(verifyWebhookSignature(SECRET, body.signature)).toBe(true);
      expect(verifyWebhookSignature('another-secret-0123456789', body.signature)).toBe(false);
      expect(verifyWebhookSignature(SECRET, { ...body.signature, timestamp: String(Number(body.signature.timestamp) + 1) })).toBe(false);
    }
    expect(target.received[0]?.headers['content-type']).toBe('application/json');

    const eventRow = relay.db.prepare(`SELECT e.id, e.at FROM events e JOIN recipients r ON r.id = e.recipient_id WHERE r.address = 'unknown@example.test' AND e.event = 'permanent_fail'`).get() as { id: number; at: string };
    const data = bodies[2]['event-data'];
    expect(data).toMatchObject({
      id: webhookEventId(queueId, eventRow.id),
      event: 'failed',
      severity: 'permanent',
      reason: 'bounce',
      'log-level': 'error',
      timestamp: Date.parse(eventRow.at) / 1000,
      recipient: 'unknown@example.test',
      'recipient-domain': 'example.test',
      message: {
        headers: {
          'message-id': expect.stringMatching(/@shop\.example$/),
          from: 'Shop <app@shop.example>',
          to: 'unknown@example.test, ok@example.test',
          subject: 'Spring sale',
        },
      },
      campaigns: [{ id: 'spring-2026', name: 'spring-2026' }],
      'delivery-status': {
        code: 550,
        'enhanced-code': '5.1.1',
        message: '5.1.1 <unknown@example.test>: Recipient address rejected: User unknown in virtual mailbox table',
        description: '',
        'attempt-no': 1,
        'bounce-type': 'hard',
        category: 'bad-mailbox',
        'mx-host': '127.0.0.1',
      },
      flags: { 'is-delayed-bounce': false },
      rebound: { 'queue-id': queueId, event: 'permanent_fail', reason: 'bounced', source: 'immediate' },
    });
    expect(data.message.headers['message-id']).not.toMatch(/^</);

    // One delivery row (the delivered event of ok@ is not an event this endpoint wants), three tries.
    const [delivery] = deliveries(relay);
    expect(deliveries(relay)).toHaveLength(1);
    expect(delivery).toMatchObject({ event_id: eventRow.id, endpoint_url: target.url, status: 'delivered', attempts: 3, last_http_status: 200, last_error: null });
    const tries = attempts(relay);
    expect(tries.map((t) => t.http_status)).toEqual([500, 500, 200]);
    expect(tries.map((t) => t.error)).toEqual(['HTTP 500: scripted 500', 'HTTP 500: scripted 500', null]);
    expect(tries.every((t) => typeof t.duration_ms === 'number')).toBe(true);
    // Both outbox rows (delivered, permanent_fail) are fanned out; "accepted" never enters the outbox.
    expect(relay.db.prepare('SELECT count(*) AS n, sum(fanned_out) AS done FROM webhook_outbox').get()).toEqual({ n: 2, done: 2 });
    expect(stage.backlog()).toBe(0);
    expect(stage.failures()).toBe(0);
  });

  it("maps each outcome to Mailgun's names: delivered, temporary and permanent failures, suppressed, a delayed bounce, a complaint", async () => {
    const target = await receiver(() => 200);
    const mx = await fakeMx({
      rcpt: (address, attempt) => {
        if (address.startsWith('unknown@')) return { code: 550, text: '5.1.1 User unknown' };
        if (address.startsWith('later@') && attempt === 1) return { code: 450, text: '4.2.1 Mailbox busy, try again later' };
        return null;
      },
    });
    const { relay, writer } = await relayWithWebhooks(mx, [{ url: target.url, events: ['delivered', 'temporary_fail', 'permanent_fail', 'complained', 'unsubscribed'] }]);
    writer
      .prepare(`INSERT INTO suppressions (address, type, source, first_at, last_at) VALUES ('gone@example.test', 'complaints', 'manual', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`)
      .run();
    await submit(relay, ['ok@example.test', 'unknown@example.test', 'later@example.test', 'gone@example.test']);
    await waitFor('final statuses', () => statuses(relay), (s) => s['ok@example.test'] === 'delivered' && s['later@example.test'] === 'delivered' && s['unknown@example.test'] === 'bounced' && s['gone@example.test'] === 'suppressed');

    // What the inbound stage writes for a DSN and an ARF report about ok@ (src/inbound/apply-report.ts).
    const ok = writer.prepare(`SELECT id, message_id FROM recipients WHERE address = 'ok@example.test'`).get() as { id: number; message_id: number };
    const insert = writer.prepare(`
      INSERT INTO events (at, event, message_id, recipient_id, detail, source, reason, severity, bounce_type, category, code, enhanced_code, mx_host)
      VALUES (?, ?, ?, ?, ?, 'delayed', ?, ?, ?, ?, NULL, ?, '127.0.0.1')`);
    insert.run(new Date().toISOString(), 'permanent_fail', ok.message_id, ok.id, '5.2.1 smtp; 550 5.2.1 mailbox disabled', 'bounced', 'permanent', 'hard', 'inactive-mailbox', '5.2.1');
    insert.run(new Date().toISOString(), 'complained', ok.message_id, ok.id, null, null, null, null, null, null);

    await waitFor('seven events', () => target.accepted().length, (n) => n === 7);
    const byKey = new Map<string, any>();
    for (const { body } of target.accepted() as ReceivedWebhook[]) {
      const d = body['event-data'];
      byKey.set(`${d.recipient} ${d.event} ${d.severity ?? ''} ${d.flags['is-delayed-bounce'] ? 'delayed' : ''}`.trim(), d);
      expect(receiverVerifies(SECRET, body)).toBe(true);
    }
    expect([...byKey.keys()].sort()).toEqual([
      'gone@example.test failed permanent',
      'later@example.test delivered',
      'later@example.test failed temporary',
      'ok@example.test complained',
      'ok@example.test delivered',
      'ok@example.test failed permanent delayed',
      'unknown@example.test failed permanent',
    ]);
    expect(byKey.get('ok@example.test delivered')).toMatchObject({
      'log-level': 'info',
      'delivery-status': { code: 250, message: expect.stringMatching(/queued on the fake MX/), 'attempt-no': 1, 'mx-host': '127.0.0.1', 'bounce-type': null },
    });
    expect(byKey.get('ok@example.test delivered')).not.toHaveProperty('reason');
    expect(byKey.get('later@example.test failed temporary')).toMatchObject({
      reason: 'generic',
      'log-level': 'warn',
      'delivery-status': { code: 450, 'enhanced-code': '4.2.1', 'attempt-no': 1, 'bounce-type': 'soft' },
    });
    expect(byKey.get('later@example.test delivered')['delivery-status']['attempt-no']).toBe(2);
    expect(byKey.get('unknown@example.test failed permanent')).toMatchObject({ reason: 'bounce', 'delivery-status': { code: 550, 'enhanced-code': '5.1.1', category: 'bad-mailbox' } });
    expect(byKey.get('gone@example.test failed permanent')).toMatchObject({
      reason: 'suppress-complaint',
      'delivery-status': { code: 607, message: '', description: expect.stringMatching(/complaints suppression list/), 'attempt-no': 0 },
    });
    expect(byKey.get('ok@example.test failed permanent delayed')).toMatchObject({
      reason: 'bounce',
      flags: { 'is-delayed-bounce': true },
      'delivery-status': { code: null, 'enhanced-code': '5.2.1', message: '5.2.1 smtp; 550 5.2.1 mailbox disabled', category: 'inactive-mailbox', 'bounce-type': 'hard', 'attempt-no': 1 },
    });
    const complaint = byKey.get('ok@example.test complained');
    expect(complaint).toMatchObject({ 'log-level': 'warn', flags: { 'is-delayed-bounce': false } });
    expect(complaint).not.toHaveProperty('delivery-status');
    expect(complaint).not.toHaveProperty('severity');
  });

  it('numbers each try as recipients.attempts counts them: a 452 "too many recipients" shares its number with the resend', async () => {
    const target = await receiver(() => 200);
    const mx = await fakeMx({
      rcpt: (address, attempt) => {
        if (address.startsWith('second@') && attempt === 1) return { code: 452, text: '4.5.3 Too many recipients' };
        if (address.startsWith('second@') && attempt === 2) return { code: 450, text: '4.2.1 Mailbox busy, try again later' };
        return null;
      },
    });
    // Fanned out only after all three tries, so each event's number is read after later tries exist.
    const { relay } = await relayWithWebhooks(mx, [{ url: target.url, events: ['delivered', 'temporary_fail'] }], { pollIntervalMs: 1500 });
    await submit(relay, ['first@example.test', 'second@example.test']);
    await waitFor('second delivered', () => statuses(relay)['second@example.test'], (s) => s === 'delivered');
    await waitFor('four events', () => target.accepted().length, (n) => n === 4);
    const second = (target.accepted() as ReceivedWebhook[])
      .map(({ body }) => body['event-data'])
      .filter((d) => d.recipient === 'second@example.test')
      // In time order; the 452 and the resend's 450 can share a millisecond.
      .sort((a, b) => a.timestamp - b.timestamp || b['delivery-status'].code - a['delivery-status'].code)
      .map((d) => [d.event, d['delivery-status'].code, d['delivery-status']['attempt-no']]);
    expect(second).toEqual([
      ['failed', 452, 1],
      ['failed', 450, 1],
      ['delivered', 250, 2],
    ]);
  });

  it('stops at a 406: one try, recorded, the delivery rejected', async () => {
    const target = await receiver(() => 406);
    const mx = await fakeMx();
    const { relay, stage } = await relayWithWebhooks(mx, [{ url: target.url, events: ['delivered'] }]);
    await submit(relay, ['ok@example.test']);
    await waitFor('a rejected delivery', () => deliveries(relay)[0]?.status, (s) => s === 'rejected');
    await sleep(400);
    expect(target.received).toHaveLength(1);
    expect(deliveries(relay)).toMatchObject([{ status: 'rejected', attempts: 1, last_http_status: 406 }]);
    expect(attempts(relay)).toMatchObject([{ http_status: 406, error: 'HTTP 406: scripted 406' }]);
    expect(stage.failures()).toBe(1);
    expect(stage.backlog()).toBe(0);
  });

  it('gives up after the last wait of webhooks.retryScheduleSeconds', async () => {
    const target = await receiver(() => 503);
    const mx = await fakeMx();
    const { relay, stage } = await relayWithWebhooks(mx, [{ url: target.url, events: ['delivered'] }], { retryScheduleSeconds: [0.05, 0.05] });
    await submit(relay, ['ok@example.test']);
    await waitFor('a failed delivery', () => deliveries(relay)[0]?.status, (s) => s === 'failed');
    await sleep(300);
    expect(target.received).toHaveLength(3); // the first try, then one after each wait
    expect(deliveries(relay)).toMatchObject([{ status: 'failed', attempts: 3, last_http_status: 503, last_error: 'HTTP 503: scripted 503' }]);
    expect(attempts(relay).map((t) => t.http_status)).toEqual([503, 503, 503]);
    expect(stage.failures()).toBe(1);
  });

  it('keeps delivering mail while the webhook target is down, and catches up once it is back', async () => {
    const target = await receiver(() => 'hang'); // accepts the connection, never answers
    const mx = await fakeMx();
    const { relay, stage } = await relayWithWebhooks(mx, [{ url: target.url, events: ['delivered'] }], {
      timeoutSeconds: 1,
      concurrency: 2,
      retryScheduleSeconds: Array.from({ length: 30 }, () => 0.2),
    });
    const to = Array.from({ length: 6 }, (_, i) => `r${i}@example.test`);
    for (const address of to) await submit(relay, [address]);
    await waitFor('all mail delivered', () => statuses(relay), (s) => to.every((a) => s[a] === 'delivered'));
    expect(mx.received).toHaveLength(6);
    expect(target.accepted()).toHaveLength(0);
    await waitFor('six deliveries pending', () => stage.backlog(), (n) => n === 6);
    // The target stays down until a try has hit the timeout: the case this test is about.
    await waitFor('a try timed out', () => attempts(relay).some((t) => t.http_status === null && /timed out after 1 s/.test(t.error ?? '')), Boolean);

    target.setScript(() => 200); // the target is back
    await waitFor('every event POSTed', () => target.accepted().length, (n) => n === 6, 15_000);
    await sleep(300);
    const ids = target.accepted().map((r) => r.body['event-data'].id);
    expect(new Set(ids).size).toBe(6);
    expect(target.accepted()).toHaveLength(6); // each exactly once as a 2xx
    expect(target.accepted().map((r) => r.body['event-data'].recipient).sort()).toEqual([...to].sort());
    expect(deliveries(relay).every((d) => d.status === 'delivered')).toBe(true);
    expect(stage.backlog()).toBe(0);
  });
  it('gives each endpoint its own slots: one that hangs does not slow a healthy one', async () => {
    const hanging = await receiver(() => 'hang'); // accepts the connection, never answers
    const healthy = await receiver(() => 200);
    const mx = await fakeMx();
    const { relay } = await relayWithWebhooks(
      mx,
      [
        { url: hanging.url, events: ['delivered'] },
        { url: healthy.url, events: ['delivered'] },
      ],
      { timeoutSeconds: 1, concurrency: 2, retryScheduleSeconds: [600] },
    );
    const to = Array.from({ length: 20 }, (_, i) => `r${i}@example.test`);
    await submit(relay, to);
    await waitFor('all mail delivered', () => statuses(relay), (s) => to.every((a) => s[a] === 'delivered'));
    // Sharing two slots with the hanging endpoint, the healthy one got about one event per
    // timeout (1 s): 20 would take ~20 s. On its own slots it gets them all at once.
    await waitFor('every event at the healthy endpoint', () => healthy.accepted().length, (n) => n === 20, 5_000);
    expect(new Set(healthy.accepted().map((r) => r.body['event-data'].recipient))).toEqual(new Set(to));
    expect(hanging.received.length).toBeLessThanOrEqual(4); // its own two slots, each held to the timeout
  });

  it('gives up deliveries owed to an endpoint no longer in webhooks.endpoints, at start', async () => {
    const target = await receiver(() => 200);
    const mx = await fakeMx();
    const { relay, writer } = await relayWithWebhooks(mx, [{ url: target.url, events: ['delivered'] }]);
    await submit(relay, ['ok@example.test']);
    await waitFor('a delivered webhook', () => target.accepted().length, (n) => n === 1);
    const eventId = (writer.prepare("SELECT id FROM events WHERE event = 'delivered'").get() as { id: number }).id;
    const at = new Date().toISOString();
    writer
      .prepare(`INSERT INTO webhook_deliveries (event_id, endpoint_url, status, attempts, next_attempt_at, created_at, updated_at) VALUES (?, 'http://127.0.0.1:9/gone', 'pending', 0, ?, ?, ?)`)
      .run(eventId, at, at, at);
    const stage = startWebhooks(relay.config, writer, createLogger('silent'));
    cleanups.push(() => stage.stop());
    expect(deliveries(relay).find((d) => d.endpoint_url === 'http://127.0.0.1:9/gone')).toMatchObject({ status: 'failed', last_error: 'the endpoint is no longer in webhooks.endpoints' });
  });

  it('stops promptly with a try hanging: the cut-off try is recorded and the delivery stays pending for the next start', async () => {
    const target = await receiver(() => 'hang');
    const mx = await fakeMx();
    const { relay, stage } = await relayWithWebhooks(mx, [{ url: target.url, events: ['delivered'] }], { timeoutSeconds: 30 });
    await submit(relay, ['ok@example.test']);
    await waitFor('a hanging try', () => target.received.length, (n) => n === 1);
    const started = Date.now();
    await stage.stop();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(deliveries(relay)).toMatchObject([{ status: 'pending', attempts: 1, last_error: expect.stringMatching(/^interrupted/) }]);
    expect(attempts(relay)).toMatchObject([{ http_status: null, error: expect.stringMatching(/^interrupted: the webhook sender is stopping/) }]);
  });
});

describe('SSRF: webhook targets on private addresses', () => {
  it('refuses loopback targets (by address and by a name that resolves there) unless webhooks.allowPrivateTargets, and records why', async () => {
    const target = await receiver(() => 200);
    const mx = await fakeMx();
    const byName = `http://localhost:${target.port}/hooks/rebound`;
    const { relay, stage } = await relayWithWebhooks(
      mx,
      [
        { url: target.url, events: ['delivered'] },
        { url: byName, events: ['delivered'] },
      ],
      { allowPrivateTargets: false },
    );
    await submit(relay, ['ok@example.test']);
    await waitFor('two failed deliveries', () => deliveries(relay).map((d) => d.status), (s) => s.length === 2 && s.every((x) => x === 'failed'));
    await sleep(300);
    expect(statuses(relay)['ok@example.test']).toBe('delivered'); // mail is not held up by it
    expect(target.received).toHaveLength(0); // no request ever reached the server
    const rows = deliveries(relay);
    expect(rows.map((d) => d.attempts)).toEqual([1, 1]); // refused once: a retry would be refused again
    const byUrl = new Map(rows.map((d) => [d.endpoint_url, attempts(relay, d.id as number)]));
    expect(byUrl.get(target.url)).toMatchObject([{ http_status: null, error: expect.stringMatching(/^refused: 127\.0\.0\.1 is a loopback address; .*webhooks\.allowPrivateTargets/) }]);
    expect(byUrl.get(byName)).toMatchObject([{ http_status: null, error: expect.stringMatching(/^refused: localhost resolves to (127\.0\.0\.1|::1), which is a loopback address/) }]);
    expect(stage.failures()).toBe(2);
  });

  it('allows only public unicast addresses, judging IPv4 inside IPv6 forms by the IPv4 address', () => {
    const refused = [
      '127.0.0.1',
      '127.8.9.10',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '100.100.100.200',
      '0.0.0.0',
      '255.255.255.255',
      '224.0.0.1',
      '192.0.2.10',
      '::',
      '::1',
      'fe80::1',
      'fc00::1',
      'fd00:ec2::254',
      'fec0::1',
      'ff02::1',
      '2001:db8::1',
      'not-an-ip',
    ];
    for (const address of refused) expect(forbiddenTargetReason(address), address).not.toBeNull();
    expect(forbiddenTargetReason('169.254.169.254')).toMatch(/link-local.*metadata/);
    expect(forbiddenTargetReason('10.1.2.3')).toMatch(/private/);
    for (const address of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700:4700::1111']) {
      expect(forbiddenTargetReason(address), address).toBeNull();
    }
  });

  // Each IPv6 form that carries an IPv4 address, written as an attacker would and as the URL
  // parser hands it on (new URL('http://[::127.0.0.1]').hostname is '[::7f00:1]').
  const embeddedForms: Array<[form: string, address: string, verdict: RegExp | null]> = [
    ['IPv4-compatible, as written', '::127.0.0.1', /IPv4-compatible.*127\.0\.0\.1/],
    ['IPv4-compatible, as the URL parser writes it', new URL('http://[::127.0.0.1]').hostname.slice(1, -1), /IPv4-compatible.*127\.0\.0\.1/],
    ['IPv4-compatible, metadata', '::a9fe:a9fe', /IPv4-compatible.*169\.254\.169\.254/],
    ['IPv4-compatible, even a public one (deprecated)', '::8.8.8.8', /IPv4-compatible/],
    ['IPv4-mapped loopback', '::ffff:127.0.0.1', /loopback.*127\.0\.0\.1 embedded in IPv6/],
    ['IPv4-mapped, as the URL parser writes it', new URL('http://[::ffff:127.0.0.1]').hostname.slice(1, -1), /loopback/],
    ['IPv4-mapped metadata', '::ffff:169.254.169.254', /link-local/],
    ['IPv4-mapped private', '::ffff:10.0.0.1', /private/],
    ['IPv4-mapped public', '::ffff:8.8.8.8', null],
    ['IPv4-translated loopback', '::ffff:0:127.0.0.1', /loopback/],
    ['IPv4-translated private', '::ffff:0:c0a8:101', /private/],
    ['IPv4-translated public', '::ffff:0:8.8.8.8', null],
    ['NAT64 metadata', '64:ff9b::a9fe:a9fe', /link-local/],
    ['NAT64 loopback', '64:ff9b::127.0.0.1', /loopback/],
    ['NAT64 public', '64:ff9b::808:808', null],
    ['local-use NAT64', '64:ff9b:1::7f00:1', /local-use NAT64/],
    ['local-use NAT64, public inside', '64:ff9b:1:808:8:800::', /local-use NAT64/],
    ['6to4 loopback', '2002:7f00:1::1', /loopback/],
    ['6to4 private', '2002:a00:1::', /private/],
    ['6to4 public', '2002:808:808::1', null],
    ['Teredo, loopback client (XORed)', '2001:0:4136:e378:0:fb2d:80ff:fffe', /loopback.*127\.0\.0\.1.*Teredo client/],
    ['Teredo, documentation client (RFC 4380 example)', '2001:0:4136:e378:8000:63bf:3fff:fdd2', /reserved.*192\.0\.2\.45.*Teredo client/],
    ['Teredo, private server', '2001:0:a00:1:0:fb2d:f7f7:f7f7', /private.*10\.0\.0\.1.*Teredo server/],
    ['Teredo, public server and client', '2001:0:4136:e378:0:fb2d:f7f7:f7f7', null],
    ['IPv6 loopback, long form', '0:0:0:0:0:0:0:1', /loopback/],
    ['IPv6 unspecified', '::', /unspecified/],
    ['IPv6 link-local', 'fe80::a9fe:a9fe', /link-local/],
    ['IPv6 unique-local', 'fd12:3456::1', /unique-local/],
    ['IPv6 multicast', 'ff05::2', /multicast/],
  ];
  it.each(embeddedForms)('judges %s (%s)', (_form, address, verdict) => {
    if (verdict === null) expect(forbiddenTargetReason(address)).toBeNull();
    else expect(forbiddenTargetReason(address)).toMatch(verdict);
  });

  it('refuses a webhook to http://[::127.0.0.1]:PORT (the IPv4-compatible form of loopback) without sending it', async () => {
    const target = await receiver(() => 200);
    const mx = await fakeMx();
    const url = `http://[::127.0.0.1]:${target.port}/hooks/rebound`;
    const { relay, stage } = await relayWithWebhooks(mx, [{ url, events: ['delivered'] }], { allowPrivateTargets: false });
    await submit(relay, ['ok@example.test']);
    await waitFor('a failed delivery', () => deliveries(relay)[0]?.status, (s) => s === 'failed');
    expect(target.received).toHaveLength(0);
    expect(deliveries(relay)).toMatchObject([{ endpoint_url: url, status: 'failed', attempts: 1 }]);
    expect(attempts(relay)).toMatchObject([{ http_status: null, error: expect.stringMatching(/^refused: ::7f00:1 is a deprecated IPv4-compatible address .*127\.0\.0\.1.*webhooks\.allowPrivateTargets/) }]);
    expect(stage.failures()).toBe(1);
  });
});

describe('payload helpers', () => {
  it('reads To and From from the header section only, unfolded and decoded', () => {
    const head = Buffer.from('From: =?UTF-8?Q?Caf=C3=A9?= <shop@example.test>\r\nTo: a@example.test,\r\n b@example.test\r\nSubject: x\r\n\r\nTo: not-a-header@example.test\r\n');
    const headers = readHeaders(head, ['from', 'to']);
    expect(headers.get('from')).toBe('Café <shop@example.test>');
    expect(headers.get('to')).toBe('a@example.test, b@example.test');
  });

  it('gives an event the same id on every try and a different one per event or message', () => {
    expect(webhookEventId('01ABC', 7)).toBe(webhookEventId('01ABC', 7));
    expect(webhookEventId('01ABC', 7)).not.toBe(webhookEventId('01ABC', 8));
    expect(webhookEventId('01ABC', 7)).not.toBe(webhookEventId('01ABD', 7));
    expect(webhookEventId('01ABC', 7)).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });
});
