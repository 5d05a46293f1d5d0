import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { firstFieldValuesOf, IpPools } from '../src/delivery/ip-pools.js';
import { hashPassword } from '../src/submission/passwords.js';
import { startFakeMx, type FakeMx, type ReceivedMessage } from './support/fake-mx.js';
import { FAST_DELIVERY, startTestRelay, type TestRelay } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const POOLS = {
  transactional: [{ address: '127.0.0.2', heloName: 'tx1.example' }],
  bulk: [{ address: '127.0.0.3', heloName: 'bulk1.example' }],
};

function configError(delivery: Record<string, unknown>): string {
  const temp = makeTempDir();
  cleanups.push(() => temp.remove());
  const file = join(temp.dir, 'rebound.json');
  writeFileSync(file, JSON.stringify({ delivery }));
  try {
    loadConfig({ file, env: {} });
  } catch (error) {
    return (error as Error).message;
  }
  return 'no error';
}

describe('config: delivery.ipPools and delivery.ipPoolRules', () => {
  it.each([
    [{ ipPools: POOLS, ipPoolRules: [{ senderDomain: 'shop.example', pool: 'transactionl' }] }, /delivery\.ipPoolRules\.0\.pool: no IP pool named "transactionl"; name one of transactional, bulk/],
    [{ ipPoolRules: [{ authUser: 'app', pool: 'bulk' }] }, /delivery\.ipPoolRules\.0\.pool: no IP pool named "bulk"; define it in delivery\.ipPools/],
    [{ ipPools: { bulk: [{ address: '10.0.0.300', heloName: 'bulk1.example' }] } }, /delivery\.ipPools\.bulk\.0\.address: not an IP address/],
    [{ ipPools: { bulk: [{ address: '10.0.0.3', heloName: 'bulk one' }] } }, /delivery\.ipPools\.bulk\.0\.heloName: not a host name for EHLO/],
    [{ ipPools: { bulk: [{ address: '10.0.0.3', heloName: 'localhost' }] } }, /delivery\.ipPools\.bulk\.0\.heloName: not a host name for EHLO/],
    [{ ipPools: { bulk: [] } }, /delivery\.ipPools\.bulk: a pool needs at least one \{ address, heloName \}/],
    [{ ipPools: { 'bulk pool': POOLS.bulk } }, /delivery\.ipPools\.bulk pool: "bulk pool" is not a pool name; use letters, digits/],
    [{ ipPools: { bulk: [{ address: '10.0.0.3' }] } }, /delivery\.ipPools\.bulk\.0\.heloName: /],
    [{ ipPools: POOLS, ipPoolRules: [{ senderDomain: 'shop.example', authUser: 'app', pool: 'bulk' }] }, /delivery\.ipPoolRules\.0: a rule names exactly one of senderDomain, authUser or header/],
    [{ ipPools: POOLS, ipPoolRules: [{ pool: 'bulk' }] }, /delivery\.ipPoolRules\.0: a rule names exactly one of/],
    [{ ipPools: POOLS, ipPoolRules: [{ header: 'X-Rebound-Pool', pool: 'bulk' }] }, /delivery\.ipPoolRules\.0\.value: a header rule needs the value of X-Rebound-Pool/],
    [{ ipPools: POOLS, ipPoolRules: [{ authUser: 'app', value: 'bulk', pool: 'bulk' }] }, /delivery\.ipPoolRules\.0\.value: value belongs to a header rule/],
    [{ ipPools: POOLS, ipPoolRules: [{ header: 'X Pool', value: 'bulk', pool: 'bulk' }] }, /delivery\.ipPoolRules\.0\.header: not a header field name/],
    [{ ipPools: POOLS, ipPoolRules: [{ senderDomain: 'shop example', pool: 'bulk' }] }, /delivery\.ipPoolRules\.0\.senderDomain: not a domain name/],
    [{ ipPools: POOLS, ipPoolRules: [{ sender: 'shop.example', pool: 'bulk' }] }, /delivery\.ipPoolRules\.0\.sender: unknown key/],
  ])('rejects %j', (delivery, expected) => {
    expect(configError(delivery)).toMatch(expected);
  });

  it('accepts pools and rules of every kind', () => {
    expect(configError({ ipPools: POOLS, ipPoolRules: [{ senderDomain: 'shop.example', pool: 'transactional' }, { authUser: 'news', pool: 'bulk' }, { header: 'X-Rebound-Pool', value: 'bulk', pool: 'bulk' }] })).toBe('no error');
  });
});

describe('IpPools: the first rule that matches picks the pool', () => {
  const pools = (): IpPools =>
    new IpPools({
      localAddresses: ['127.0.0.4'],
      ipPools: { ...POOLS, pair: [{ address: '127.0.0.5', heloName: 'a.example' }, { address: '127.0.0.6', heloName: 'b.example' }] },
      ipPoolRules: [
        { senderDomain: 'Shop.Example', pool: 'transactional' },
        { authUser: 'news', pool: 'bulk' },
        { header: 'X-Rebound-Pool', value: 'Bulk', pool: 'bulk' },
        { senderDomain: 'pair.example', pool: 'pair' },
      ],
    });
  const none = Buffer.from('Subject: hi\r\n\r\nbody\r\n');

  it('matches the envelope sender domain whatever its case, not its subdomains, and not the null sender', () => {
    const p = pools();
    expect(p.sourceFor({ mailFrom: 'app@SHOP.example', authUser: null }, none)).toEqual({ localIp: '127.0.0.2', heloName: 'tx1.example' });
    expect(p.sourceFor({ mailFrom: 'app@mail.shop.example', authUser: null }, none)).toEqual({ localIp: '127.0.0.4', heloName: null });
    expect(p.sourceFor({ mailFrom: '', authUser: null }, none)).toEqual({ localIp: '127.0.0.4', heloName: null });
  });

  it('takes the first match: a sender domain rule before a later AUTH user rule', () => {
    const p = pools();
    expect(p.sourceFor({ mailFrom: 'app@shop.example', authUser: 'news' }, none).heloName).toBe('tx1.example');
    expect(p.sourceFor({ mailFrom: 'app@other.example', authUser: 'news' }, none).heloName).toBe('bulk1.example');
    // AUTH user names are compared exactly, as submission compares them.
    expect(p.sourceFor({ mailFrom: 'app@other.example', authUser: 'News' }, none).heloName).toBeNull();
  });

  it('reads the header from the header section only: a body line or another value picks nothing', () => {
    const p = pools();
    const from = { mailFrom: 'app@other.example', authUser: null };
    expect(p.sourceFor(from, Buffer.from('Subject: hi\r\nx-rebound-pool:  bulk \r\n\r\nbody\r\n')).heloName).toBe('bulk1.example');
    expect(p.sourceFor(from, Buffer.from('Subject: hi\r\n\r\nX-Rebound-Pool: bulk\r\n')).heloName).toBeNull();
    expect(p.sourceFor(from, Buffer.from('Subject: hi\r\nX-Rebound-Pool: transactional\r\n\r\n')).heloName).toBeNull();
    // The first field counts: a second one added further down does not override it.
    expect(p.sourceFor(from, Buffer.from('X-Rebound-Pool: other\r\nX-Rebound-Pool: bulk\r\n\r\n')).heloName).toBeNull();
  });

  it('takes turns within a pool, and within the default addresses', () => {
    const p = pools();
    const pair = { mailFrom: 'a@pair.example', authUser: null };
    expect([1, 2, 3, 4].map(() => p.sourceFor(pair, none).localIp)).toEqual(['127.0.0.5', '127.0.0.6', '127.0.0.5', '127.0.0.6']);
    const bare = new IpPools({ localAddresses: [], ipPools: {}, ipPoolRules: [] });
    expect(bare.sourceFor(pair, none)).toEqual({ localIp: null, heloName: null });
  });

  it('reads a huge header section only so far, and folded fields whole', () => {
    const names = new Set(['x-rebound-pool']);
    expect(firstFieldValuesOf(Buffer.from('X-Rebound-Pool: bu\r\n\tlk\r\n\r\n'), names).get('x-rebound-pool')).toBe('bu lk');
    const huge = Buffer.concat([Buffer.from(`X-Filler: ${'a'.repeat(300 * 1024)}\r\n`), Buffer.from('X-Rebound-Pool: bulk\r\n\r\n')]);
    expect(firstFieldValuesOf(huge, names).has('x-rebound-pool')).toBe(false);
  });
});

describe('delivery from IP pools (a fake MX on 127.0.0.1)', () => {
  async function fakeMx(): Promise<FakeMx> {
    const mx = await startFakeMx({});
    cleanups.push(() => mx.close());
    return mx;
  }

  async function poolRelay(mx: FakeMx, delivery: Record<string, unknown>, submission: Record<string, unknown> = {}): Promise<TestRelay> {
    const relay = await startTestRelay({ submission, delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` }, localAddresses: ['127.0.0.4'], ...delivery } });
    cleanups.push(() => relay.stop());
    return relay;
  }

  function send(relay: TestRelay, message: { from: string; to: string; envelopeFrom?: string; headers?: Record<string, string>; text?: string; auth?: { user: string; pass: string } }): Promise<unknown> {
    const envelope = { from: message.envelopeFrom ?? message.from, to: message.to };
    return nodemailer
      .createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true, ...(message.auth ? { auth: message.auth } : {}) })
      .sendMail({ from: message.from, to: message.to, envelope, subject: 'pools', text: message.text ?? 'Hello.\r\n', headers: message.headers ?? {} });
  }

  function receivedBy(mx: FakeMx, to: string): ReceivedMessage {
    const found = mx.received.find((m) => m.to.includes(to));
    if (!found) throw new Error(`nothing received for ${to}`);
    return found;
  }

  function localIpsOf(relay: TestRelay, expected: number): Promise<Array<{ address: string; local_ip: string | null }>> {
    const rows = (): Array<{ address: string; local_ip: string | null }> =>
      relay.db.prepare('SELECT r.address, a.local_ip FROM attempts a JOIN recipients r ON r.id = a.recipient_id ORDER BY a.id').all() as Array<{ address: string; local_ip: string | null }>;
    return waitFor('attempts recorded', rows, (r) => r.length === expected);
  }

  it('sends from the pool a sender domain, an AUTH user or a header picks, with its EHLO name; the rest from the default', async () => {
    const mx = await fakeMx();
    const passwordHash = await hashPassword('news-pass');
    const relay = await poolRelay(
      mx,
      {
        ipPools: POOLS,
        ipPoolRules: [
          { senderDomain: 'shop.example', pool: 'transactional' },
          { authUser: 'news', pool: 'bulk' },
          { header: 'X-Rebound-Pool', value: 'bulk', pool: 'bulk' },
        ],
      },
      { auth: { users: [{ username: 'news', passwordHash }] }, allowNetworks: ['127.0.0.1/32'] },
    );
    await send(relay, { from: 'orders@shop.example', to: 'tx@example.test' });
    await send(relay, { from: 'letters@news.example', to: 'auth@example.test', auth: { user: 'news', pass: 'news-pass' } });
    await send(relay, { from: 'app@other.example', to: 'header@example.test', headers: { 'X-Rebound-Pool': 'bulk' } });
    await send(relay, { from: 'app@other.example', to: 'default@example.test' });
    // From: names shop.example, the envelope does not: the envelope sender is what the rule reads.
    await send(relay, { from: 'orders@shop.example', envelopeFrom: 'app@other.example', to: 'from-header@example.test' });
    // An app that writes the pool header into the body picks nothing.
    await send(relay, { from: 'app@other.example', to: 'body@example.test', text: 'X-Rebound-Pool: bulk\r\n' });
    await waitFor('6 deliveries', () => mx.received.length, (n) => n === 6);

    const seen = (to: string): [string, string] => [receivedBy(mx, to).remoteAddress, receivedBy(mx, to).helo];
    expect(seen('tx@example.test')).toEqual(['127.0.0.2', 'tx1.example']);
    expect(seen('auth@example.test')).toEqual(['127.0.0.3', 'bulk1.example']);
    expect(seen('header@example.test')).toEqual(['127.0.0.3', 'bulk1.example']);
    expect(seen('default@example.test')).toEqual(['127.0.0.4', 'relay.test']);
    expect(seen('from-header@example.test')).toEqual(['127.0.0.4', 'relay.test']);
    expect(seen('body@example.test')).toEqual(['127.0.0.4', 'relay.test']);
    // The header that picked the pool is a control header: the recipient never sees it.
    expect(receivedBy(mx, 'header@example.test').raw.toString()).not.toMatch(/X-Rebound-Pool/i);

    const attempts = await localIpsOf(relay, 6);
    expect(Object.fromEntries(attempts.map((a) => [a.address, a.local_ip]))).toEqual({
      'tx@example.test': '127.0.0.2',
      'auth@example.test': '127.0.0.3',
      'header@example.test': '127.0.0.3',
      'default@example.test': '127.0.0.4',
      'from-header@example.test': '127.0.0.4',
      'body@example.test': '127.0.0.4',
    });
  });

  it.each([false, true])('takes turns within a two-address pool, a connection per address and EHLO name (sendThread %s)', async (sendThread) => {
    const mx = await fakeMx();
    const relay = await poolRelay(mx, {
      sendThread,
      heloName: 'default.example',
      ipPools: { pair: [{ address: '127.0.0.2', heloName: 'tx1.example' }, { address: '127.0.0.3', heloName: 'tx2.example' }] },
      ipPoolRules: [{ senderDomain: 'shop.example', pool: 'pair' }],
    });
    for (let i = 0; i < 4; i++) await send(relay, { from: 'orders@shop.example', to: `rr${i}@example.test` });
    await send(relay, { from: 'app@other.example', to: 'default@example.test' });
    await waitFor('5 deliveries', () => mx.received.length, (n) => n === 5);
    const pairs = [0, 1, 2, 3].map((i) => `${receivedBy(mx, `rr${i}@example.test`).remoteAddress} ${receivedBy(mx, `rr${i}@example.test`).helo}`);
    expect(pairs.filter((p) => p === '127.0.0.2 tx1.example')).toHaveLength(2);
    expect(pairs.filter((p) => p === '127.0.0.3 tx2.example')).toHaveLength(2);
    expect(`${receivedBy(mx, 'default@example.test').remoteAddress} ${receivedBy(mx, 'default@example.test').helo}`).toBe('127.0.0.4 default.example');
    const attempts = await localIpsOf(relay, 5);
    expect(attempts.filter((a) => a.address.startsWith('rr')).map((a) => a.local_ip).sort()).toEqual(['127.0.0.2', '127.0.0.2', '127.0.0.3', '127.0.0.3']);
  });

  it('never carries mail on a kept-open connection that greeted with another pool\'s EHLO name', async () => {
    const mx = await fakeMx();
    const relay = await poolRelay(mx, {
      ipPools: { one: [{ address: '127.0.0.2', heloName: 'one.example' }], two: [{ address: '127.0.0.2', heloName: 'two.example' }] },
      ipPoolRules: [{ senderDomain: 'one.example', pool: 'one' }, { senderDomain: 'two.example', pool: 'two' }],
    });
    await send(relay, { from: 'a@one.example', to: 'first@example.test' });
    await waitFor('the first delivery', () => mx.received.length, (n) => n === 1);
    await send(relay, { from: 'a@two.example', to: 'second@example.test' });
    await waitFor('the second delivery', () => mx.received.length, (n) => n === 2);
    expect(receivedBy(mx, 'first@example.test').helo).toBe('one.example');
    expect(receivedBy(mx, 'second@example.test').helo).toBe('two.example');
    expect(mx.connections).toBe(2);
  });

  it('defers, not bounces, mail from a pool address this machine does not have', async () => {
    const mx = await fakeMx();
    const relay = await poolRelay(mx, {
      ipPools: { elsewhere: [{ address: '192.0.2.10', heloName: 'tx1.example' }] },
      ipPoolRules: [{ senderDomain: 'shop.example', pool: 'elsewhere' }],
      retry: { scheduleSeconds: [3600], jitter: 0, maxAttempts: 3, maxAgeSeconds: 86_400 },
    });
    await send(relay, { from: 'orders@shop.example', to: 'nowhere@example.test' });
    const row = await waitFor(
      'the recipient deferred',
      () => relay.db.prepare("SELECT status, last_reply FROM recipients WHERE address = 'nowhere@example.test'").get() as { status: string; last_reply: string | null },
      (r) => r.status === 'deferred',
    );
    expect(row.last_reply).toMatch(/EADDRNOTAVAIL|address not available/i);
    const attempt = relay.db.prepare('SELECT local_ip, category FROM attempts').get();
    expect(attempt).toEqual({ local_ip: '192.0.2.10', category: 'bad-connection' });
    expect(mx.received).toHaveLength(0);
  });
});

