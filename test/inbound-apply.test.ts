import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { NO_VALID_TOKEN, ReportApplier } from '../src/inbound/apply-report.js';
import { reportParser } from '../src/inbound/parser.js';
import { ReportProcessor } from '../src/inbound/process-reports.js';
import { ReportStore } from '../src/inbound/report-store.js';
import { createLogger } from '../src/logger.js';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';
import { startFakeMx, type FakeMx } from './support/fake-mx.js';
import { postfixDsn } from './support/postfix-dsn.js';
import { FAST_DELIVERY, startTestRelay, type TestRelay } from './support/relay.js';
import { waitFor } from './support/wait-for.js';

const execFileAsync = promisify(execFile);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const DOMAINS = ['example.test', 'other.test', 'third.test'];

async function fakeMx(): Promise<FakeMx> {
  const mx = await startFakeMx();
  cleanups.push(() => mx.close());
  return mx;
}

/** A relay with the inbound listener on, delivering the test domains to `mx`; `store` reuses a store file. */
async function relayWithInbound(mx: FakeMx, store: { path?: string } = {}): Promise<TestRelay> {
  const routes = Object.fromEntries(DOMAINS.map((domain) => [domain, `127.0.0.1:${mx.port}`]));
  const relay = await startTestRelay({
    returnPath: { domain: 'bounces.relay.test' },
    log: { level: process.env.TEST_LOG ?? 'silent' },
    inbound: { enabled: true },
    delivery: { ...FAST_DELIVERY, routes },
    ...(store.path ? { store } : {}),
  });
  cleanups.push(() => relay.stop());
  return relay;
}

/** Submits one message and waits until every recipient is delivered to the fake MX. */
async function deliver(relay: TestRelay, to: string[]): Promise<void> {
  await nodemailer
    .createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true })
    .sendMail({ from: 'app@shop.example', to, subject: 'hello', text: 'hi', messageId: '<orig@shop.example>' });
  await waitFor('delivery', () => relay.db.prepare(`SELECT count(*) FROM recipients WHERE status = 'delivered'`).pluck().get() as number, (n) => n >= to.length);
}

/** The return path (VERP address) of the transaction that carried `address`. */
function returnPathOf(mx: FakeMx, address: string): string {
  const message = mx.received.find((m) => m.to.includes(address));
  if (!message) throw new Error(`${address} was not delivered`);
  return message.from;
}

async function sendReport(relay: TestRelay, to: string, raw: string): Promise<number> {
  const info = await nodemailer
    .createTransport({ host: '127.0.0.1', port: relay.relay.inbound?.port, ignoreTLS: true })
    .sendMail({ envelope: { from: '', to: [to] }, raw });
  return Number(info.response.split(' ').pop());
}

async function processed(relay: TestRelay, reportId: number): Promise<{ parse_status: string; applied_at: string | null; outcome: string | null }> {
  return waitFor(
    `report ${reportId} to be processed`,
    () => relay.db.prepare('SELECT parse_status, applied_at, outcome FROM inbound_reports WHERE id = ?').get(reportId) as { parse_status: string; applied_at: string | null; outcome: string | null },
    (row) => row !== undefined && row.applied_at !== null,
  );
}

function statusOf(relay: TestRelay, address: string): string {
  return relay.db.prepare('SELECT status FROM recipients WHERE address = ?').pluck().get(address) as string;
}

function suppressionsOf(relay: TestRelay): Array<{ address: string; type: string; count: number }> {
  return relay.db.prepare('SELECT address, type, count FROM suppressions ORDER BY address').all() as Array<{ address: string; type: string; count: number }>;
}

function eventsOfReport(relay: TestRelay, reportId: number): number {
  return relay.db.prepare('SELECT count(*) FROM events WHERE report_id = ?').pluck().get(reportId) as number;
}

/** A writable connection to the relay's store, as a crash or an older Rebound would leave it. */
function writable(relay: TestRelay): BetterSqlite3.Database {
  const db = new BetterSqlite3(relay.config.store.path);
  cleanups.push(() => {
    db.close();
  });
  return db;
}

function arf(recipient: string | null, originalHeaders: string[]): string {
  return [
    'From: feedback@isp.example',
    'To: abuse@bounces.relay.test',
    'Subject: complaint',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"',
    '',
    '--ARF',
    'Content-Type: text/plain',
    '',
    'This is an email abuse report.',
    '',
    '--ARF',
    'Content-Type: message/feedback-report',
    '',
    'Feedback-Type: abuse',
    'User-Agent: ISP-FBL/1.0',
    'Version: 1',
    ...(recipient ? [`Original-Rcpt-To: <${recipient}>`] : []),
    '',
    '--ARF',
    'Content-Type: message/rfc822',
    '',
    ...originalHeaders,
    'From: app@shop.example',
    'Subject: hello',
    'Message-ID: <orig@shop.example>',
    '',
    'hi',
    '--ARF--',
    '',
  ].join('\r\n');
}

describe('inbound reports: applied exactly once, whatever a crash interrupts', () => {
  it('applies at start a report a crash left parsed but not applied', async () => {
    const mx = await fakeMx();
    const first = await relayWithInbound(mx);
    await deliver(first, ['gone@example.test']);
    const returnPath = returnPathOf(mx, 'gone@example.test');
    await first.stopRelay();
    // What the old three-commit processing left after a kill between "parsed" and "applied".
    const db = writable(first);
    const recipientId = db.prepare('SELECT id FROM recipients').pluck().get() as number;
    const reportId = Number(
      db
        .prepare(`INSERT INTO inbound_reports (received_at, client_ip, mail_from, rcpt_to, recipient_id, size, raw, parse_status, kind, format, parsed_at)
                  VALUES (?, '127.0.0.1', '', ?, ?, 1, ?, 'parsed', 'bounce', 'rfc3464', ?)`)
        .run(new Date().toISOString(), returnPath, recipientId, Buffer.from(postfixDsn('gone@example.test', '5.1.1', '550 5.1.1 user unknown')), new Date().toISOString()).lastInsertRowid,
    );
    db.close();

    const second = await relayWithInbound(mx, { path: first.config.store.path });
    expect((await processed(second, reportId)).outcome).toContain('added to bounces');
    expect(statusOf(second, 'gone@example.test')).toBe('bounced');
    expect(eventsOfReport(second, reportId)).toBe(1);
    expect(suppressionsOf(second)).toEqual([{ address: 'gone@example.test', type: 'bounces', count: 1 }]);
  });

  it('rolls the apply back when marking it fails, and applies it once at the next start', async () => {
    const mx = await fakeMx();
    const first = await relayWithInbound(mx);
    await deliver(first, ['cut@example.test']);
    const returnPath = returnPathOf(mx, 'cut@example.test');
    const { config } = first;
    const { verp } = first.relay;
    await first.stopRelay();
    // The commit that marks the report applied fails, as a kill between the two would lose it.
    const db = writable(first);
    db.exec(`CREATE TRIGGER cut_before_mark BEFORE UPDATE OF applied_at ON inbound_reports WHEN NEW.applied_at IS NOT NULL
             BEGIN SELECT RAISE(ABORT, 'injected: the process died before marking'); END`);
    const reports = new ReportStore(db);
    const processor = new ReportProcessor(db, reports, new ReportApplier(db, config, verp), reportParser('X-Campaign-ID'), createLogger('silent'));
    const reportId = await reports.store({
      receivedAt: new Date(),
      clientIp: '127.0.0.1',
      clientHelo: 'mx.example.test',
      mailFrom: '',
      rcptTo: [returnPath],
      recipientId: db.prepare('SELECT id FROM recipients').pluck().get() as number,
      raw: Buffer.from(postfixDsn('cut@example.test', '5.1.1', '550 5.1.1 user unknown')),
    });
    await expect(processor.process(reportId)).rejects.toThrow(/injected/);
    reports.close();
    // Nothing of it stands: no event, no suppression, still to do.
    expect(eventsOfReport(first, reportId)).toBe(0);
    expect(suppressionsOf(first)).toEqual([]);
    expect(first.db.prepare('SELECT parse_status, applied_at FROM inbound_reports WHERE id = ?').get(reportId)).toEqual({ parse_status: 'pending', applied_at: null });
    db.exec('DROP TRIGGER cut_before_mark');
    db.close();

    const second = await relayWithInbound(mx, { path: first.config.store.path });
    await processed(second, reportId);
    expect(eventsOfReport(second, reportId)).toBe(1);
    expect(suppressionsOf(second)).toEqual([{ address: 'cut@example.test', type: 'bounces', count: 1 }]);
  });

  it('`rebound reparse` does not apply again a report that was applied but not marked', async () => {
    const mx = await fakeMx();
    const relay = await relayWithInbound(mx);
    await deliver(relay, ['twice@example.test']);
    const reportId = await sendReport(relay, returnPathOf(mx, 'twice@example.test'), postfixDsn('twice@example.test', '5.1.1', '550 5.1.1 user unknown'));
    await processed(relay, reportId);
    await relay.stopRelay();
    // An older Rebound applied it and was killed before marking it.
    const db = writable(relay);
    db.prepare('UPDATE inbound_reports SET applied_at = NULL, outcome = NULL WHERE id = ?').run(reportId);
    db.close();

    const { stdout } = await execFileAsync(process.execPath, [CLI, 'reparse', '--all', '--config', `${relay.dir}/config.json`], { cwd: PROJECT_ROOT });
    expect(stdout).toContain(`report ${reportId}: bounce, already applied (events found)`);
    expect(relay.db.prepare(`SELECT count(*) FROM events WHERE event = 'permanent_fail'`).pluck().get()).toBe(1);
    expect(suppressionsOf(relay)).toEqual([{ address: 'twice@example.test', type: 'bounces', count: 1 }]);
    expect(relay.db.prepare('SELECT applied_at IS NOT NULL FROM inbound_reports WHERE id = ?').pluck().get(reportId)).toBe(1);
  });
});

describe('inbound reports: only a valid token changes a recipient, and only of its own transaction', () => {
  it('a DSN to postmaster@ that quotes a known Message-ID is stored but suppresses nobody', async () => {
    const mx = await fakeMx();
    const relay = await relayWithInbound(mx);
    await deliver(relay, ['victim@example.test']);
    const reportId = await sendReport(relay, 'postmaster@bounces.relay.test', postfixDsn('victim@example.test', '5.1.1', '550 5.1.1 user unknown', 'failed', '<orig@shop.example>'));
    expect(await processed(relay, reportId)).toMatchObject({ parse_status: 'parsed', outcome: NO_VALID_TOKEN });
    expect(statusOf(relay, 'victim@example.test')).toBe('delivered');
    expect(suppressionsOf(relay)).toEqual([]);
    expect(eventsOfReport(relay, reportId)).toBe(0);
  });

  it('a forged ARF complaint with a known Message-ID puts nobody on the complaints list', async () => {
    const mx = await fakeMx();
    const relay = await relayWithInbound(mx);
    await deliver(relay, ['victim@example.test']);
    const reportId = await sendReport(relay, 'abuse@bounces.relay.test', arf('victim@example.test', []));
    expect((await processed(relay, reportId)).outcome).toBe(NO_VALID_TOKEN);
    expect(suppressionsOf(relay)).toEqual([]);
  });

  it('a recipient holding its own token cannot bounce recipients of the same message sent in other transactions', async () => {
    const mx = await fakeMx();
    const relay = await relayWithInbound(mx);
    await deliver(relay, ['holder@example.test', 'victim1@other.test', 'victim2@third.test']);
    const own = returnPathOf(mx, 'holder@example.test');
    expect(new Set(mx.received.map((m) => m.from)).size).toBe(3); // one transaction per domain
    const twoVictims = postfixDsn('victim1@other.test', '5.1.1', '550 5.1.1 user unknown').replace(
      'Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n',
      'Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\nFinal-Recipient: rfc822; victim2@third.test\r\nAction: failed\r\nStatus: 5.1.1\r\n',
    );
    const byEnvelope = await sendReport(relay, own, twoVictims);
    expect((await processed(relay, byEnvelope)).outcome).toBe(
      'victim1@other.test: not a recipient of the transaction its token names; victim2@third.test: not a recipient of the transaction its token names',
    );
    // The same with the token quoted in the original's Return-Path, sent to postmaster@.
    const quoted = twoVictims.replace('From: app@shop.example\r\n', `Return-Path: <${own}>\r\nFrom: app@shop.example\r\n`);
    const byQuote = await sendReport(relay, 'postmaster@bounces.relay.test', quoted);
    expect((await processed(relay, byQuote)).outcome).toContain('not a recipient of the transaction its token names');
    for (const victim of ['victim1@other.test', 'victim2@third.test']) expect(statusOf(relay, victim)).toBe('delivered');
    expect(suppressionsOf(relay)).toEqual([]);
  });

  it('a token changes the recipients of its own transaction that the report names', async () => {
    const mx = await fakeMx();
    const relay = await relayWithInbound(mx);
    await deliver(relay, ['first@example.test', 'second@example.test', 'elsewhere@other.test']);
    const shared = returnPathOf(mx, 'second@example.test');
    expect(returnPathOf(mx, 'first@example.test')).toBe(shared); // one transaction for example.test
    const reportId = await sendReport(relay, shared, postfixDsn('second@example.test', '5.1.1', '550 5.1.1 user unknown'));
    expect((await processed(relay, reportId)).outcome).toBe('second@example.test: bounced (bad-mailbox); added to bounces');
    expect(statusOf(relay, 'second@example.test')).toBe('bounced');
    expect(statusOf(relay, 'first@example.test')).toBe('delivered');
    // A report to postmaster@ quoting the other transaction's token counts for that transaction.
    const quoted = postfixDsn('elsewhere@other.test', '5.1.1', '550 5.1.1 user unknown').replace(
      'From: app@shop.example\r\n',
      `Return-Path: <${returnPathOf(mx, 'elsewhere@other.test')}>\r\nFrom: app@shop.example\r\n`,
    );
    expect((await processed(relay, await sendReport(relay, 'postmaster@bounces.relay.test', quoted))).outcome).toContain('elsewhere@other.test: bounced');
    expect(suppressionsOf(relay).map((s) => s.address)).toEqual(['elsewhere@other.test', 'second@example.test']);
  });

  it('a forwarded address is the token recipient only when its transaction had no one else', async () => {
    const mx = await fakeMx();
    const relay = await relayWithInbound(mx);
    await deliver(relay, ['alone@other.test', 'one@example.test', 'two@example.test']);
    const alone = await sendReport(relay, returnPathOf(mx, 'alone@other.test'), postfixDsn('forwarded-to@elsewhere.example', '5.1.1', '550 5.1.1 user unknown'));
    expect((await processed(relay, alone)).outcome).toBe('alone@other.test: bounced (bad-mailbox); added to bounces');
    // In a shared transaction, an unnamed address could have been written by any recipient.
    const shared = await sendReport(relay, returnPathOf(mx, 'one@example.test'), postfixDsn('forwarded-to@elsewhere.example', '5.1.1', '550 5.1.1 user unknown'));
    expect((await processed(relay, shared)).outcome).toBe('forwarded-to@elsewhere.example: not a recipient of the transaction its token names');
    expect(statusOf(relay, 'one@example.test')).toBe('delivered');
  });
});
