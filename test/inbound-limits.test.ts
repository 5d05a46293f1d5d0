import BetterSqlite3, { type Database } from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { returnPathFor } from '../src/bounces/verp.js';
import { loadConfig } from '../src/config/load.js';
import { clientKey } from '../src/inbound/client-budget.js';
import { ReportStore } from '../src/inbound/report-store.js';
import { createInboundServer, type InboundServer } from '../src/inbound/server.js';
import { createLogger } from '../src/logger.js';
import { verpSettings } from '../src/relay.js';
import { openStore } from '../src/store/database.js';
import { Unsubscriber, unsubscribeSettings } from '../src/unsubscribe/index.js';
import { relaysStoppedAfterEachTest, writeTestConfig, type TestRelay } from './support/relay.js';
import { SmtpDialog, type Reply } from './support/smtp-dialog.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const startRelay = relaysStoppedAfterEachTest();

async function relayWithInbound(inbound: Record<string, unknown> = {}): Promise<TestRelay> {
  return startRelay({ returnPath: { domain: 'bounces.relay.test' }, log: { level: process.env.TEST_LOG ?? 'silent' }, inbound: { enabled: true, ...inbound } });
}

/** The return path of a recipient that exists (reports name their recipient row). */
async function tokenAddress(relay: TestRelay): Promise<string> {
  await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from: 'app@shop.example', to: 'someone@example.test', text: 'hi' });
  return returnPathFor(relay.relay.verp, relay.db.prepare('SELECT max(id) FROM recipients').pluck().get() as number);
}

function inboundPort(relay: TestRelay): number {
  const port = relay.relay.inbound?.port;
  if (port === undefined) throw new Error('inbound is not running');
  return port;
}

/** A report body of about `bytes` bytes, in 76-character lines. */
function reportOf(bytes: number): string {
  const line = `${'x'.repeat(76)}\r\n`;
  return `Subject: report\r\n\r\n${line.repeat(Math.max(1, Math.floor(bytes / line.length)))}`;
}

/** One transaction on an open dialog: the reply to MAIL FROM if it refused, else the reply to the end of DATA. */
async function sendOn(dialog: SmtpDialog, to: string, body: string): Promise<Reply> {
  const mail = await dialog.command('MAIL FROM:<>');
  if (mail.code !== 250) return mail;
  await dialog.command(`RCPT TO:<${to}>`, 250);
  await dialog.command('DATA', 354);
  dialog.write(`${body}\r\n.\r\n`);
  return dialog.read();
}

function storedReports(relay: TestRelay): number {
  return relay.db.prepare('SELECT count(*) FROM inbound_reports').pluck().get() as number;
}

describe('inbound listener: limits per client', () => {
  it('refuses a report without a token over inbound.maxReportSizeWithoutToken with 552 5.3.4, and takes the same size with a token', async () => {
    const relay = await relayWithInbound();
    const dialog = await SmtpDialog.start(inboundPort(relay));
    // The attack: megabytes to postmaster@, each of which used to be stored for 90 days.
    for (let k = 0; k < 3; k++) {
      expect((await sendOn(dialog, 'postmaster@bounces.relay.test', reportOf(1_000_000))).text).toMatch(/^552 5\.3\.4 A report without a valid return-path token may be at most 262144 bytes/);
    }
    expect(storedReports(relay)).toBe(0);
    // A real DSN (the largest in our corpus is 66 KB) still gets in; with a token, the full size does.
    expect((await sendOn(dialog, 'postmaster@bounces.relay.test', reportOf(200_000))).code).toBe(250);
    expect((await sendOn(dialog, await tokenAddress(relay), reportOf(1_000_000))).code).toBe(250);
    await dialog.quit();
    expect(storedReports(relay)).toBe(2);
  });

  it('answers a client over inbound.maxReportsPerClientPerMinute with 451 4.7.1 and stores no more', async () => {
    const relay = await relayWithInbound({ maxReportsPerClientPerMinute: 3 });
    const dialog = await SmtpDialog.start(inboundPort(relay));
    for (let k = 0; k < 3; k++) expect((await sendOn(dialog, 'postmaster@bounces.relay.test', reportOf(1000))).code).toBe(250);
    for (let k = 0; k < 5; k++) {
      expect((await sendOn(dialog, 'postmaster@bounces.relay.test', reportOf(1000))).text).toMatch(/^451 4\.7\.1 too many reports from your address \(inbound\.maxReportsPerClientPerMinute is 3\)/);
    }
    // A new connection from the same address is the same client.
    const again = await SmtpDialog.start(inboundPort(relay));
    expect((await sendOn(again, returnPathFor(relay.relay.verp, 1), reportOf(1000))).code).toBe(451);
    await Promise.all([dialog.quit(), again.quit()]);
    expect(storedReports(relay)).toBe(3);
  });

  it('answers a client over inbound.maxBytesPerClientPerHour with 451 4.7.1 at the end of DATA, and at MAIL FROM once it is used up', async () => {
    const relay = await relayWithInbound({ maxMessageSize: 100_000, maxBytesPerClientPerHour: 200_000 });
    const dialog = await SmtpDialog.start(inboundPort(relay));
    const token = await tokenAddress(relay);
    expect((await sendOn(dialog, token, reportOf(90_000))).code).toBe(250);
    expect((await sendOn(dialog, token, reportOf(90_000))).code).toBe(250);
    expect((await sendOn(dialog, token, reportOf(90_000))).text).toMatch(/^451 4\.7\.1 too many bytes of reports from your address this hour/);
    expect((await sendOn(dialog, token, reportOf(19_000))).code).toBe(250); // what is left of the hour's budget
    expect((await sendOn(dialog, token, reportOf(3_000))).text).toMatch(/^451 4\.7\.1 /);
    await dialog.quit();
    expect(storedReports(relay)).toBe(3);
    expect(relay.db.prepare('SELECT sum(size) FROM inbound_reports').pluck().get()).toBeLessThanOrEqual(200_000);
  });

  it('counts an IPv6 client by its /64', () => {
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe(clientKey('2001:db8:1:2:bbbb::7'));
    expect(clientKey('2001:db8:1:2::1')).not.toBe(clientKey('2001:db8:1:3::1'));
    expect(clientKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
  });
});

describe('inbound listener: RFC 5321 4.5.1 postmaster', () => {
  it('takes RCPT TO:<postmaster> without a domain, in any case, as the postmaster role mailbox', async () => {
    const relay = await relayWithInbound();
    const dialog = await SmtpDialog.start(inboundPort(relay));
    await dialog.command('MAIL FROM:<>', 250);
    expect((await dialog.command('RCPT TO:<postmaster>')).code).toBe(250);
    expect((await dialog.command('RCPT TO:<PostMaster>')).code).toBe(250);
    expect((await dialog.command('RCPT TO:<abuse>')).code).toBeGreaterThanOrEqual(500); // only postmaster is special
    await dialog.command('DATA', 354);
    dialog.write(`${reportOf(500)}\r\n.\r\n`);
    expect((await dialog.read()).text).toMatch(/^250 2\.0\.0 Ok: report stored as \d+$/);
    await dialog.quit();
    expect(relay.db.prepare('SELECT rcpt_to FROM inbound_reports').pluck().get()).toMatch(/^postmaster$/i);
  });
});

describe('inbound listener: report content held in memory', () => {
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  /** The listener alone on a real store, so the test can read what it holds in memory. */
  async function inboundAlone(inbound: Record<string, unknown>): Promise<{ server: InboundServer; port: number; db: Database }> {
    const temp = makeTempDir();
    const config = loadConfig({ file: writeTestConfig(temp.dir, { returnPath: { domain: 'bounces.relay.test' }, inbound: { enabled: true, ...inbound } }), env: {} });
    const store = openStore(config.store.path, { synchronous: 'NORMAL' });
    const reports = new ReportStore(store);
    const verp = verpSettings(config, store);
    const unsubscribe = unsubscribeSettings(config, verp.domain, verp.secret);
    const server = createInboundServer(config, verp, reports, () => undefined, { settings: unsubscribe, unsubscriber: new Unsubscriber(store, unsubscribe), forwarded: null }, createLogger('silent'));
    const { port } = await server.listen();
    const db = new BetterSqlite3(config.store.path, { readonly: true });
    stops.push(async () => {
      await server.close();
      reports.close();
      db.close();
      store.close();
      temp.remove();
    });
    return { server, port, db };
  }

  it('refuses a report that would go over inbound.maxBytesInFlight with 451 4.3.1, takes the others, and gives every byte back', async () => {
    // Room for four reports of about 60 kB in transfer, not five.
    const { server, port, db } = await inboundAlone({ maxMessageSize: 100_000, maxBytesInFlight: 250_000 });
    const body = reportOf(60_000);
    const senders: SmtpDialog[] = [];
    for (let i = 1; i <= 4; i++) {
      const dialog = await SmtpDialog.start(port, { localAddress: `127.0.0.${i}` });
      await dialog.command('MAIL FROM:<>', 250);
      await dialog.command('RCPT TO:<postmaster@bounces.relay.test>', 250);
      await dialog.command('DATA', 354);
      dialog.write(`${body}\r\n`);
      // The parser holds back the last bytes until it knows they do not end the report.
      await waitFor(`report ${i} to be in memory`, () => server.bytesInFlight(), (bytes) => bytes >= i * (body.length - 4));
      senders.push(dialog);
    }
    const excess = await SmtpDialog.start(port, { localAddress: '127.0.0.5' });
    expect((await sendOn(excess, 'postmaster@bounces.relay.test', body)).text).toMatch(/^451 4\.3\.1 Insufficient system storage/);

    for (const dialog of senders) dialog.write('.\r\n');
    expect((await Promise.all(senders.map((dialog) => dialog.read()))).map((reply) => reply.code)).toEqual([250, 250, 250, 250]);
    expect(db.prepare('SELECT count(*) FROM inbound_reports').pluck().get()).toBe(4);
    expect(server.bytesInFlight()).toBe(0);
    // The refused sender's retry gets in once there is room.
    expect((await sendOn(excess, 'postmaster@bounces.relay.test', body)).code).toBe(250);
    expect(server.bytesInFlight()).toBe(0);
    await Promise.all([excess, ...senders].map((dialog) => dialog.quit()));
  });
});
