import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { parse } from 'csv-parse/sync';
import ExcelJS from 'exceljs';
import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerReportCommands } from '../src/cli/report-commands.js';
import { OperatorError } from '../src/errors.js';
import {
  bouncesCsv,
  bouncesReport,
  bouncesXlsx,
  parseBouncesQuery,
  ReportQueryError,
  type BounceTypeFilter,
  type BouncesReportQuery,
  type BouncesReportRow,
  type GroupBy,
} from '../src/reports/bounces.js';
import { startFakeMx } from './support/fake-mx.js';
import { startTestRelay, writeTestConfig, type TestRelay } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';
import { postfixDsn } from './support/postfix-dsn.js';

// ---------------------------------------------------------------------------------------------
// A fake MX that logs every RCPT TO it answers and the source address it came from, so the
// expected numbers (by sending IP too) come from what the remote side saw, not from our tables.

interface Reply {
  code: number;
  text: string;
}

interface RcptLog {
  address: string;
  attempt: number;
  remoteAddress: string;
  reply: Reply | null;
  phase: 1 | 2;
}

interface Accepted {
  from: string;
  to: string[];
  remoteAddress: string;
}

const MAX_ATTEMPTS = 2;

/** The scripted reply for a recipient, by its local part. */
function scriptedReply(address: string, attempt: number): Reply | null {
  if (address.startsWith('hard-')) return { code: 550, text: `5.1.1 <${address}>: Recipient address rejected: User unknown` };
  if (address.startsWith('full-')) return { code: 552, text: `5.2.2 <${address}>: Mailbox full` };
  if (address.startsWith('busy-')) return { code: 452, text: `4.2.2 <${address}>: Mailbox full, try again later` };
  if (address.startsWith('spam-')) return { code: 554, text: '5.7.1 Message rejected as spam' };
  if (address.startsWith('later-') && attempt === 1) return { code: 450, text: `4.2.1 <${address}>: Recipient address rejected: try again later` };
  return null;
}

/**
 * How Rebound classifies each scripted reply (checked against `rebound classify` by hand), and
 * what the event's reason becomes: spam-related is hard but not in the default
 * suppression.categories, so it is a block.
 */
const CLASSIFIED: Record<number, { bounceType: string; category: string; reason: string }> = {
  550: { bounceType: 'hard', category: 'bad-mailbox', reason: 'bounced' },
  552: { bounceType: 'soft', category: 'quota-issues', reason: 'bounced' },
  452: { bounceType: 'soft', category: 'quota-issues', reason: 'deferred' },
  554: { bounceType: 'hard', category: 'spam-related', reason: 'blocked' },
  450: { bounceType: 'soft', category: 'other', reason: 'deferred' },
};

async function recordingMx(phase: () => 1 | 2): Promise<{ port: number; rcpts: RcptLog[]; accepted: Accepted[]; close(): Promise<void> }> {
  const rcpts: RcptLog[] = [];
  const accepted: Accepted[] = [];
  const attempts = new Map<string, number>();
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    authOptional: true,
    hideENHANCEDSTATUSCODES: true,
    disabledCommands: ['STARTTLS'],
    onRcptTo(address, session, callback) {
      const attempt = (attempts.get(address.address) ?? 0) + 1;
      attempts.set(address.address, attempt);
      const reply = scriptedReply(address.address, attempt);
      rcpts.push({ address: address.address, attempt, remoteAddress: session.remoteAddress, reply, phase: phase() });
      callback(reply ? Object.assign(new Error(reply.text), { responseCode: reply.code }) : undefined);
    },
    onData(stream, session, callback) {
      stream.resume();
      stream.on('end', () => {
        accepted.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          remoteAddress: session.remoteAddress,
        });
        callback(null, 'Ok: queued on the fake MX');
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return { port, rcpts, accepted, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

// ---------------------------------------------------------------------------------------------
// The plan: who sends what to whom, in two phases, so the period filter has something to cut.

interface Planned {
  id: string;
  from: string | null; // null: a message without a From header
  campaign: string | null;
  to: string[];
}

const PHASE_1: Planned[] = [
  { id: 'M1', from: 'news@shop.example', campaign: 'spring', to: ['hard-1@alpha.test', 'full-1@alpha.test', 'ok-1@alpha.test'] },
  { id: 'M2', from: 'news@shop.example', campaign: 'spring', to: ['busy-1@beta.test'] },
  { id: 'M3', from: 'alerts@bank.example', campaign: null, to: ['hard-2@beta.test', 'full-2@beta.test'] },
  { id: 'M4', from: 'alerts@bank.example', campaign: 'autumn', to: ['spam-1@alpha.test', 'later-1@alpha.test'] },
  { id: 'M5', from: null, campaign: null, to: ['full-3@alpha.test'] },
];
const PHASE_2: Planned[] = [
  // hard-1 bounced hard in M1: it is suppressed now, dropped unsent, and not a bounce.
  { id: 'M6', from: 'news@shop.example', campaign: 'spring', to: ['hard-1@alpha.test', 'full-4@alpha.test'] },
  { id: 'M7', from: 'news@shop.example', campaign: 'autumn', to: ['gone-1@beta.test'] },
];
const DELAYED_DIAGNOSTIC = (address: string): string => `550 5.1.1 <${address}>: Recipient address rejected: User unknown in local recipient table`;

/** One bounce as the test expects the store to have it: the oracle the report is checked against. */
interface Observation {
  phase: 1 | 2;
  fromDomain: string;
  campaign: string | null;
  recipientDomain: string;
  ip: string;
  bounceType: string;
  category: string;
  reason: string;
  text: string;
}

const mask = (text: string, address: string): string => text.split(address).join('{recipient}');

function observations(rcpts: RcptLog[], accepted: Accepted[]): Observation[] {
  const planOf = new Map<string, Planned>();
  for (const message of [...PHASE_1, ...PHASE_2]) for (const address of message.to) if (!planOf.has(address)) planOf.set(address, message);
  const about = (address: string): Pick<Observation, 'fromDomain' | 'campaign' | 'recipientDomain'> => {
    const plan = planOf.get(address) as Planned;
    return { fromDomain: plan.from?.split('@')[1] ?? '(none)', campaign: plan.campaign, recipientDomain: address.split('@')[1] as string };
  };
  const result: Observation[] = [];
  for (const entry of rcpts) {
    if (!entry.reply) continue;
    const reply = `${entry.reply.code} ${entry.reply.text}`;
    // The last try of a temporary failure is not a deferral but the expiry: one bounce still.
    const expired = entry.reply.code < 500 && entry.address.startsWith('busy-') && entry.attempt === MAX_ATTEMPTS;
    result.push({
      phase: entry.phase,
      ...about(entry.address),
      ip: entry.remoteAddress,
      ...(expired ? { bounceType: 'soft', category: 'message-expired', reason: 'expired' } : (CLASSIFIED[entry.reply.code] as { bounceType: string; category: string; reason: string })),
      text: mask(expired ? `gave up after ${MAX_ATTEMPTS} attempts; last: ${reply}` : reply, entry.address),
    });
  }
  // The delayed bounce: the DSN is about the transaction that delivered, from its source address;
  // its text is what the report parser read (Status and Diagnostic-Code), as stored.
  const delivery = accepted.find((m) => m.to.includes('gone-1@beta.test')) as Accepted;
  result.push({
    phase: 2,
    ...about('gone-1@beta.test'),
    ip: delivery.remoteAddress,
    bounceType: 'hard',
    category: 'bad-mailbox',
    reason: 'bounced',
    text: delayedText,
  });
  return result;
}

type Comparable = Omit<BouncesReportRow, 'firstAt' | 'lastAt'>;

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** What the report must say, computed from the observations in plain code. */
function expectedRows(all: Observation[], query: { groupBy: Exclude<GroupBy, 'tag'>; type: BounceTypeFilter; campaign: string | null; phases: Array<1 | 2> }): Comparable[] {
  const rows = new Map<string, Comparable>();
  for (const o of all) {
    if (!query.phases.includes(o.phase)) continue;
    if (query.campaign !== null && o.campaign !== query.campaign) continue;
    if (query.type !== 'all' && o.bounceType !== query.type) continue;
    const group = { 'from-domain': o.fromDomain, ip: o.ip, 'recipient-domain': o.recipientDomain, category: o.category }[query.groupBy];
    const key = JSON.stringify([group, o.text, o.bounceType, o.category, o.reason]);
    const row = rows.get(key) ?? { group, text: o.text, amount: 0, bounceType: o.bounceType, category: o.category, reason: o.reason };
    row.amount++;
    rows.set(key, row);
  }
  return [...rows.values()].sort((a, b) => b.amount - a.amount || byText(a.group, b.group) || byText(a.text, b.text) || byText(a.category, b.category) || byText(a.reason, b.reason));
}

const comparable = (rows: BouncesReportRow[]): Comparable[] => rows.map(({ firstAt: _f, lastAt: _l, ...rest }) => rest);

// ---------------------------------------------------------------------------------------------
// The in-process CLI: `rebound` as src/cli.ts builds it, with this module's commands.

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function rebound(args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const program = new Command('rebound').exitOverride().configureOutput({ writeOut: (s) => (stdout += s), writeErr: (s) => (stderr += s) });
  registerReportCommands(program);
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    stderr += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stderr.write);
  try {
    await program.parseAsync(args, { from: 'user' });
    return { code: 0, stdout, stderr };
  } catch (error) {
    // As src/cli.ts: an OperatorError is printed alone and exits 2; commander's own errors keep theirs.
    if (error instanceof OperatorError) return { code: 2, stdout, stderr: `${stderr}rebound: ${error.message}\n` };
    if (error instanceof CommanderError) return { code: error.exitCode, stdout, stderr };
    throw error;
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

// ---------------------------------------------------------------------------------------------
// The store, filled through the real paths once for the whole file.

let relay: TestRelay;
let mx: Awaited<ReturnType<typeof recordingMx>>;
let all: Observation[];
let configFile: string;
let start: Date;
let mid: Date;
let end: Date;
let phase: 1 | 2 = 1;
/** The delayed bounce's text in the report: events.detail ("5.1.1 smtp; 550 5.1.1 <...>: ..."), the address masked. */
let delayedText: string;

const FINAL = ['delivered', 'bounced', 'expired', 'suppressed'];

/** Submits a planned message and waits until every recipient is final, so the next starts alone. */
async function send(message: Planned): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true });
  const headers = message.campaign ? { 'X-Campaign-ID': message.campaign } : {};
  const info = message.from
    ? await transport.sendMail({ from: message.from, to: message.to, subject: `${message.id} news`, text: 'Hello.\r\n', headers })
    : await transport.sendMail({
        envelope: { from: 'app@nofrom.example', to: message.to },
        raw: `To: ${message.to.join(', ')}\r\nSubject: ${message.id} without a From\r\n\r\nHello.\r\n`,
      });
  const queueId = info.response.split(' ').pop() as string;
  await waitFor(
    `${message.id} to be final`,
    () => relay.db.prepare('SELECT r.status FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ?').all(queueId) as Array<{ status: string }>,
    (rows) => rows.length === message.to.length && rows.every((row) => FINAL.includes(row.status)),
    15_000,
  );
}

beforeAll(async () => {
  mx = await recordingMx(() => phase);
  const route = `127.0.0.1:${mx.port}`;
  relay = await startTestRelay({
    returnPath: { domain: 'bounces.relay.test' },
    inbound: { enabled: true },
    delivery: {
      enabled: true,
      pollIntervalMs: 50,
      connectionTimeoutSeconds: 2,
      greetingTimeoutSeconds: 1,
      socketTimeoutSeconds: 5,
      routes: { 'alpha.test': route, 'beta.test': route },
      localAddresses: ['127.0.0.2', '127.0.0.3'],
      retry: { scheduleSeconds: [0.2], jitter: 0, maxAttempts: MAX_ATTEMPTS, maxAgeSeconds: 60 },
    },
  });
  configFile = join(relay.dir, 'config.json');

  start = new Date();
  for (const message of PHASE_1) await send(message);
  await new Promise((resolve) => setTimeout(resolve, 5));
  mid = new Date();
  phase = 2;
  await new Promise((resolve) => setTimeout(resolve, 5));
  for (const message of PHASE_2) await send(message);

  // The delayed bounce: gone-1 was delivered; its MX reports a 5.1.1 later, to the VERP return path.
  const delivery = mx.accepted.find((m) => m.to.includes('gone-1@beta.test'));
  if (!delivery) throw new Error('gone-1 was not delivered');
  const inbound = relay.relay.inbound;
  if (!inbound) throw new Error('the inbound listener is not running');
  await nodemailer
    .createTransport({ host: '127.0.0.1', port: inbound.port, ignoreTLS: true })
    .sendMail({ envelope: { from: '', to: [delivery.from] }, raw: postfixDsn('gone-1@beta.test', '5.1.1', DELAYED_DIAGNOSTIC('gone-1@beta.test')) });
  await waitFor(
    'the delayed bounce',
    () => relay.db.prepare(`SELECT status FROM recipients WHERE address = 'gone-1@beta.test'`).get() as { status: string },
    (row) => row.status === 'bounced',
  );
  const stored = relay.db.prepare(`SELECT detail FROM events WHERE source = 'delayed' AND event = 'permanent_fail'`).get() as { detail: string };
  expect(stored.detail).toContain(DELAYED_DIAGNOSTIC('gone-1@beta.test'));
  delayedText = mask(stored.detail, 'gone-1@beta.test');
  await new Promise((resolve) => setTimeout(resolve, 5));
  end = new Date();
  all = observations(mx.rcpts, mx.accepted);
}, 60_000);

afterAll(async () => {
  await relay?.stop();
  await mx?.close();
});

function query(overrides: Partial<BouncesReportQuery> = {}): BouncesReportQuery {
  return { since: start, until: end, campaign: null, tag: null, groupBy: 'from-domain', type: 'soft', ...overrides };
}

// ---------------------------------------------------------------------------------------------

describe('the store the report reads (filled through the real paths)', () => {
  it('has what the scenario needs: both source addresses, hard, soft, expired, a delayed bounce, a suppressed drop', () => {
    expect(new Set(all.map((o) => o.ip))).toEqual(new Set(['127.0.0.2', '127.0.0.3']));
    expect(all).toHaveLength(11);
    const events = relay.db
      .prepare(`SELECT e.event, e.reason, e.source, count(*) AS n FROM events e WHERE e.event IN ('permanent_fail', 'temporary_fail') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`)
      .all();
    expect(events).toEqual([
      { event: 'permanent_fail', reason: 'blocked', source: 'immediate', n: 1 },
      { event: 'permanent_fail', reason: 'bounced', source: 'delayed', n: 1 },
      { event: 'permanent_fail', reason: 'bounced', source: 'immediate', n: 6 },
      { event: 'permanent_fail', reason: 'expired', source: 'immediate', n: 1 },
      { event: 'permanent_fail', reason: 'suppressed', source: 'immediate', n: 1 },
      { event: 'temporary_fail', reason: null, source: 'immediate', n: 2 },
    ]);
  });
});

describe('bouncesReport', () => {
  it('defaults to soft bounces by from-domain: one row per group and bounce text, the recipient address masked', () => {
    const rows = bouncesReport(relay.db, parseBouncesQuery({ since: start.toISOString(), until: end.toISOString() }));
    expect(comparable(rows)).toEqual([
      { group: 'shop.example', text: '552 5.2.2 <{recipient}>: Mailbox full', amount: 2, bounceType: 'soft', category: 'quota-issues', reason: 'bounced' },
      { group: '(none)', text: '552 5.2.2 <{recipient}>: Mailbox full', amount: 1, bounceType: 'soft', category: 'quota-issues', reason: 'bounced' },
      { group: 'bank.example', text: '450 4.2.1 <{recipient}>: Recipient address rejected: try again later', amount: 1, bounceType: 'soft', category: 'other', reason: 'deferred' },
      { group: 'bank.example', text: '552 5.2.2 <{recipient}>: Mailbox full', amount: 1, bounceType: 'soft', category: 'quota-issues', reason: 'bounced' },
      { group: 'shop.example', text: '452 4.2.2 <{recipient}>: Mailbox full, try again later', amount: 1, bounceType: 'soft', category: 'quota-issues', reason: 'deferred' },
      {
        group: 'shop.example',
        text: 'gave up after 2 attempts; last: 452 4.2.2 <{recipient}>: Mailbox full, try again later',
        amount: 1,
        bounceType: 'soft',
        category: 'message-expired',
        reason: 'expired',
      },
    ]);
    for (const row of rows) {
      expect(row.firstAt <= row.lastAt).toBe(true);
      expect(row.firstAt >= start.toISOString() && row.lastAt < end.toISOString()).toBe(true);
    }
  });

  it('groups hard bounces by recipient domain and every bounce by category; the delayed one included, the suppressed drop not', () => {
    expect(comparable(bouncesReport(relay.db, query({ groupBy: 'recipient-domain', type: 'hard' })))).toEqual([
      { group: 'alpha.test', text: '550 5.1.1 <{recipient}>: Recipient address rejected: User unknown', amount: 1, bounceType: 'hard', category: 'bad-mailbox', reason: 'bounced' },
      { group: 'alpha.test', text: '554 5.7.1 Message rejected as spam', amount: 1, bounceType: 'hard', category: 'spam-related', reason: 'blocked' },
      { group: 'beta.test', text: delayedText, amount: 1, bounceType: 'hard', category: 'bad-mailbox', reason: 'bounced' },
      { group: 'beta.test', text: '550 5.1.1 <{recipient}>: Recipient address rejected: User unknown', amount: 1, bounceType: 'hard', category: 'bad-mailbox', reason: 'bounced' },
    ]);
    const byCategory = bouncesReport(relay.db, query({ groupBy: 'category', type: 'all' }));
    expect(byCategory.map((r) => [r.group, r.amount])).toEqual([
      ['quota-issues', 4],
      ['bad-mailbox', 2],
      ['bad-mailbox', 1],
      ['message-expired', 1],
      ['other', 1],
      ['quota-issues', 1],
      ['spam-related', 1],
    ]);
    expect(byCategory.reduce((sum, r) => sum + r.amount, 0)).toBe(11);
  });

  it('groups by the sending IP as the MX saw the connections (two addresses in turn)', () => {
    for (const type of ['soft', 'hard', 'all'] as const) {
      const rows = bouncesReport(relay.db, query({ groupBy: 'ip', type }));
      expect(comparable(rows)).toEqual(expectedRows(all, { groupBy: 'ip', type, campaign: null, phases: [1, 2] }));
    }
    const perIp = new Map<string, number>();
    for (const row of bouncesReport(relay.db, query({ groupBy: 'ip', type: 'all' }))) perIp.set(row.group, (perIp.get(row.group) ?? 0) + row.amount);
    expect([...perIp.keys()].sort()).toEqual(['127.0.0.2', '127.0.0.3']);
    expect([...perIp.values()].reduce((a, b) => a + b)).toBe(11);
  });

  it('matches the expected numbers for every grouping, type, campaign and period', () => {
    const periods: Array<{ since: Date; until: Date; phases: Array<1 | 2> }> = [
      { since: start, until: end, phases: [1, 2] },
      { since: start, until: mid, phases: [1] },
      { since: mid, until: end, phases: [2] },
    ];
    let checked = 0;
    for (const groupBy of ['from-domain', 'ip', 'recipient-domain', 'category'] as const) {
      for (const type of ['soft', 'hard', 'all'] as const) {
        for (const campaign of [null, 'spring', 'autumn', 'no-such-campaign']) {
          for (const period of periods) {
            const rows = bouncesReport(relay.db, { since: period.since, until: period.until, campaign, tag: null, groupBy, type });
            expect(comparable(rows), JSON.stringify({ groupBy, type, campaign, period })).toEqual(expectedRows(all, { groupBy, type, campaign, phases: period.phases }));
            checked++;
          }
        }
      }
    }
    expect(checked).toBe(144);
  });

  it('filters by campaign: spring is M1, M2 and M6; mail without a campaign is only in "all campaigns"', () => {
    expect(comparable(bouncesReport(relay.db, query({ campaign: 'spring', groupBy: 'recipient-domain', type: 'all' })))).toEqual([
      { group: 'alpha.test', text: '552 5.2.2 <{recipient}>: Mailbox full', amount: 2, bounceType: 'soft', category: 'quota-issues', reason: 'bounced' },
      { group: 'alpha.test', text: '550 5.1.1 <{recipient}>: Recipient address rejected: User unknown', amount: 1, bounceType: 'hard', category: 'bad-mailbox', reason: 'bounced' },
      { group: 'beta.test', text: '452 4.2.2 <{recipient}>: Mailbox full, try again later', amount: 1, bounceType: 'soft', category: 'quota-issues', reason: 'deferred' },
      {
        group: 'beta.test',
        text: 'gave up after 2 attempts; last: 452 4.2.2 <{recipient}>: Mailbox full, try again later',
        amount: 1,
        bounceType: 'soft',
        category: 'message-expired',
        reason: 'expired',
      },
    ]);
    expect(bouncesReport(relay.db, query({ campaign: 'Spring', type: 'all' }))).toEqual([]); // ids are compared exactly
  });

  it('counts a bounce at exactly --since and leaves out one at exactly --until', () => {
    const delayedAt = (relay.db.prepare(`SELECT at FROM events WHERE source = 'delayed' AND event = 'permanent_fail'`).get() as { at: string }).at;
    const at = new Date(delayedAt);
    const hard = (since: Date, until: Date): number =>
      bouncesReport(relay.db, query({ since, until, type: 'hard', groupBy: 'recipient-domain' }))
        .filter((r) => r.text === delayedText)
        .reduce((sum, r) => sum + r.amount, 0);
    expect(hard(at, end)).toBe(1);
    expect(hard(mid, at)).toBe(0);
    expect(hard(mid, new Date(at.getTime() + 1))).toBe(1);
    expect(bouncesReport(relay.db, query({ since: new Date('2020-01-01T00:00:00Z'), until: start, type: 'all' }))).toEqual([]);
  });
});

describe('a relay without delivery.localAddresses', () => {
  it('shows the sending IP as "(none)": the system chose it and the store does not know it', async () => {
    const reject = await startFakeMx({ rcpt: () => ({ code: 550, text: '5.1.1 User unknown' }) });
    const plain = await startTestRelay({ delivery: { enabled: true, pollIntervalMs: 50, routes: { 'alpha.test': `127.0.0.1:${reject.port}` } } });
    try {
      const since = new Date();
      await nodemailer.createTransport({ host: '127.0.0.1', port: plain.port, ignoreTLS: true }).sendMail({ from: 'news@shop.example', to: 'nobody@alpha.test', subject: 'hi', text: 'hi' });
      await waitFor('the bounce', () => plain.db.prepare('SELECT status FROM recipients').get() as { status: string }, (row) => row.status === 'bounced');
      const rows = bouncesReport(plain.db, { since, until: new Date(Date.now() + 1000), campaign: null, tag: null, groupBy: 'ip', type: 'hard' });
      expect(comparable(rows)).toEqual([{ group: '(none)', text: '550 5.1.1 User unknown', amount: 1, bounceType: 'hard', category: 'bad-mailbox', reason: 'bounced' }]);
    } finally {
      await plain.stop();
      await reject.close();
    }
  });
});

describe('docs/reports.md', () => {
  it('gives the report\'s rows with its sqlite3 query', () => {
    const doc = readFileSync(new URL('../docs/reports.md', import.meta.url), 'utf8');
    const sql = /```sql\n-- check: bounces-report\n([\s\S]*?)```/.exec(doc)?.[1];
    if (!sql) throw new Error('no "-- check: bounces-report" block in docs/reports.md');
    const period = sql.replace("'2026-11-01'", `'${start.toISOString()}'`).replace("'2026-12-01'", `'${end.toISOString()}'`);
    const rows = relay.db.prepare(period).all() as Array<Record<string, unknown>>;
    expect(rows).toEqual(
      bouncesReport(relay.db, query()).map((r) => ({ group: r.group, bounce_text: r.text, amount: r.amount, type: r.bounceType, category: r.category, reason: r.reason, first_at: r.firstAt, last_at: r.lastAt })),
    );
    expect(rows.length).toBeGreaterThan(3);
  });
});

describe('parseBouncesQuery', () => {
  const now = new Date('2026-11-22T20:00:00.000Z');

  it('reads ISO 8601 dates and date-times (no offset: UTC) and fills the defaults', () => {
    expect(parseBouncesQuery({ since: '2026-11-01' }, now)).toEqual({
      since: new Date('2026-11-01T00:00:00.000Z'),
      until: now,
      campaign: null,
      tag: null,
      groupBy: 'from-domain',
      type: 'soft',
    });
    const cases: Array<[string, string]> = [
      ['2026-11-01T12:00:00Z', '2026-11-01T12:00:00.000Z'],
      ['2026-11-01T12:00', '2026-11-01T12:00:00.000Z'],
      ['2026-11-01 12:00:30', '2026-11-01T12:00:30.000Z'],
      ['2026-11-01T12:00:00.123456Z', '2026-11-01T12:00:00.123Z'],
      ['2026-11-01T12:00:00+01:00', '2026-11-01T11:00:00.000Z'],
      ['2026-11-01T12:00:00-0530', '2026-11-01T17:30:00.000Z'],
      ['2024-02-29', '2024-02-29T00:00:00.000Z'],
      ['  2026-11-01t00:00z ', '2026-11-01T00:00:00.000Z'],
    ];
    for (const [input, iso] of cases) expect(parseBouncesQuery({ since: input, until: '2027-01-01' }).since.toISOString(), input).toBe(iso);
    expect(parseBouncesQuery({ since: '2026-11-01', until: '2026-12-01', campaign: ' spring ', groupBy: 'IP', type: 'All' })).toEqual({
      since: new Date('2026-11-01T00:00:00.000Z'),
      until: new Date('2026-12-01T00:00:00.000Z'),
      campaign: 'spring',
      tag: null,
      groupBy: 'ip',
      type: 'all',
    });
  });

  it('refuses bad input with messages that name the flag and the fix', () => {
    const refused = (input: Parameters<typeof parseBouncesQuery>[0]): string => {
      try {
        parseBouncesQuery(input, now);
      } catch (error) {
        expect(error).toBeInstanceOf(ReportQueryError);
        expect(error).toBeInstanceOf(OperatorError);
        return (error as Error).message;
      }
      throw new Error(`accepted ${JSON.stringify(input)}`);
    };
    expect(refused({})).toBe('--since is required: the start of the period, e.g. --since 2026-11-01 (use ISO 8601 like 2026-11-01 or 2026-11-01T12:00:00Z)');
    expect(refused({ since: 'yesterdayish' })).toBe('--since: "yesterdayish" is not a date; use ISO 8601 like 2026-11-01 or 2026-11-01T12:00:00Z');
    for (const bad of ['2026-02-29', '2026-13-01', '2026-11-31', '2026-11-01T24:00', '2026-11-01T12:60', '11/01/2026', '2026-11-01T12:00:00+25:00', '20261101']) {
      expect(refused({ since: '2026-01-01', until: bad })).toBe(`--until: "${bad}" is not a date; use ISO 8601 like 2026-11-01 or 2026-11-01T12:00:00Z`);
    }
    expect(refused({ since: '2026-12-01', until: '2026-11-01' })).toBe(
      '--since 2026-12-01T00:00:00.000Z is not before --until 2026-11-01T00:00:00.000Z; the period starts at --since and ends just before --until',
    );
    expect(refused({ since: '2026-11-01', until: '2026-11-01' })).toMatch(/^--since 2026-11-01T00:00:00\.000Z is not before --until 2026-11-01T00:00:00\.000Z;/);
    expect(refused({ since: '2027-01-01' })).toBe(
      '--since 2027-01-01T00:00:00.000Z is not before --until 2026-11-22T20:00:00.000Z (now); the period starts at --since and ends just before --until',
    );
    expect(refused({ since: '2026-11-01', groupBy: 'planet' })).toBe('--group-by: "planet" is not one of from-domain, ip, recipient-domain, category, tag');
    // The API may build a query without parseBouncesQuery: the report checks what reaches its SQL.
    expect(() => bouncesReport(relay.db, { ...query(), groupBy: 'constructor' as GroupBy })).toThrow(
      new ReportQueryError('--group-by: "constructor" is not one of from-domain, ip, recipient-domain, category, tag'),
    );
    expect(() => bouncesReport(relay.db, { ...query(), type: 'medium' as BounceTypeFilter })).toThrow(new ReportQueryError('--type: "medium" is not one of soft, hard, all'));
    expect(refused({ since: '2026-11-01', type: 'medium' })).toBe('--type: "medium" is not one of soft, hard, all');
    expect(refused({ since: '2026-11-01', campaign: ' ' })).toBe('--campaign: give a campaign id (the value of the campaign header), or leave --campaign out for all campaigns');
  });
});

describe('CSV and XLSX', () => {
  const sample: BouncesReportRow[] = [
    { group: 'shop.example', text: '550 5.1.1 "quoted", with a comma\r\nand a second line', amount: 3, bounceType: 'hard', category: 'bad-mailbox', reason: 'bounced', firstAt: '2026-11-01T00:00:00.000Z', lastAt: '2026-11-02T00:00:00.000Z' },
    { group: 'bank.example', text: '=HYPERLINK("http://evil.example")', amount: 1, bounceType: 'soft', category: 'other', reason: 'deferred', firstAt: '2026-11-03T00:00:00.000Z', lastAt: '2026-11-03T00:00:00.000Z' },
  ];
  const sampleQuery: BouncesReportQuery = { since: new Date('2026-11-01T00:00:00Z'), until: new Date('2026-12-01T00:00:00Z'), campaign: 'spring', tag: null, groupBy: 'from-domain', type: 'all' };

  it('writes RFC 4180: header row, CRLF line ends, quotes doubled, formulas neutralised', () => {
    expect(bouncesCsv(sample, sampleQuery)).toBe(
      'from-domain,bounce_text,amount,type,category,reason,first_at,last_at\r\n' +
        'shop.example,"550 5.1.1 ""quoted"", with a comma\r\nand a second line",3,hard,bad-mailbox,bounced,2026-11-01T00:00:00.000Z,2026-11-02T00:00:00.000Z\r\n' +
        `bank.example,"'=HYPERLINK(""http://evil.example"")",1,soft,other,deferred,2026-11-03T00:00:00.000Z,2026-11-03T00:00:00.000Z\r\n`,
    );
    expect(bouncesCsv([], { ...sampleQuery, groupBy: 'category' })).toBe('category,bounce_text,amount,type,reason,first_at,last_at\r\n');
  });

  it('keeps an XLSX cell readable when a remote server put control characters in its text', async () => {
    const buffer = await bouncesXlsx([{ ...(sample[0] as BouncesReportRow), text: 'bad\u0000\u0007 reply\uffff' }], sampleQuery);
    const workbook = new ExcelJS.Workbook();
    await workbook.xlsx.load(buffer as unknown as ArrayBuffer);
    expect(workbook.getWorksheet('Bounces')?.getRow(2).getCell(2).value).toBe('bad reply');
  });
});

describe('rebound report bounces', () => {
  const period = (): string[] => ['--since', start.toISOString(), '--until', end.toISOString(), '--config', configFile];

  it('prints an aligned table by default', async () => {
    const result = await rebound(['report', 'bounces', ...period(), '--type', 'hard', '--group-by', 'category']);
    expect(result).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        `hard bounces from ${start.toISOString()} to ${end.toISOString()} (excluded), all campaigns, grouped by category`,
        '',
        'category      amount  type  reason   bounce_text',
        'bad-mailbox        2  hard  bounced  550 5.1.1 <{recipient}>: Recipient address rejected: User unknown',
        `bad-mailbox        1  hard  bounced  ${delayedText}`,
        'spam-related       1  hard  blocked  554 5.7.1 Message rejected as spam',
        '',
        '4 bounces in 3 rows',
        '',
      ].join('\n'),
    });
    const empty = await rebound(['report', 'bounces', '--since', '2020-01-01', '--until', '2020-02-01', '--campaign', 'spring', '--config', configFile]);
    expect(empty.stdout).toBe('soft bounces from 2020-01-01T00:00:00.000Z to 2020-02-01T00:00:00.000Z (excluded), campaign spring, grouped by from-domain\n\nno bounces in this period\n');
  });

  it('writes CSV to stdout that parses back to the report rows', async () => {
    for (const groupBy of ['from-domain', 'ip', 'recipient-domain', 'category'] as const) {
      const result = await rebound(['report', 'bounces', ...period(), '--group-by', groupBy, '--type', 'all', '--format', 'csv']);
      expect(result.code).toBe(0);
      expect(result.stdout.split('\r\n')[0]).toBe(`${groupBy},bounce_text,amount,type,${groupBy === 'category' ? '' : 'category,'}reason,first_at,last_at`);
      expect(result.stdout.endsWith('\r\n')).toBe(true);
      expect(result.stdout.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
      const records = parse(result.stdout, { columns: true }) as Array<Record<string, string>>;
      const rows = bouncesReport(relay.db, query({ groupBy, type: 'all' }));
      expect(records).toEqual(
        rows.map((row) => ({
          [groupBy]: row.group,
          bounce_text: row.text,
          amount: String(row.amount),
          type: row.bounceType,
          ...(groupBy === 'category' ? {} : { category: row.category }),
          reason: row.reason,
          first_at: row.firstAt,
          last_at: row.lastAt,
        })),
      );
    }
  });

  it('writes CSV and XLSX files with --out; the workbook reads back to the rows and names the period and filters', async () => {
    const temp = makeTempDir();
    try {
      const csvFile = join(temp.dir, 'bounces.csv');
      const csv = await rebound(['report', 'bounces', ...period(), '--campaign', 'spring', '--format', 'csv', '--out', csvFile]);
      const springRows = bouncesReport(relay.db, query({ campaign: 'spring' }));
      expect(csv).toEqual({ code: 0, stdout: '', stderr: `${springRows.length} rows (4 bounces) written to ${csvFile}\n` });
      expect((parse(readFileSync(csvFile), { columns: true }) as unknown[]).length).toBe(springRows.length);

      const xlsxFile = join(temp.dir, 'bounces.xlsx');
      const xlsx = await rebound(['report', 'bounces', ...period(), '--group-by', 'ip', '--type', 'all', '--format', 'xlsx', '--out', xlsxFile]);
      const rows = bouncesReport(relay.db, query({ groupBy: 'ip', type: 'all' }));
      expect(xlsx).toEqual({ code: 0, stdout: '', stderr: `${rows.length} rows (11 bounces) written to ${xlsxFile}\n` });

      const workbook = new ExcelJS.Workbook();
      await workbook.xlsx.readFile(xlsxFile);
      const sheet = workbook.getWorksheet('Bounces');
      if (!sheet) throw new Error('no Bounces sheet');
      const values = (n: number): unknown[] => (sheet.getRow(n).values as unknown[]).slice(1);
      expect(values(1)).toEqual(['ip', 'bounce_text', 'amount', 'type', 'category', 'reason', 'first_at', 'last_at']);
      expect(sheet.rowCount).toBe(rows.length + 1);
      expect(Array.from({ length: rows.length }, (_, i) => values(i + 2))).toEqual(
        rows.map((row) => [row.group, row.text, row.amount, row.bounceType, row.category, row.reason, row.firstAt, row.lastAt]),
      );
      const about = workbook.getWorksheet('Report');
      if (!about) throw new Error('no Report sheet');
      const meta = Object.fromEntries(Array.from({ length: about.rowCount }, (_, i) => (about.getRow(i + 1).values as unknown[]).slice(1)));
      expect(meta).toMatchObject({
        report: 'bounces',
        since: start.toISOString(),
        'until (excluded)': end.toISOString(),
        campaign: 'all campaigns',
        type: 'all',
        'grouped by': 'ip',
        rows: rows.length,
        bounces: 11,
      });
      expect(meta['generated at']).toMatch(/^\d{4}-\d\d-\d\dT/);
    } finally {
      temp.remove();
    }
  });

  it('describes itself in --help', async () => {
    const help = await rebound(['report', 'bounces', '--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--since <date>', '--until <date>', '--campaign <id>', '--group-by <field>', '--type <type>', '--format <format>', '--out <file>', '--config <file>']) {
      expect(help.stdout).toContain(flag);
    }
    expect((await rebound(['report', '--help'])).stdout).toMatch(/bounces \[options\]/);
  });

  it('refuses bad input with exact messages and exit code 2', async () => {
    const base = ['report', 'bounces', '--config', configFile];
    const cases: Array<[string[], string]> = [
      [[], '--since is required: the start of the period, e.g. --since 2026-11-01 (use ISO 8601 like 2026-11-01 or 2026-11-01T12:00:00Z)'],
      [['--since', 'yesterdayish'], '--since: "yesterdayish" is not a date; use ISO 8601 like 2026-11-01 or 2026-11-01T12:00:00Z'],
      [['--since', '2026-11-01', '--until', '2026-11-31'], '--until: "2026-11-31" is not a date; use ISO 8601 like 2026-11-01 or 2026-11-01T12:00:00Z'],
      [['--since', '2026-12-01', '--until', '2026-11-01'], '--since 2026-12-01T00:00:00.000Z is not before --until 2026-11-01T00:00:00.000Z; the period starts at --since and ends just before --until'],
      [['--since', '2026-11-01', '--group-by', 'planet'], '--group-by: "planet" is not one of from-domain, ip, recipient-domain, category, tag'],
      [['--since', '2026-11-01', '--type', 'medium'], '--type: "medium" is not one of soft, hard, all'],
      [['--since', '2026-11-01', '--campaign', ''], '--campaign: give a campaign id (the value of the campaign header), or leave --campaign out for all campaigns'],
      [['--since', '2026-11-01', '--format', 'pdf'], '--format: "pdf" is not one of table, csv, xlsx'],
      [['--since', '2026-11-01', '--format', 'xlsx'], '--format xlsx writes a workbook: add --out FILE (e.g. --out bounces.xlsx)'],
      [['--since', '2026-11-01', '--format', 'csv', '--out', '/nonexistent-dir/x.csv'], 'cannot write /nonexistent-dir/x.csv (ENOENT); check --out'],
    ];
    for (const [args, message] of cases) {
      expect(await rebound([...base, ...args]), args.join(' ')).toEqual({ code: 2, stdout: '', stderr: `rebound: ${message}\n` });
    }
    expect(await rebound([...base, '--since', '2026-11-01', '--bogus'])).toEqual({ code: 1, stdout: '', stderr: "error: unknown option '--bogus'\n" });
  });

  it('says when there is no store yet', async () => {
    const temp = makeTempDir();
    try {
      const config = writeTestConfig(temp.dir);
      expect(await rebound(['report', 'bounces', '--since', '2026-11-01', '--config', config])).toEqual({
        code: 2,
        stdout: '',
        stderr: `rebound: no store at ${join(temp.dir, 'rebound.sqlite')} yet (store.path); start the relay once to create it\n`,
      });
    } finally {
      temp.remove();
    }
  });
});
