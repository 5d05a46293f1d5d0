import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { closedPort, startBrokenTlsMx, startFakeMx, startSilentServer, type FakeMx, type FakeMxScript } from './support/fake-mx.js';
import { startDnsServer, type ZoneEntry } from './support/dns-server.js';
import { FAST_DELIVERY, startTestRelay, type ConfigOverride, type TestRelay } from './support/relay.js';
import { waitFor } from './support/wait-for.js';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';

const execFileAsync = promisify(execFile);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fakeMx(script: FakeMxScript = {}): Promise<FakeMx> {
  const mx = await startFakeMx(script);
  cleanups.push(() => mx.close());
  return mx;
}

async function deliveringRelay(delivery: Record<string, unknown>, extra: ConfigOverride = {}): Promise<TestRelay> {
  const relay = await startTestRelay({ ...extra, delivery: { ...FAST_DELIVERY, ...delivery } });
  cleanups.push(() => relay.stop());
  return relay;
}

async function submit(relay: TestRelay, to: string[], options: { from?: string; subject?: string } = {}): Promise<string> {
  const info = await nodemailer
    .createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true })
    .sendMail({ from: options.from ?? 'app@shop.example', to, subject: options.subject ?? 'hello', text: 'Hello there.\r\n' });
  return info.response.split(' ').pop() as string;
}

interface RecipientRow {
  address: string;
  status: string;
  attempts: number;
  last_reply: string | null;
}

function recipients(relay: TestRelay): RecipientRow[] {
  return relay.db.prepare('SELECT address, status, attempts, last_reply FROM recipients ORDER BY id').all() as RecipientRow[];
}

function waitForStatuses(relay: TestRelay, expected: Record<string, string>, timeoutMs?: number): Promise<RecipientRow[]> {
  return waitFor(
    'recipient statuses',
    () => recipients(relay),
    (rows) => Object.entries(expected).every(([address, status]) => rows.find((r) => r.address === address)?.status === status),
    timeoutMs,
  );
}

function eventsFor(relay: TestRelay, address: string): Array<Record<string, unknown>> {
  return relay.db
    .prepare(
      `SELECT e.event, e.reason, e.source, e.severity, e.bounce_type, e.category, e.code, e.enhanced_code
         FROM events e JOIN recipients r ON r.id = e.recipient_id WHERE r.address = ? ORDER BY e.id`,
    )
    .all(address) as Array<Record<string, unknown>>;
}

describe('delivery to a routed next hop', () => {
  it.each([
    ['on its own thread', true],
    ['on the main thread', false],
  ])('relays the exact stored bytes and envelope, and records the attempt and the delivered event (SMTP client %s)', async (_where, sendThread) => {
    const mx = await fakeMx();
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` }, heloName: 'out.relay.test', sendThread });
    const queueId = await submit(relay, ['alice@example.test', 'bob@example.test']);
    await waitForStatuses(relay, { 'alice@example.test': 'delivered', 'bob@example.test': 'delivered' });

    expect(mx.received).toHaveLength(1); // one transaction carries the message's recipients at one domain
    const [message] = mx.received;
    const stored = relay.db.prepare('SELECT received_header, raw FROM messages WHERE queue_id = ?').get(queueId) as { received_header: string; raw: Buffer };
    expect(message?.raw.equals(Buffer.concat([Buffer.from(stored.received_header), stored.raw]))).toBe(true);
    // MAIL FROM is the signed return path (VERP) naming the transaction's first recipient.
    expect(message).toMatchObject({ to: ['alice@example.test', 'bob@example.test'], helo: 'out.relay.test' });
    expect(message?.from).toMatch(/^bounces\+[0-9a-z]+-[0-9a-z]+-[a-z2-7]{13}@relay\.test$/);

    const attempt = relay.db.prepare('SELECT * FROM attempts ORDER BY id LIMIT 1').get() as Record<string, unknown>;
    expect(attempt).toMatchObject({ mx_host: '127.0.0.1', mx_ip: '127.0.0.1', outcome: 'delivered', code: 250, mail_from: message?.from });
    expect(typeof attempt.duration_ms).toBe('number');
    expect(eventsFor(relay, 'alice@example.test').map((e) => e.event)).toEqual(['accepted', 'delivered']);
    expect(recipients(relay)[0]).toMatchObject({ attempts: 1, last_reply: expect.stringMatching(/^250 /) });
  });

  it('classifies each recipient by its own RCPT reply: delivered, bounced (hard, suppressed), bounced (soft), retried', async () => {
    const mx = await fakeMx({
      rcpt: (address, attempt) => {
        if (address.startsWith('unknown@')) return { code: 550, text: '5.1.1 <unknown@example.test>: Recipient address rejected: User unknown in virtual mailbox table' };
        if (address.startsWith('full@')) return { code: 552, text: '5.2.2 <full@example.test>: Mailbox full' };
        if (address.startsWith('later@') && attempt === 1) return { code: 450, text: '4.2.1 <later@example.test>: Recipient address rejected: try again later' };
        return null;
      },
    });
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    await submit(relay, ['ok@example.test', 'unknown@example.test', 'full@example.test', 'later@example.test']);
    const rows = await waitForStatuses(relay, {
      'ok@example.test': 'delivered',
      'unknown@example.test': 'bounced',
      'full@example.test': 'bounced',
      'later@example.test': 'delivered',
    });
    expect(rows.find((r) => r.address === 'later@example.test')?.attempts).toBe(2);
    expect(rows.find((r) => r.address === 'unknown@example.test')?.last_reply).toMatch(/^550 5\.1\.1 /);

    expect(eventsFor(relay, 'unknown@example.test').at(-1)).toMatchObject({
      event: 'permanent_fail', reason: 'bounced', source: 'immediate', severity: 'permanent', bounce_type: 'hard', category: 'bad-mailbox', code: 550, enhanced_code: '5.1.1',
    });
    expect(eventsFor(relay, 'full@example.test').at(-1)).toMatchObject({ event: 'permanent_fail', severity: 'permanent', bounce_type: 'soft', category: 'quota-issues' });
    expect(eventsFor(relay, 'later@example.test').map((e) => e.event)).toEqual(['accepted', 'temporary_fail', 'delivered']);

    // Hard bounces land on the suppression list with their evidence; soft ones never do.
    expect(relay.db.prepare('SELECT address, type, source, code, enhanced_code, category, count FROM suppressions').all()).toEqual([
      { address: 'unknown@example.test', type: 'bounces', source: 'immediate', code: 550, enhanced_code: '5.1.1', category: 'bad-mailbox', count: 1 },
    ]);
    expect(mx.received.map((m) => m.to)).toEqual([['ok@example.test'], ['later@example.test']]);
  });

  it('applies a DATA-stage rejection to every recipient of the transaction', async () => {
    const mx = await fakeMx({ data: () => ({ code: 554, text: '5.7.1 Message rejected: content looks like spam' }) });
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    await submit(relay, ['a@example.test', 'b@example.test']);
    await waitForStatuses(relay, { 'a@example.test': 'bounced', 'b@example.test': 'bounced' });
    for (const address of ['a@example.test', 'b@example.test']) {
      expect(eventsFor(relay, address).at(-1)).toMatchObject({ event: 'permanent_fail', code: 554, enhanced_code: '5.7.1', severity: 'permanent' });
    }
  });

  it('reads a "user unknown" refusal at end of DATA as the recipient\'s filter (the address was accepted at RCPT TO)', async () => {
    const mx = await fakeMx({ data: () => ({ code: 550, text: 'Unknown user' }) });
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    await submit(relay, ['filtered@example.test']);
    await waitForStatuses(relay, { 'filtered@example.test': 'bounced' });
    expect(eventsFor(relay, 'filtered@example.test').at(-1)).toMatchObject({ event: 'permanent_fail', code: 550, category: 'policy-related' });
  });

  it('never sends to a suppressed address: drops it with permanent_fail (suppressed), and sends the rest', async () => {
    const mx = await fakeMx();
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    const writer = new (await import('better-sqlite3')).default(relay.config.store.path);
    writer
      .prepare(`INSERT INTO suppressions (address, type, source, first_at, last_at) VALUES ('gone@example.test', 'bounces', 'manual', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`)
      .run();
    writer.close();
    await submit(relay, ['gone@example.test', 'here@example.test']);
    await waitForStatuses(relay, { 'gone@example.test': 'suppressed', 'here@example.test': 'delivered' });
    expect(eventsFor(relay, 'gone@example.test').at(-1)).toMatchObject({ event: 'permanent_fail', reason: 'suppressed' });
    expect(mx.received.map((m) => m.to)).toEqual([['here@example.test']]);
  });

  it('declares BODY=8BITMIME for a message with 8-bit bytes, and sends them unchanged', async () => {
    const mx = await fakeMx();
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    const raw = Buffer.from('From: app@shop.example\r\nTo: eight@example.test\r\nSubject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n', 'utf8');
    await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ envelope: { from: 'app@shop.example', to: ['eight@example.test'] }, raw });
    await waitForStatuses(relay, { 'eight@example.test': 'delivered' });
    expect(mx.received[0]?.body).toBe('8BITMIME');
    expect(mx.received[0]?.raw.subarray(-raw.length).equals(raw)).toBe(true);
  });

  it('bounces, without sending it, a message larger than the SIZE the MX announces (552 5.3.4)', async () => {
    const mx = await fakeMx({ size: 200 });
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    await submit(relay, ['big@example.test'], { subject: 'x'.repeat(300) });
    await waitForStatuses(relay, { 'big@example.test': 'bounced' });
    expect(mx.received).toHaveLength(0);
    expect(eventsFor(relay, 'big@example.test').at(-1)).toMatchObject({ event: 'permanent_fail', severity: 'permanent', bounce_type: 'soft', category: 'content-related', code: 552, enhanced_code: '5.3.4' });
    // The message was too big, not the address: it is not suppressed.
    expect(relay.db.prepare('SELECT count(*) AS n FROM suppressions').get()).toEqual({ n: 0 });
  });

  it('sends recipients past a 452 "too many recipients" in a new transaction, without counting it as a failure', async () => {
    let inTransaction = 0;
    const mx = await fakeMx({
      rcpt: () => (++inTransaction > 2 ? { code: 452, text: '4.5.3 Error: too many recipients' } : null),
      data: () => {
        inTransaction = 0;
        return null;
      },
    });
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    const to = ['r1@example.test', 'r2@example.test', 'r3@example.test', 'r4@example.test', 'r5@example.test'];
    await submit(relay, to);
    const rows = await waitForStatuses(relay, Object.fromEntries(to.map((a) => [a, 'delivered'])));
    expect(mx.received.map((m) => m.to.length)).toEqual([2, 2, 1]);
    expect(rows.map((r) => r.attempts)).toEqual([1, 1, 1, 1, 1]);
  });

  it('round-robins delivery.localAddresses and records the one used', async () => {
    const mx = await fakeMx();
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` }, localAddresses: ['127.0.0.2', '127.0.0.3'] });
    for (let i = 0; i < 4; i++) await submit(relay, [`rr${i}@example.test`]);
    await waitFor('4 deliveries', () => mx.received.length, (n) => n === 4);
    expect(new Set(mx.received.map((m) => m.remoteAddress))).toEqual(new Set(['127.0.0.2', '127.0.0.3']));
    // The MX has the mail a moment before the outcomes are committed (group commit, up to 10 ms).
    await waitFor('4 attempts recorded', () => relay.db.prepare('SELECT count(*) AS n FROM attempts').get() as { n: number }, (row) => row.n === 4);
    const used = relay.db.prepare('SELECT DISTINCT local_ip FROM attempts ORDER BY local_ip').all();
    expect(used).toEqual([{ local_ip: '127.0.0.2' }, { local_ip: '127.0.0.3' }]);
  });
});

describe('delivery through DNS (a real DNS server on 127.0.0.1)', () => {
  async function dnsRelay(zone: Record<string, ZoneEntry>, port: number, extra: Record<string, unknown> = {}): Promise<TestRelay> {
    // The canary this DNS server answers: the resolver is believed, and NXDOMAIN bounces.
    const dns = await startDnsServer({ 'canary.test': { MX: [{ preference: 10, exchange: 'mx.canary.test' }] }, ...zone });
    cleanups.push(() => dns.close());
    return deliveringRelay({ dns: { servers: [dns.address], timeoutMs: 300, cacheSeconds: 60, canaries: ['canary.test'] }, port, ...extra });
  }

  it('tries the next MX when the first greets with 421, and delivers there', async () => {
    const primary = await fakeMx({ host: '127.0.0.11', greeting: { code: 421, text: 'mx1.dns.test Service not available, closing transmission channel' } });
    const secondary = await fakeMx({ host: '127.0.0.12', port: primary.port }); // both on delivery.port
    const relay = await dnsRelay(
      {
        'dns.test': { MX: [{ preference: 10, exchange: 'mx1.dns.test' }, { preference: 20, exchange: 'mx2.dns.test' }] },
        'mx1.dns.test': { A: ['127.0.0.11'] },
        'mx2.dns.test': { A: ['127.0.0.12'] },
      },
      primary.port,
    );
    await submit(relay, ['user@dns.test']);
    await waitForStatuses(relay, { 'user@dns.test': 'delivered' });
    expect(secondary.received).toHaveLength(1);
    const tries = relay.db.prepare('SELECT mx_host, mx_ip, outcome, code FROM attempts ORDER BY id').all();
    expect(tries).toEqual([
      { mx_host: 'mx1.dns.test', mx_ip: '127.0.0.11', outcome: 'temporary_fail', code: 421 },
      { mx_host: 'mx2.dns.test', mx_ip: '127.0.0.12', outcome: 'delivered', code: 250 },
    ]);
  });

  it('classifies a reply with the MX host it came from: a provider code (config/remote-host-rules.json) applies only from that provider', async () => {
    // Facebook's RCP-P3 (facebook.com/postmaster/response_codes): the recipient's privacy settings
    // refused the mail; the 5.1.1 beside it does not make the address unknown.
    const refusal = { code: 550, text: '5.1.1 RCP-P3 http://postmaster.facebook.com/response_codes#rcp The recipient privacy settings blocked the delivery' };
    const provider = await fakeMx({ host: '127.0.0.11', rcpt: () => refusal });
    const elsewhere = await fakeMx({ rcpt: () => refusal });
    const relay = await dnsRelay(
      {
        'fb.test': { MX: [{ preference: 10, exchange: 'mx-in.facebook.com' }] },
        'mx-in.facebook.com': { A: ['127.0.0.11'] },
      },
      provider.port,
      // The routed next hop is an IP literal: no host name, so no provider rule can apply.
      { routes: { 'example.test': `127.0.0.1:${elsewhere.port}` } },
    );
    await submit(relay, ['friend@fb.test', 'friend@example.test']);
    await waitForStatuses(relay, { 'friend@fb.test': 'bounced', 'friend@example.test': 'bounced' });
    expect(relay.db.prepare('SELECT mx_host FROM attempts ORDER BY mx_host').all()).toEqual([{ mx_host: '127.0.0.1' }, { mx_host: 'mx-in.facebook.com' }]);
    expect(eventsFor(relay, 'friend@fb.test').at(-1)).toMatchObject({ event: 'permanent_fail', code: 550, enhanced_code: '5.1.1', category: 'policy-related' });
    expect(eventsFor(relay, 'friend@example.test').at(-1)).toMatchObject({ event: 'permanent_fail', code: 550, enhanced_code: '5.1.1', category: 'bad-mailbox' });
    // Only the unknown-address reading suppresses the address.
    expect(relay.db.prepare('SELECT address FROM suppressions ORDER BY address').all()).toEqual([{ address: 'friend@example.test' }]);
  });

  it('bounces mail for a null-MX domain (556 5.1.10) and an NXDOMAIN one, and defers on SERVFAIL', async () => {
    const relay = await dnsRelay(
      { 'null.test': { MX: [{ preference: 0, exchange: '.' }], A: ['127.0.0.1'] }, 'broken.test': { rcode: 'SERVFAIL' } },
      25,
    );
    await submit(relay, ['a@null.test', 'b@missing.test', 'c@broken.test']);
    await waitForStatuses(relay, { 'a@null.test': 'bounced', 'b@missing.test': 'bounced', 'c@broken.test': 'deferred' });
    expect(eventsFor(relay, 'a@null.test').at(-1)).toMatchObject({ category: 'bad-domain', code: 556, enhanced_code: '5.1.10', bounce_type: 'hard' });
    expect(eventsFor(relay, 'b@missing.test').at(-1)).toMatchObject({ category: 'bad-domain', severity: 'permanent' });
    expect(eventsFor(relay, 'c@broken.test').at(-1)).toMatchObject({ event: 'temporary_fail', severity: 'temporary' });
  });
});

describe('temporary failures: retry, then expiry', () => {
  it('retries a refused connection on schedule, then fails the recipient as message-expired', async () => {
    const port = await closedPort();
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${port}` } });
    await submit(relay, ['nobody-home@example.test']);
    const [row] = await waitForStatuses(relay, { 'nobody-home@example.test': 'expired' });
    expect(row?.attempts).toBe(3);
    const events = eventsFor(relay, 'nobody-home@example.test');
    expect(events.map((e) => e.event)).toEqual(['accepted', 'temporary_fail', 'temporary_fail', 'permanent_fail']);
    expect(events[1]).toMatchObject({ severity: 'temporary', category: 'bad-connection' });
    expect(events[3]).toMatchObject({ reason: 'expired', category: 'message-expired', severity: 'permanent' });
    expect(relay.db.prepare('SELECT count(*) AS n FROM suppressions').get()).toEqual({ n: 0 });
  });

  it('gives up on a host that never answers (no-answer-from-host) and retries it', async () => {
    const silent = await startSilentServer();
    cleanups.push(() => silent.close());
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${silent.port}` }, retry: { scheduleSeconds: [30], jitter: 0, maxAttempts: 3, maxAgeSeconds: 600 } });
    await submit(relay, ['slow@example.test']);
    await waitForStatuses(relay, { 'slow@example.test': 'deferred' }, 8_000);
    expect(eventsFor(relay, 'slow@example.test').at(-1)).toMatchObject({ event: 'temporary_fail', category: 'no-answer-from-host' });
  });

  it('expires mail older than maxAgeSeconds at dispatch time without sending it', async () => {
    const mx = await fakeMx();
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` }, retry: { scheduleSeconds: [1], jitter: 0, maxAttempts: 5, maxAgeSeconds: 0 } });
    await submit(relay, ['late@example.test']);
    await waitForStatuses(relay, { 'late@example.test': 'expired' });
    expect(mx.received).toHaveLength(0);
    expect(eventsFor(relay, 'late@example.test').at(-1)).toMatchObject({ event: 'permanent_fail', reason: 'expired', category: 'message-expired' });
  });
});

describe('restart', () => {
  it('sends again what a crash left "sending" (at-least-once)', async () => {
    const mx = await fakeMx();
    const queued = await startTestRelay(); // delivery off: mail waits in the queue
    const queueId = await submit(queued, ['again@example.test']);
    const { default: Database } = await import('better-sqlite3');
    const writer = new Database(queued.config.store.path);
    writer.prepare(`UPDATE recipients SET status = 'sending'`).run(); // as a crash mid-send leaves it
    writer.close();
    const path = queued.config.store.path;
    queued.db.close();
    await queued.relay.stop(); // the store file stays for the next start
    cleanups.push(() => rmSync(queued.dir, { recursive: true, force: true }));

    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } }, { store: { path } });
    await waitForStatuses(relay, { 'again@example.test': 'delivered' });
    expect(mx.received).toHaveLength(1);
    expect(relay.db.prepare('SELECT queue_id FROM messages').get()).toEqual({ queue_id: queueId });
  });
});

describe('connections kept open between transactions', () => {
  it('carries up to maxMessagesPerConnection transactions per connection, maxConnectionsPerHost at once', async () => {
    const mx = await fakeMx({ rcpt: (address) => (address.startsWith('unknown') ? { code: 550, text: '5.1.1 User unknown' } : null) });
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` }, maxConnectionsPerHost: 1, maxMessagesPerConnection: 2 });
    // A refused recipient in the middle: the session is reset (RSET) and carries on.
    const addresses = ['a@example.test', 'unknown@example.test', 'b@example.test', 'c@example.test', 'd@example.test'];
    for (const address of addresses) await submit(relay, [address]);
    await waitForStatuses(relay, { 'a@example.test': 'delivered', 'unknown@example.test': 'bounced', 'b@example.test': 'delivered', 'c@example.test': 'delivered', 'd@example.test': 'delivered' });
    expect(mx.received).toHaveLength(4);
    // Five transactions, two per connection, one connection at a time.
    expect(mx.connections).toBe(3);
  });

  it('replaces a kept-open connection the server closes at the next MAIL FROM, without a failed attempt', async () => {
    const mx = await fakeMx({ mailFromOnReusedConnection: { code: 421, text: '4.4.2 mx.example.test Error: timeout exceeded' } });
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    await submit(relay, ['first@example.test']);
    await waitForStatuses(relay, { 'first@example.test': 'delivered' });
    await submit(relay, ['second@example.test']);
    await waitForStatuses(relay, { 'second@example.test': 'delivered' });
    expect(mx.received.map((m) => m.to)).toEqual([['first@example.test'], ['second@example.test']]);
    expect(mx.connections).toBe(2);
    const tries = relay.db.prepare("SELECT outcome FROM attempts a JOIN recipients r ON r.id = a.recipient_id WHERE r.address = 'second@example.test'").all();
    expect(tries).toEqual([{ outcome: 'delivered' }]);
    expect(eventsFor(relay, 'second@example.test').map((e) => e.event)).toEqual(['accepted', 'delivered']);
  });
});

describe('rebound flush', () => {
  it('makes deferred mail due now, and the running relay sends it; an unknown queue id is named (exit 2)', async () => {
    const mx = await fakeMx({ rcpt: (_address, attempt) => (attempt === 1 ? { code: 450, text: '4.2.1 Mailbox busy, try again later' } : null) });
    const relay = await deliveringRelay({
      routes: { 'example.test': `127.0.0.1:${mx.port}` },
      retry: { scheduleSeconds: [3600], jitter: 0, maxAttempts: 3, maxAgeSeconds: 86_400 },
    });
    const queueId = await submit(relay, ['later@example.test']);
    await waitForStatuses(relay, { 'later@example.test': 'deferred' });
    const flush = (args: string[]) =>
      execFileAsync(process.execPath, [CLI, 'flush', ...args, '--config', join(relay.dir, 'config.json')], { cwd: PROJECT_ROOT, env: { ...process.env, REBOUND_CONFIG: '' } });
    const flushed = await flush([queueId]);
    expect(flushed.stdout).toMatch(/^1 deferred recipient\(s\) are due now/);
    await waitForStatuses(relay, { 'later@example.test': 'delivered' });
    expect(recipients(relay)[0]).toMatchObject({ attempts: 2 });
    await expect(flush(['NOSUCHQUEUEID00000'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('no message with queue id "NOSUCHQUEUEID00000"') });
    await expect(flush([queueId, '--domain', 'example.test'])).rejects.toMatchObject({
      code: 2,
      stderr: 'rebound: give only one of queue ids, --domain, --sender (got queue ids and --domain); none flushes every deferred recipient\n',
    });
    await expect(flush(['--sender', 'nobody'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('sender "nobody" is not an email address') });
    expect((await flush(['--domain', 'Example.test'])).stdout).toMatch(/^0 deferred recipient\(s\) are due now/);
    // Each flush that ran is in queue_audit with the OS user; the refused ones are not.
    expect(relay.db.prepare('SELECT action, selector, value, actor, recipients FROM queue_audit ORDER BY id').all()).toEqual([
      { action: 'flush', selector: 'queue-ids', value: queueId, actor: `cli:${userInfo().username}`, recipients: 1 },
      { action: 'flush', selector: 'domain', value: 'example.test', actor: `cli:${userInfo().username}`, recipients: 0 },
    ]);
  });
});

describe('shutdown', () => {
  it('cuts a transaction still under way once shutdownTimeoutSeconds is up, and queues it again without counting an attempt', async () => {
    const slow = await fakeMx({ dataDelayMs: 30_000 });
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${slow.port}` } }, { submission: { shutdownTimeoutSeconds: 1 } });
    await submit(relay, ['late@example.test']);
    await waitForStatuses(relay, { 'late@example.test': 'sending' });
    await waitFor('the slow MX to be in DATA', () => slow.openConnections, (open) => open === 1);
    const started = Date.now();
    await relay.stopRelay();
    expect(Date.now() - started).toBeLessThan(5_000);
    await waitFor('the connection to be closed', () => slow.openConnections, (open) => open === 0, 2_000);
    expect(slow.received).toHaveLength(0);
    // Queued again for the next start, and the cut does not count as an attempt.
    expect(recipients(relay)).toEqual([{ address: 'late@example.test', status: 'queued', attempts: 0, last_reply: null }]);
    expect(eventsFor(relay, 'late@example.test').map((e) => e.event)).toEqual(['accepted']);
  });
});

describe('TLS, smarthost AUTH and fairness between domains', () => {
  async function certificate(): Promise<{ key: string; cert: string }> {
    const { generate } = await import('selfsigned');
    const pems = await generate([{ name: 'commonName', value: 'mx.example.test' }], { notAfterDate: new Date(Date.now() + 86_400_000), keySize: 2048, algorithm: 'sha256' });
    return { key: pems.private, cert: pems.cert };
  }

  it('uses STARTTLS opportunistically when the MX offers it, whatever its certificate', async () => {
    const mx = await fakeMx({ tls: await certificate() });
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    await submit(relay, ['tls@example.test']);
    await waitForStatuses(relay, { 'tls@example.test': 'delivered' });
    expect(mx.received[0]?.secure).toBe(true);
  });

  it('falls back to plaintext on the same host when the STARTTLS handshake fails, as Postfix does', async () => {
    const mx = await startBrokenTlsMx();
    cleanups.push(() => mx.close());
    const relay = await deliveringRelay({ routes: { 'example.test': `127.0.0.1:${mx.port}` } });
    await submit(relay, ['fallback@example.test']);
    await waitForStatuses(relay, { 'fallback@example.test': 'delivered' });
    expect(mx.received.map((m) => m.to)).toEqual([['fallback@example.test']]);
    expect(mx.connections).toBe(2);
    // The failed handshake is an attempt of its own, then the plaintext one delivered.
    const tries = relay.db.prepare('SELECT outcome, category, text FROM attempts ORDER BY id').all() as Array<{ outcome: string; category: string | null; text: string }>;
    expect(tries.map((t) => [t.outcome, t.category])).toEqual([
      ['temporary_fail', 'bad-connection'],
      ['delivered', null],
    ]);
    expect(recipients(relay)[0]).toMatchObject({ status: 'delivered', attempts: 1 });
  });

  it('relays everything through a "*" smarthost with AUTH over required TLS', async () => {
    const smarthost = await fakeMx({ tls: await certificate(), auth: { user: 'relay-user', pass: 'relay-pass' } });
    const relay = await deliveringRelay({
      routes: { '*': { host: '127.0.0.1', port: smarthost.port, auth: { user: 'relay-user', pass: 'relay-pass' }, requireTLS: true, verifyCertificate: false } },
    });
    await submit(relay, ['one@anywhere.example', 'two@elsewhere.example']);
    await waitForStatuses(relay, { 'one@anywhere.example': 'delivered', 'two@elsewhere.example': 'delivered' });
    expect(smarthost.received.map((m) => ({ to: m.to, secure: m.secure, authUser: m.authUser }))).toEqual(
      expect.arrayContaining([
        { to: ['one@anywhere.example'], secure: true, authUser: 'relay-user' },
        { to: ['two@elsewhere.example'], secure: true, authUser: 'relay-user' },
      ]),
    );
  });

  it('defers (never bounces) when the smarthost refuses our credentials', async () => {
    const smarthost = await fakeMx({ auth: { user: 'relay-user', pass: 'right' } });
    const relay = await deliveringRelay({ routes: { '*': { host: '127.0.0.1', port: smarthost.port, auth: { user: 'relay-user', pass: 'wrong' } } } });
    await submit(relay, ['x@anywhere.example']);
    await waitForStatuses(relay, { 'x@anywhere.example': 'deferred' });
    expect(eventsFor(relay, 'x@anywhere.example').at(-1)).toMatchObject({ event: 'temporary_fail', severity: 'temporary', category: 'bad-configuration' });
  });

  it('keeps delivering to other domains while one slow domain uses all its slots', async () => {
    const slow = await fakeMx({ dataDelayMs: 1500 });
    const fast = await fakeMx();
    const relay = await deliveringRelay({
      routes: { 'slow.test': `127.0.0.1:${slow.port}`, 'fast.test': `127.0.0.1:${fast.port}` },
      concurrency: 3,
      perDomainConcurrency: 1,
    });
    for (let i = 0; i < 4; i++) await submit(relay, [`s${i}@slow.test`]);
    const started = Date.now();
    for (let i = 0; i < 3; i++) await submit(relay, [`f${i}@fast.test`]);
    await waitFor('the fast domain', () => fast.received.length, (n) => n === 3, 5_000);
    // The slow domain holds one slot for 1.5 s per message; the fast one did not wait for it.
    expect(Date.now() - started).toBeLessThan(1_400);
    expect(slow.received.length).toBeLessThan(2);
  });
});
