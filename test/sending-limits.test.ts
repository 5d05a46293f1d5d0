import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load.js';
import { SendingLimits } from '../src/delivery/sending-limits.js';
import { Shaper } from '../src/delivery/shaper.js';
import { compileShapingRules } from '../src/delivery/shaping-rules.js';
import { OPPORTUNISTIC } from '../src/delivery/tls-policy.js';
import type { NextHopLookup } from '../src/delivery/next-hop.js';
import { runRebound as rebound } from './support/cli.js';
import { startFakeMx, type FakeMx, type FakeMxScript } from './support/fake-mx.js';
import { FAST_DELIVERY, startTestRelay, writeTestConfig, type TestRelay } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const temp = makeTempDir();
  cleanups.push(() => temp.remove());
  return temp.dir;
}

async function fakeMx(script: FakeMxScript = {}): Promise<FakeMx> {
  const mx = await startFakeMx(script);
  cleanups.push(() => mx.close());
  return mx;
}

async function relayWith(delivery: Record<string, unknown>): Promise<TestRelay> {
  const relay = await startTestRelay({ delivery: { ...FAST_DELIVERY, ...delivery } });
  cleanups.push(() => relay.stop());
  return relay;
}

async function submit(relay: TestRelay, from: string, to: string): Promise<void> {
  await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from, to, subject: 'limits', text: 'Hello.\r\n' });
}

interface RecipientRow {
  address: string;
  status: string;
  attempts: number;
  next_attempt_at: string | null;
  last_reply: string | null;
}

function recipients(relay: TestRelay): RecipientRow[] {
  return relay.db.prepare('SELECT address, status, attempts, next_attempt_at, last_reply FROM recipients ORDER BY id').all() as RecipientRow[];
}

function configError(delivery: Record<string, unknown>): string {
  try {
    loadConfig({ file: writeTestConfig(tempDir(), { delivery }), env: {} });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('the config was accepted');
}

describe('config: delivery.sendingLimits', () => {
  it('refuses a limit that names both or neither of senderDomain and localAddress, or gives no rate, with the entry and the fix', () => {
    expect(configError({ sendingLimits: [{ senderDomain: 'a.example', localAddress: '127.0.0.2', messagesPerHour: 5 }], localAddresses: ['127.0.0.2'] })).toMatch(
      /delivery\.sendingLimits\.0: a limit names exactly one of senderDomain or localAddress/,
    );
    expect(configError({ sendingLimits: [{ messagesPerHour: 5 }] })).toMatch(/exactly one of senderDomain or localAddress/);
    expect(configError({ sendingLimits: [{ senderDomain: 'a.example' }] })).toMatch(/give messagesPerMinute or messagesPerHour/);
    expect(configError({ sendingLimits: [{ senderDomain: 'a.example', messagesPerMinute: 0 }] })).toMatch(/sendingLimits\.0\.messagesPerMinute/);
    expect(configError({ sendingLimits: [{ senderDomain: 'not a domain', messagesPerHour: 5 }] })).toMatch(/not a domain name/);
  });

  it('refuses a limit for an address the relay never sends from, naming where to list it', () => {
    expect(configError({ sendingLimits: [{ localAddress: '127.0.0.9', messagesPerHour: 5 }], localAddresses: ['127.0.0.2'] })).toMatch(
      /delivery\.sendingLimits\.0\.localAddress: 127\.0\.0\.9 is not a source address: list it in delivery\.localAddresses or a pool of delivery\.ipPools/,
    );
    const config = loadConfig({
      file: writeTestConfig(tempDir(), {
        delivery: { ipPools: { warm: [{ address: '127.0.0.5', heloName: 'warm.example' }] }, sendingLimits: [{ localAddress: '127.0.0.5', messagesPerHour: 50 }] },
      }),
      env: {},
    });
    expect(config.delivery.sendingLimits).toEqual([{ localAddress: '127.0.0.5', messagesPerMinute: null, messagesPerHour: 50 }]);
  });
});

describe('SendingLimits', () => {
  it('applies a sender domain limit to the domain and its subdomains, in any case, and never to the null sender', () => {
    const limits = new SendingLimits({ sendingLimits: [{ senderDomain: 'News.Example', messagesPerMinute: 2, messagesPerHour: null }] });
    const now = 1_000_000;
    limits.count('a@news.example', null, now);
    limits.count('b@mail.NEWS.example', null, now);
    expect(limits.hold('c@News.Example', null, now)?.reason).toBe('sender domain news.example is at its limit of 2 per minute');
    expect(limits.hold('c@othernews.example', null, now)).toBeNull();
    expect(limits.hold('', null, now)).toBeNull();
    // The minute's first start leaves the window a minute later.
    expect(limits.hold('c@news.example', null, now)?.until).toBe(now + 60_000);
    expect(limits.hold('c@news.example', null, now + 60_000)).toBeNull();
  });

  it('holds until the later of the sender domain\'s and the source address\'s limits, and spaces held batches at the rate', () => {
    const limits = new SendingLimits({
      sendingLimits: [
        { senderDomain: 'news.example', messagesPerMinute: 1, messagesPerHour: null },
        { localAddress: '127.0.0.2', messagesPerMinute: null, messagesPerHour: 1 },
      ],
    });
    const now = 5_000_000;
    limits.count('a@news.example', '127.0.0.2', now);
    const hold = limits.hold('b@news.example', '127.0.0.2', now + 1000);
    expect(hold?.reason).toBe('source address 127.0.0.2 is at its limit of 1 per hour');
    expect(hold?.until).toBe(now + 3_600_000);
    expect(limits.sourceHold('127.0.0.2', now + 1000)?.until).toBe(now + 3_600_000);
    expect(limits.sourceHold('127.0.0.3', now + 1000)).toBeNull();
    // Another address: only the sender domain's minute holds.
    const domainHold = limits.hold('b@news.example', '127.0.0.3', now + 1000);
    expect(domainHold?.until).toBe(now + 60_000);
    // Three batches held at once come back a minute apart (1 per minute), not all together.
    const slots = [0, 1, 2].map(() => limits.heldUntil(domainHold as NonNullable<typeof domainHold>, now + 1000));
    expect(slots).toEqual([now + 60_000, now + 120_000, now + 180_000]);
  });
});

describe('sending limits at delivery', () => {
  it('sends no more than the sender domain\'s rate, holds the rest unsent with the reason, and leaves other senders alone', async () => {
    const mx = await fakeMx();
    const relay = await relayWith({ routes: { 'limits.test': `127.0.0.1:${mx.port}` }, sendingLimits: [{ senderDomain: 'news.example', messagesPerMinute: 3 }] });
    for (let k = 1; k <= 5; k++) await submit(relay, 'letters@news.example', `reader${k}@limits.test`);
    for (let k = 1; k <= 2; k++) await submit(relay, 'orders@shop.example', `buyer${k}@limits.test`);
    await waitFor('three newsletters and both orders', () => mx.received.length, (n) => n === 5, 5000);
    // Well past the time the rest would have taken without the limit: still three this minute.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const newsletters = mx.received.filter((m) => /^From: letters@news\.example\r?$/m.test(m.raw.toString()));
    expect(newsletters).toHaveLength(3);
    const rows = recipients(relay);
    expect(rows.filter((r) => r.address.startsWith('buyer')).map((r) => r.status)).toEqual(['delivered', 'delivered']);
    const readers = rows.filter((r) => r.address.startsWith('reader'));
    expect(readers.filter((r) => r.status === 'delivered')).toHaveLength(3);
    const waiting = readers.filter((r) => r.status !== 'delivered');
    expect(waiting).toHaveLength(2);
    // Held, not tried: no attempt counted, the reason as the last reply, due when the minute has room, spaced 20 s apart.
    for (const row of waiting) {
      expect(row.attempts).toBe(0);
      expect(row.last_reply).toBe('held: sender domain news.example is at its limit of 3 per minute');
    }
    const due = waiting.map((r) => Date.parse(r.next_attempt_at ?? '')).sort((a, b) => a - b);
    const firstSent = Math.min(...mx.received.map((m) => m.at));
    expect((due[0] ?? 0) - firstSent).toBeGreaterThan(55_000);
    expect((due[1] ?? 0) - (due[0] ?? 0)).toBeGreaterThanOrEqual(20_000 - 50);
    const failures = relay.db.prepare("SELECT count(*) AS n FROM events WHERE event = 'temporary_fail'").get() as { n: number };
    expect(failures.n).toBe(0);
  });

  it('sends from another address of the pool once one is at its own limit, and holds only when every address is', async () => {
    const mx = await fakeMx();
    const relay = await relayWith({
      routes: { 'limits.test': `127.0.0.1:${mx.port}` },
      localAddresses: ['127.0.0.2', '127.0.0.3'],
      sendingLimits: [
        { localAddress: '127.0.0.2', messagesPerHour: 2 },
        { localAddress: '127.0.0.3', messagesPerHour: 3 },
      ],
    });
    for (let k = 1; k <= 7; k++) await submit(relay, 'app@shop.example', `user${k}@limits.test`);
    await waitFor('five messages', () => mx.received.length, (n) => n === 5, 5000);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(mx.received).toHaveLength(5);
    const bySource = (address: string): number => mx.received.filter((m) => m.remoteAddress === address).length;
    expect([bySource('127.0.0.2'), bySource('127.0.0.3')]).toEqual([2, 3]);
    const waiting = recipients(relay).filter((r) => r.status !== 'delivered');
    expect(waiting).toHaveLength(2);
    for (const row of waiting) expect(row.last_reply).toMatch(/^held: source address 127\.0\.0\.[23] is at its limit of [23] per hour$/);
  });
});

describe('traffic shaping per source address', () => {
  const PAUSE_SECONDS = 4;

  function shapingFile(): string {
    const file = join(tempDir(), 'shaping.json');
    const rule = {
      name: 'throttler',
      source: 'test numbers',
      domains: ['ips.test'],
      maxConnections: 1,
      messagesPerConnection: 100,
      messagesPerMinute: null,
      messagesPerHour: null,
      recoverAfterSeconds: 60,
      reactions: [{ name: 'test rate limit', codes: [421], enhancedCode: '4.7.28', pauseSeconds: PAUSE_SECONDS, rateFactor: 0.5 }],
    };
    writeFileSync(file, JSON.stringify({ rules: [rule] }));
    return file;
  }

  it('pauses only the address the provider throttled; the mail goes out from the other meanwhile, and the queue names the address', async () => {
    // The provider dislikes 127.0.0.3: every DATA from it gets 421 4.7.28 (rate limited).
    const throttledAt: number[] = [];
    const mx = await fakeMx({
      data: (_to, _attempt, from) => {
        if (from !== '127.0.0.3') return null;
        throttledAt.push(Date.now());
        return { code: 421, text: '4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address.' };
      },
    });
    const relay = await relayWith({ routes: { 'ips.test': `127.0.0.1:${mx.port}` }, localAddresses: ['127.0.0.2', '127.0.0.3'], shapingFile: shapingFile() });
    const started = Date.now();
    for (let k = 1; k <= 6; k++) await submit(relay, 'app@shop.example', `user${k}@ips.test`);
    const rows = await waitFor('all six delivered', () => recipients(relay), (r) => r.every((row) => row.status === 'delivered'), 3000);
    // Delivered inside the pause, every one from the address that was not throttled.
    expect(Date.now() - started).toBeLessThan(PAUSE_SECONDS * 1000);
    expect(mx.received.map((m) => m.remoteAddress)).toEqual(Array(6).fill('127.0.0.2'));
    expect(throttledAt).toHaveLength(1);
    expect(Math.max(...rows.map((r) => r.attempts))).toBeLessThanOrEqual(2);

    const queue = await rebound(['queue', '--json', '--config', join(relay.dir, 'config.json')]);
    const summary = JSON.parse(queue.stdout) as { pausedDestinations: Array<{ destination: string; reaction: string; reason: string }> };
    expect(summary.pausedDestinations).toEqual([expect.objectContaining({ destination: 'throttler via 127.0.0.3', reaction: 'test rate limit' })]);
    expect(summary.pausedDestinations[0]?.reason).toMatch(/^421 4\.7\.28 Our system has detected/);
  });

  it('holds the mail when the only address is paused', async () => {
    const mx = await fakeMx({ data: () => ({ code: 421, text: '4.7.28 rate limited, slow down' }) });
    const shaping = shapingFile();
    const relay = await relayWith({ routes: { 'ips.test': `127.0.0.1:${mx.port}` }, localAddresses: ['127.0.0.3'], shapingFile: shaping });
    for (let k = 1; k <= 3; k++) await submit(relay, 'app@shop.example', `user${k}@ips.test`);
    await waitFor('the throttling reply', () => mx.connections, (n) => n > 0, 3000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // One transaction tried; the pause deferred the waiting mail to its end, unsent.
    expect(mx.connections).toBe(1);
    const paused = relay.db.prepare('SELECT destination FROM destination_pauses').all();
    expect(paused).toEqual([{ destination: 'throttler via 127.0.0.3' }]);
    const rows = recipients(relay);
    expect(rows.map((r) => r.attempts).sort()).toEqual([0, 0, 1]);
  });

  it('keeps each address\'s pause apart, and restores one from the store by its name', () => {
    const rules = compileShapingRules({ rules: [JSON.parse(readFileSync(shapingFile(), 'utf8')).rules[0]] }, 'test');
    const lookup: NextHopLookup = {
      nextHop: { hosts: [{ name: 'mx.ips.test', addresses: ['127.0.0.1'] }], port: 25, routed: false, secure: false, requireTLS: false, verifyCertificate: false, tls: OPPORTUNISTIC },
    };
    const shaper = new Shaper(rules);
    const until = new Date(Date.now() + 60_000);
    shaper.restore({ destination: 'throttler via 127.0.0.3', pausedUntil: until, reason: '421 4.7.28 slow down', reaction: 'test rate limit' });
    expect(shaper.destinationOf('ips.test', lookup, '127.0.0.3')?.pausedUntil).toBe(until.getTime());
    expect(shaper.destinationOf('ips.test', lookup, '127.0.0.2')?.pausedUntil).toBe(0);
    expect(shaper.destinationOf('ips.test', lookup, null)?.name).toBe('throttler');
    expect(shaper.destinationOf('ips.test', lookup, '127.0.0.2')?.name).toBe('throttler via 127.0.0.2');
  });
});
