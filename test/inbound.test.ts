import { join } from 'node:path';
import { execFile } from 'node:child_process';
import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { returnPathFor } from '../src/bounces/verp.js';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';
import { startFakeMx, type FakeMx } from './support/fake-mx.js';
import { startTestRelay, type TestRelay } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { waitFor } from './support/wait-for.js';
import { postfixDsn } from './support/postfix-dsn.js';
import { inboundPort, sendReport } from './support/inbound-report.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function relayWithInbound(mx?: FakeMx, inbound: Record<string, unknown> = {}): Promise<TestRelay> {
  const relay = await startTestRelay({
    returnPath: { domain: 'bounces.relay.test' },
    log: { level: process.env.TEST_LOG ?? 'silent' },
    inbound: { enabled: true, ...inbound },
    ...(mx
      ? { delivery: { enabled: true, pollIntervalMs: 50, routes: { 'example.test': `127.0.0.1:${mx.port}` }, retry: { scheduleSeconds: [0.2], jitter: 0, maxAttempts: 3, maxAgeSeconds: 60 } } }
      : {}),
  });
  cleanups.push(() => relay.stop());
  return relay;
}


function eventsFor(relay: TestRelay, address: string): Array<Record<string, unknown>> {
  return relay.db
    .prepare(`SELECT e.event, e.source, e.reason, e.category, e.bounce_type, e.report_id FROM events e JOIN recipients r ON r.id = e.recipient_id WHERE r.address = ? ORDER BY e.id`)
    .all(address) as Array<Record<string, unknown>>;
}

describe('inbound listener: who may send reports', () => {
  it('takes reports only for valid tokens and postmaster@/abuse@, refusing forged, expired and foreign addresses with 550 5.1.1', async () => {
    const relay = await relayWithInbound();
    const { verp } = relay.relay;
    const dialog = await SmtpDialog.start(inboundPort(relay));
    expect((await dialog.command('AUTH PLAIN AGFwcABwYXNz')).code).toBe(500); // no AUTH here
    await dialog.command('MAIL FROM:<>', 250);
    const valid = returnPathFor(verp, 1);
    const forged = valid.replace(/-([a-z2-7]{13})@/, (_m, mac: string) => `-${mac.slice(0, -1)}${mac.endsWith('a') ? 'b' : 'a'}@`);
    const expired = returnPathFor(verp, 1, new Date(Date.now() - 40 * 86_400_000));
    for (const address of [forged, expired, 'someone@bounces.relay.test', 'postmaster@other.example', 'bounces+garbage@bounces.relay.test']) {
      expect((await dialog.command(`RCPT TO:<${address}>`)).text).toMatch(/^550 5\.1\.1 /);
    }
    for (const address of [valid, 'postmaster@bounces.relay.test', 'ABUSE@Bounces.Relay.Test']) {
      expect((await dialog.command(`RCPT TO:<${address}>`)).code).toBe(250);
    }
    await dialog.command('RSET', 250);
    await dialog.command('MAIL FROM:<>', 250);
    await dialog.command(`RCPT TO:<${forged}>`, 550);
    expect((await dialog.command('DATA')).code).toBe(503);
    await dialog.quit();
    expect(relay.db.prepare('SELECT count(*) AS n FROM inbound_reports').get()).toEqual({ n: 0 });
  });

  it('refuses a report over inbound.maxMessageSize with 552 5.3.4 and stores nothing', async () => {
    const relay = await relayWithInbound(undefined, { maxMessageSize: 2000 });
    const sending = sendReport(relay, 'postmaster@bounces.relay.test', `Subject: big\r\n\r\n${'x'.repeat(70)}\r\n`.repeat(60));
    await expect(sending).rejects.toMatchObject({ responseCode: 552, response: expect.stringMatching(/^552 5\.3\.4 /) });
    expect(relay.db.prepare('SELECT count(*) AS n FROM inbound_reports').get()).toEqual({ n: 0 });
  });

  it('commits the report whole before the 250, and keeps one the parser cannot read', async () => {
    const relay = await relayWithInbound();
    const garbage = 'Subject: \u0000\u0001 not a report\r\nContent-Type: multipart/report; boundary=\r\n\r\n--\r\n\u00ff\u00fe garbage\r\n';
    const response = await sendReport(relay, 'postmaster@bounces.relay.test', garbage);
    expect(response).toMatch(/^250 2\.0\.0 Ok: report stored as \d+$/);
    const id = Number(response.split(' ').pop());
    const row = relay.db.prepare('SELECT raw, rcpt_to, mail_from FROM inbound_reports WHERE id = ?').get(id) as { raw: Buffer; rcpt_to: string; mail_from: string };
    expect(row).toMatchObject({ rcpt_to: 'postmaster@bounces.relay.test', mail_from: '' });
    expect(row.raw.toString('latin1')).toContain('garbage');
    const parsed = await waitFor('the report to be processed', () => relay.db.prepare('SELECT parse_status, kind, applied_at, outcome FROM inbound_reports WHERE id = ?').get(id) as Record<string, unknown>, (r) => r.parse_status !== 'pending');
    expect(parsed.kind).toBe('unknown');
  });
});

describe('delayed bounces, end to end', () => {
  async function deliveredMessage(to: string): Promise<{ relay: TestRelay; mx: FakeMx; returnPath: string }> {
    const mx = await startFakeMx();
    cleanups.push(() => mx.close());
    const relay = await relayWithInbound(mx);
    await nodemailer
      .createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true })
      .sendMail({ from: 'app@shop.example', to, subject: 'hello', text: 'hi', messageId: '<orig@shop.example>' });
    await waitFor('delivery', () => mx.received.length, (n) => n === 1);
    await waitFor('delivered status', () => (relay.db.prepare('SELECT status FROM recipients').get() as { status: string }).status, (s) => s === 'delivered');
    return { relay, mx, returnPath: mx.received[0]?.from ?? '' };
  }

  it('suppresses an address that bounces later: delivered, then a DSN to the VERP address says 5.1.1', async () => {
    const { relay, returnPath } = await deliveredMessage('later-gone@example.test');
    expect(returnPath).toMatch(/^bounces\+.+@bounces\.relay\.test$/);
    await sendReport(relay, returnPath, postfixDsn('later-gone@example.test', '5.1.1', '550 5.1.1 <later-gone@example.test>: Recipient address rejected: User unknown in local recipient table'));
    const suppression = await waitFor('the suppression', () => relay.db.prepare('SELECT * FROM suppressions').get() as Record<string, unknown> | undefined, (row) => row !== undefined);
    expect(suppression).toMatchObject({ address: 'later-gone@example.test', type: 'bounces', source: 'delayed', enhanced_code: '5.1.1', category: 'bad-mailbox', code: 550 });
    expect(relay.db.prepare('SELECT status FROM recipients').get()).toEqual({ status: 'bounced' });
    expect(eventsFor(relay, 'later-gone@example.test').map((e) => [e.event, e.source])).toEqual([
      ['accepted', null],
      ['delivered', 'immediate'],
      ['permanent_fail', 'delayed'],
    ]);
    expect(relay.db.prepare('SELECT parse_status, kind, format, outcome FROM inbound_reports').get()).toMatchObject({
      parse_status: 'parsed',
      kind: 'bounce',
      outcome: expect.stringContaining('added to bounces'),
    });
  });

  it('records a soft delayed bounce without suppressing, and a delay notice as a delayed event', async () => {
    const { relay, returnPath } = await deliveredMessage('busy@example.test');
    await sendReport(relay, returnPath, postfixDsn('busy@example.test', '4.4.1', 'connect to store.example.test: Connection timed out', 'delayed'));
    await waitFor('the delayed event', () => eventsFor(relay, 'busy@example.test').map((e) => e.event), (events) => events.includes('delayed'));
    expect(relay.db.prepare('SELECT status FROM recipients').get()).toEqual({ status: 'delivered' });
    await sendReport(relay, returnPath, postfixDsn('busy@example.test', '5.2.2', '552 5.2.2 <busy@example.test>: Mailbox full'));
    await waitFor('the bounce', () => eventsFor(relay, 'busy@example.test').at(-1)?.event, (event) => event === 'permanent_fail');
    expect(eventsFor(relay, 'busy@example.test').at(-1)).toMatchObject({ source: 'delayed', category: 'quota-issues', bounce_type: 'soft' });
    expect(relay.db.prepare('SELECT count(*) AS n FROM suppressions').get()).toEqual({ n: 0 });
  });

  // The quoted original's Return-Path carries our token: that, not its Message-ID (which every
  // recipient sees), ties the complaint to the recipient (test/inbound-apply.test.ts has the rule).
  it('puts a complainer on the complaints list from an ARF report sent to abuse@', async () => {
    const { relay, returnPath } = await deliveredMessage('grumpy@example.test');
    const arf = [
      'From: feedback@isp.example',
      'To: abuse@bounces.relay.test',
      'Subject: complaint about message from 192.0.2.25',
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
      'Original-Mail-From: <app@shop.example>',
      'Original-Rcpt-To: <grumpy@example.test>',
      'Arrival-Date: Sun, 22 Nov 2026 10:00:00 +0000',
      '',
      '--ARF',
      'Content-Type: message/rfc822',
      '',
      `Return-Path: <${returnPath}>`,
      'From: app@shop.example',
      'To: grumpy@example.test',
      'Subject: hello',
      'Message-ID: <orig@shop.example>',
      '',
      'hi',
      '--ARF--',
      '',
    ].join('\r\n');
    await sendReport(relay, 'abuse@bounces.relay.test', arf);
    const entry = await waitFor('the complaint', () => relay.db.prepare("SELECT address, type, source FROM suppressions WHERE type = 'complaints'").get(), (row) => row !== undefined);
    expect(entry).toEqual({ address: 'grumpy@example.test', type: 'complaints', source: 'delayed' });
    expect(eventsFor(relay, 'grumpy@example.test').at(-1)).toMatchObject({ event: 'complained', source: 'delayed' });
  });

  it('`rebound reparse` parses stored reports again without applying one twice', async () => {
    const { relay, returnPath } = await deliveredMessage('twice@example.test');
    await sendReport(relay, returnPath, postfixDsn('twice@example.test', '5.1.1', '550 5.1.1 user unknown'));
    await waitFor('applied', () => relay.db.prepare('SELECT applied_at FROM inbound_reports').get() as { applied_at: string | null }, (r) => r.applied_at !== null);
    const storePath = relay.config.store.path;
    const configFile = join(relay.dir, 'config.json');
    const output = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'reparse', '--all', '--config', configFile], { cwd: PROJECT_ROOT }, (error, stdout, stderr) =>
        resolve({ code: error ? 1 : 0, stdout, stderr }),
      ),
    );
    expect(output.stderr).toBe('');
    expect(output.code).toBe(0);
    expect(output.stdout).toMatch(/report 1: bounce, already applied/);
    const db = new BetterSqlite3(storePath, { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM events WHERE event = 'permanent_fail'").get()).toEqual({ n: 1 });
    db.close();
  });
});
