import { runRebound as rebound } from './support/cli.js';
import { OPPORTUNISTIC } from '../src/delivery/tls-policy.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { classifyReply } from '../src/bounces/classifier.js';
import { Shaper } from '../src/delivery/shaper.js';
import { compileShapingRules, loadShapingRules } from '../src/delivery/shaping-rules.js';
import type { NextHopLookup } from '../src/delivery/next-hop.js';
import type { BatchReport } from '../src/delivery/send-batch.js';
import { startFakeMx, type FakeMx, type FakeMxScript } from './support/fake-mx.js';
import { FAST_DELIVERY, startTestRelay, type TestRelay } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

/** The test rule's pause: long enough for two `rebound queue` runs and an API call inside it. */
const PAUSE_MS = 4000;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fakeMx(script: FakeMxScript = {}): Promise<FakeMx> {
  const mx = await startFakeMx(script);
  cleanups.push(() => mx.close());
  return mx;
}

/** A shaping file in a temp dir with these rules. */
function shapingFile(rules: unknown[]): string {
  const temp = makeTempDir();
  cleanups.push(() => temp.remove());
  const file = join(temp.dir, 'shaping.json');
  writeFileSync(file, JSON.stringify({ rules }));
  return file;
}

function testRule(overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    name: 'throttler',
    source: 'test numbers',
    mxSuffixes: ['127.0.0.2'],
    maxConnections: 1,
    messagesPerConnection: 100,
    messagesPerMinute: null,
    messagesPerHour: null,
    recoverAfterSeconds: 60,
    reactions: [{ name: 'test try again later', codes: [421], enhancedCode: '4.7.0', text: 'try again later', pauseSeconds: PAUSE_MS / 1000, rateFactor: 0.5 }],
    ...overrides,
  };
}

async function shapedRelay(shaping: string, routes: Record<string, string>, extra: Record<string, unknown> = {}): Promise<TestRelay> {
  const relay = await startTestRelay({ ...extra, delivery: { ...FAST_DELIVERY, routes, shapingFile: shaping } });
  cleanups.push(() => relay.stop());
  return relay;
}

async function submit(relay: TestRelay, to: string): Promise<void> {
  await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from: 'app@shop.example', to, subject: 'hi', text: 'Hello.\r\n' });
}

function statuses(relay: TestRelay): Array<{ address: string; status: string; attempts: number; next_attempt_at: string | null }> {
  return relay.db.prepare('SELECT address, status, attempts, next_attempt_at FROM recipients ORDER BY id').all() as Array<{
    address: string;
    status: string;
    attempts: number;
    next_attempt_at: string | null;
  }>;
}


describe('traffic shaping: a destination that says "try again later"', () => {
  it('is paused for the rule time (no connection meanwhile), shown as paused, then resumed; an unmatched destination is unaffected', async () => {
    // The throttling host: accepts 2 messages, then answers 421 4.7.0 to every DATA for 600 ms.
    const throttled: number[] = [];
    let accepted = 0;
    const slow = await fakeMx({
      host: '127.0.0.2',
      data: () => {
        const last = throttled[throttled.length - 1];
        if (accepted >= 2 && (throttled.length === 0 || Date.now() - (throttled[0] ?? 0) < 600) && (last === undefined || Date.now() - last < 600)) {
          throttled.push(Date.now());
          return { code: 421, text: '4.7.0 Try again later, closing connection.' };
        }
        accepted++;
        return null;
      },
    });
    const fast = await fakeMx();
    const shaping = shapingFile([testRule({})]);
    const token = 'shaping-test-token-0123456789abcdef';
    const relay = await shapedRelay(shaping, { 'slow.test': `127.0.0.2:${slow.port}`, 'fast.test': `127.0.0.1:${fast.port}` }, {
      admin: { enabled: true, tokens: [{ name: 'ops', token }] },
    });
    for (let k = 1; k <= 6; k++) await submit(relay, `user${k}@slow.test`);
    await waitFor('the throttling reply', () => throttled.length, (n) => n > 0);
    const pausedAt = throttled[0] as number;

    // While paused: the queue view names the destination, until when and why.
    const cli = await rebound(['queue', '--json', '--config', join(relay.dir, 'config.json')]);
    expect(cli.code).toBe(0);
    const summary = JSON.parse(cli.stdout) as { pausedDestinations: Array<{ destination: string; pausedUntil: string; reason: string; reaction: string }> };
    expect(summary.pausedDestinations).toHaveLength(1);
    expect(summary.pausedDestinations[0]).toMatchObject({ destination: 'throttler', reaction: 'test try again later' });
    expect(summary.pausedDestinations[0]?.reason).toMatch(/^421 4\.7\.0 Try again later/);
    const until = Date.parse(summary.pausedDestinations[0]?.pausedUntil ?? '');
    expect(until - pausedAt).toBeGreaterThan(PAUSE_MS - 200);
    expect(until - pausedAt).toBeLessThan(PAUSE_MS + 600);
    const text = await rebound(['queue', '--config', join(relay.dir, 'config.json')]);
    expect(text.stdout).toMatch(/paused destinations \(1, traffic shaping\):\n {2}throttler {2}until \S+ {2}test try again later {2}reply: 421 4\.7\.0 Try again later/);
    const api = await fetch(`http://127.0.0.1:${relay.relay.admin?.port}/v1/queue`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await api.json()) as typeof summary;
    expect(body.pausedDestinations.map((p) => p.destination)).toEqual(['throttler']);

    // The unmatched destination is delivered during the pause.
    await submit(relay, 'someone@fast.test');
    await waitFor('the unmatched destination', () => fast.received.length, (n) => n === 1, 1500);
    expect(Date.now()).toBeLessThan(pausedAt + PAUSE_MS - 100);

    await waitFor('every message at the paused destination', () => slow.received.length, (n) => n === 6, 10_000);
    // No connection and no message from just after the throttling replies to the end of the pause.
    const lastThrottle = throttled[throttled.length - 1] as number;
    const quiet = (t: number): boolean => t > lastThrottle + 150 && t < pausedAt + PAUSE_MS - 100;
    expect(slow.connectedAt.filter(quiet)).toEqual([]);
    expect(slow.received.map((m) => m.at).filter(quiet)).toEqual([]);
    const afterPause = slow.received.filter((m) => m.at > lastThrottle);
    expect(afterPause.length).toBeGreaterThan(0);
    expect(Math.min(...afterPause.map((m) => m.at))).toBeGreaterThanOrEqual(pausedAt + PAUSE_MS - 100);
    // A throttled recipient counts its throttled try, and no more; held ones count nothing.
    const rows = await waitFor('all delivered', () => statuses(relay), (r) => r.every((row) => row.status === 'delivered'));
    const tries = rows.filter((row) => row.address.endsWith('@slow.test')).map((row) => row.attempts);
    expect(tries.filter((n) => n === 1).length).toBeGreaterThanOrEqual(6 - throttled.length);
    expect(Math.max(...tries)).toBeLessThanOrEqual(2);
  }, 20_000);
});

describe('traffic shaping: a throttling greeting', () => {
  it('pauses the destination on a 421 greeting: one connection, the rest held unsent until the pause ends', async () => {
    const mx = await fakeMx({ host: '127.0.0.2', greeting: { code: 421, text: '4.7.0 Try again later, closing connection.' } });
    const relay = await shapedRelay(shapingFile([testRule({})]), { 'greet.test': `127.0.0.2:${mx.port}` });
    for (let k = 1; k <= 3; k++) await submit(relay, `user${k}@greet.test`);
    await waitFor('the throttling greeting', () => mx.connections, (n) => n > 0, 3000);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(mx.connections).toBe(1);
    const first = Math.min(...mx.connectedAt);
    const rows = statuses(relay);
    expect(rows.map((row) => row.status).sort()).toEqual(['deferred', 'queued', 'queued']);
    for (const row of rows) expect(Date.parse(row.next_attempt_at ?? '')).toBeGreaterThanOrEqual(first + PAUSE_MS - 200);
    expect(rows.map((row) => row.attempts).sort()).toEqual([0, 0, 1]);
  });
});

describe('traffic shaping: rates and connections', () => {
  it('keeps to the messages per minute and per connection of the rule', async () => {
    const mx = await fakeMx({ host: '127.0.0.2' });
    const shaping = shapingFile([testRule({ maxConnections: 2, messagesPerConnection: 2, messagesPerMinute: 4, reactions: [] })]);
    const relay = await shapedRelay(shaping, { 'rate.test': `127.0.0.2:${mx.port}` });
    for (let k = 1; k <= 10; k++) await submit(relay, `user${k}@rate.test`);
    await waitFor('the first minute', () => mx.received.length, (n) => n === 4, 5000);
    // Well past the time the rest would have taken unshaped: still 4 in this minute.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(mx.received.length).toBe(4);
    const waiting = statuses(relay).filter((row) => row.status !== 'delivered');
    expect(waiting).toHaveLength(6);
    // Held back unsent: no attempt counted, due once the minute's first start leaves the window, spaced at the rate.
    expect(waiting.every((row) => row.attempts === 0)).toBe(true);
    const due = waiting.map((row) => Date.parse(row.next_attempt_at ?? '')).sort((a, b) => a - b);
    const firstSent = Math.min(...mx.received.map((m) => m.at));
    expect((due[0] ?? 0) - firstSent).toBeGreaterThan(55_000);
    expect((due[due.length - 1] ?? 0) - (due[0] ?? 0)).toBeGreaterThanOrEqual(5 * 15_000 - 100);
    const events = relay.db.prepare("SELECT count(*) AS n FROM events WHERE event = 'temporary_fail'").get() as { n: number };
    expect(events.n).toBe(0);
  }, 15_000);

  it('closes a connection after the rule\'s messages per connection', async () => {
    const mx = await fakeMx({ host: '127.0.0.2', dataDelayMs: 20 });
    const shaping = shapingFile([testRule({ maxConnections: 1, messagesPerConnection: 2, reactions: [] })]);
    const relay = await shapedRelay(shaping, { 'conn.test': `127.0.0.2:${mx.port}` });
    for (let k = 1; k <= 6; k++) await submit(relay, `user${k}@conn.test`);
    await waitFor('all six', () => mx.received.length, (n) => n === 6);
    expect(mx.connections).toBeGreaterThanOrEqual(3);
  });
});

describe('traffic shaping: a destination\'s state', () => {
  const rules = compileShapingRules({ rules: [testRule({ messagesPerMinute: 4, recoverAfterSeconds: 60 })] }, 'test');
  const lookup: NextHopLookup = {
    nextHop: { hosts: [{ name: '127.0.0.2', addresses: ['127.0.0.2'] }], port: 25, routed: true, secure: false, requireTLS: false, verifyCertificate: false, tls: OPPORTUNISTIC },
  };
  const reaction = rules[0]?.reactions[0];
  if (!reaction) throw new Error('test rule has no reaction');

  it('admits the rule\'s rate per sliding minute, pauses, then allows half, and recovers', () => {
    const destination = new Shaper(rules).destinationOf('x.test', lookup);
    if (!destination) throw new Error('no match');
    const t0 = 1_000_000;
    for (let k = 0; k < 4; k++) expect(destination.admit(t0 + k)).toBeNull();
    expect(destination.admit(t0 + 10)).toBe(t0 + 60_000);
    expect(destination.admit(t0 + 60_000)).toBeNull();
    const pause = destination.throttled(t0 + 61_000, reaction, '421 4.7.0 Try again later');
    expect(pause.pausedUntil.getTime()).toBe(t0 + 61_000 + PAUSE_MS);
    // Paused: nothing goes, whatever room the window has; claimed batches are held to its end.
    expect(destination.admit(t0 + 62_000)).toBe(t0 + 61_000 + PAUSE_MS);
    // After it: half the rate (2 a minute).
    const after = t0 + 61_000 + PAUSE_MS;
    expect(destination.admit(after)).toBeNull();
    expect(destination.admit(after + 1)).not.toBeNull();
    expect(destination.limit(4)).toBe(2);
    // A recoverAfterSeconds later without another throttling reply: the rule's rate again.
    expect(destination.admit(after + 61_000)).toBeNull();
    expect(destination.rateFactor).toBe(1);
  });

  it('holds back batches spaced at the rate, not all at once', () => {
    const destination = new Shaper(rules).destinationOf('x.test', lookup);
    if (!destination) throw new Error('no match');
    const slots = [0, 1, 2].map(() => destination.holdUntil(5_000, 60_000));
    expect(slots).toEqual([60_000, 75_000, 90_000]);
  });

  it('carries a pause over a restart, slowed down', () => {
    const shaper = new Shaper(rules);
    const until = new Date(Date.now() + 60_000);
    shaper.restore({ destination: 'throttler', pausedUntil: until, reason: '421 4.7.0 Try again later', reaction: 'test try again later' });
    shaper.restore({ destination: 'no-such-rule', pausedUntil: until, reason: 'x', reaction: 'x' });
    const destination = shaper.destinationOf('x.test', lookup);
    expect(destination?.admit(Date.now())).toBe(until.getTime());
    expect(destination?.rateFactor).toBe(0.5);
  });
});

describe('traffic shaping rules (config/shaping.json)', () => {
  const shipped = loadShapingRules(null);
  const shaper = new Shaper(shipped);
  const via = (host: string): NextHopLookup => ({
    nextHop: { hosts: [{ name: host, addresses: ['192.0.2.1'] }], port: 25, routed: false, secure: false, requireTLS: false, verifyCertificate: false, tls: OPPORTUNISTIC },
  });

  it('ships rules for the big providers, each naming its source', () => {
    expect(shipped.map((r) => r.name)).toEqual(['gmail', 'outlook', 'yahoo']);
    for (const rule of shipped) expect(rule.source).toMatch(/https:\/\/\S+/);
    for (const rule of shipped) expect(rule.source).toMatch(/conservative default/);
  });

  it('matches MX hosts by suffix at a label boundary, and nothing else', () => {
    expect(shaper.destinationOf('example.com', via('gmail-smtp-in.l.google.com'))?.rule.name).toBe('gmail');
    expect(shaper.destinationOf('corp.example', via('ALT1.ASPMX.L.GOOGLE.COM'))?.rule.name).toBe('gmail');
    expect(shaper.destinationOf('contoso.example', via('contoso-example.mail.protection.outlook.com'))?.rule.name).toBe('outlook');
    expect(shaper.destinationOf('yahoo.com', via('mta5.am0.yahoodns.net'))?.rule.name).toBe('yahoo');
    expect(shaper.destinationOf('a.example', via('notgoogle.com'))).toBeNull();
    expect(shaper.destinationOf('b.example', via('google.com.attacker.example'))).toBeNull();
    expect(shaper.destinationOf('c.example', via('127.0.0.1'))).toBeNull();
    expect(shaper.destinationOf('d.example', { failure: classifyReply('451 4.4.3 no route') })).toBeNull();
  });

  it('reacts to the providers\' throttling replies, not to a recipient\'s own trouble', () => {
    const report = (reply: string, host: string): BatchReport => ({
      failedHosts: [],
      outcomes: [{ recipientId: 1, delivered: false, failure: classifyReply({ text: reply, stage: 'data', remoteHost: host }), at: { startedAt: new Date(), durationMs: 0, mxHost: host, mxIp: null, localIp: null }, retryInNewTransaction: false }],
    });
    const gmail = shaper.destinationOf('gmail.com', via('gmail-smtp-in.l.google.com'));
    const outlook = shaper.destinationOf('hotmail.com', via('hotmail-com.olc.protection.outlook.com'));
    const yahoo = shaper.destinationOf('yahoo.com', via('mta7.am0.yahoodns.net'));
    if (!gmail || !outlook || !yahoo) throw new Error('shipped rules did not match');
    const host = 'gmail-smtp-in.l.google.com';
    expect(shaper.throttlingIn(gmail, report('421-4.7.28 [192.0.2.9] Our system has detected an unusual rate of unsolicited mail originating from your IP address. 421 4.7.28 rate limited. - gsmtp', host))?.reaction.name).toBe('Gmail rate limit (4.7.28)');
    expect(shaper.throttlingIn(gmail, report('421 4.7.0 Try again later, closing connection. (EHLO) - gsmtp', host))?.reaction.name).toBe('Gmail try again later (4.7.0)');
    expect(shaper.throttlingIn(gmail, report('450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. - gsmtp', host))).toBeNull();
    expect(shaper.throttlingIn(gmail, report('550 5.1.1 The email account that you tried to reach does not exist. - gsmtp', host))).toBeNull();
    const msHost = 'hotmail-com.olc.protection.outlook.com';
    expect(shaper.throttlingIn(outlook, report('451 4.7.650 The mail server [192.0.2.9] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://aka.ms/postmaster (S775)', msHost))?.reaction.name).toMatch(/IP reputation/);
    const yahooHost = 'mta7.am0.yahoodns.net';
    expect(shaper.throttlingIn(yahoo, report('421 4.7.0 [TSS04] Messages from 192.0.2.9 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes', yahooHost))?.reaction.name).toMatch(/TSSxx/);
  });

  it('refuses a broken rules file with the file, the rule and the fix', () => {
    const bad = (data: unknown): string => {
      try {
        compileShapingRules(data, 'my-shaping.json');
      } catch (error) {
        return (error as Error).message;
      }
      return 'accepted';
    };
    expect(bad({ rules: [testRule({ mxSuffixes: [] })] })).toMatch(/my-shaping\.json[\s\S]*rules\.0: give mxSuffixes or domains/);
    expect(bad({ rules: [testRule({ maxConnections: 0 })] })).toMatch(/rules\.0\.maxConnections/);
    expect(bad({ rules: [testRule({ rateLimit: 5 })] })).toMatch(/rules\.0: .*rateLimit/);
    expect(bad({ rules: [testRule({}), testRule({})] })).toMatch(/rules\.1\.name: "throttler" is used twice/);
    expect(bad({ rules: [testRule({ reactions: [{ name: 'x', text: '(', pauseSeconds: 1, rateFactor: 0.5 }] })] })).toMatch(/rules\.0\.reactions\.0\.text: not a regular expression/);
    expect(bad({ rules: [testRule({ reactions: [{ name: 'x', enhancedCode: '5.7.1', pauseSeconds: 1, rateFactor: 0.5 }] })] })).toMatch(/temporary enhanced status code/);
    expect(bad({ rules: [testRule({ reactions: [{ name: 'x', pauseSeconds: 1, rateFactor: 2 }] })] })).toMatch(/rateFactor/);
    expect(bad([])).toMatch(/\(top level\)/);
  });

  it('stops the relay start on a missing or broken shaping file, naming delivery.shapingFile', async () => {
    await expect(startTestRelay({ delivery: { ...FAST_DELIVERY, shapingFile: '/nonexistent/shaping.json' } })).rejects.toThrow(/cannot read the shaping rules \/nonexistent\/shaping\.json \(ENOENT\); check delivery\.shapingFile/);
    const file = shapingFile([testRule({ maxConnections: -1 })]);
    await expect(startTestRelay({ delivery: { ...FAST_DELIVERY, shapingFile: file } })).rejects.toThrow(/invalid shaping rules in .*shaping\.json/);
  });
});
