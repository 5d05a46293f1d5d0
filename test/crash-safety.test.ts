import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { startChildRelay, type ChildRelay } from './support/child-relay.js';
import { writeTestConfig } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { makeTempDir } from './support/temp-dir.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** Delivery on its own thread commits the spool there; nothing listens on 127.0.0.1:9, so mail is deferred. */
const THREADED_SPOOL = { delivery: { enabled: true, stageThread: true, routes: { '*': '127.0.0.1:9' } } };

function setUp(override: Record<string, unknown> = {}): { configFile: string; dbPath: string } {
  const temp = makeTempDir('rebound-crash-');
  cleanups.push(temp.remove);
  const configFile = writeTestConfig(temp.dir, { log: { level: 'info' }, ...override });
  return { configFile, dbPath: `${temp.dir}/rebound.sqlite` };
}

function track(child: ChildRelay): ChildRelay {
  cleanups.push(() => child.process.kill('SIGKILL'));
  return child;
}

function queuedId(response: string): string {
  const match = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]{18})$/.exec(response);
  if (!match) throw new Error(`not a queued reply: ${response}`);
  return match[1] as string;
}

function storedRecipients(dbPath: string, queueId: string): string[] {
  const db = new BetterSqlite3(dbPath, { readonly: true });
  try {
    return (
      db
        .prepare('SELECT r.address FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ? ORDER BY r.id')
        .all(queueId) as Array<{ address: string }>
    ).map((row) => row.address);
  } finally {
    db.close();
  }
}

describe.each([
  ['the spool on the main thread (delivery off)', {}],
  ['the spool on the delivery thread', THREADED_SPOOL],
])('crash safety: a 250 means the message is on disk, with %s', (_where, override) => {
  it('keeps a message whose 250 the client saw when the relay is killed with SIGKILL at once', async () => {
    const { configFile, dbPath } = setUp(override);
    const relay = track(await startChildRelay(configFile));
    const info = await nodemailer
      .createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true })
      .sendMail({ from: 'a@shop.example', to: ['one@example.net', 'two@example.net'], subject: 'durable', text: 'x' });
    relay.process.kill('SIGKILL');
    expect(await relay.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(storedRecipients(dbPath, queuedId(info.response))).toEqual(['one@example.net', 'two@example.net']);
  });

  it('loses none of a few hundred acknowledged messages sent by 20 clients when killed mid-stream', async () => {
    const { configFile, dbPath } = setUp(override);
    const relay = track(await startChildRelay(configFile));
    const acknowledged: Array<{ queueId: string; recipients: string[] }> = [];
    const total = 400;
    const killAfter = 250;
    let next = 0;
    const client = async (): Promise<void> => {
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true, pool: true, maxConnections: 1 });
      try {
        while (next < total) {
          const n = next++;
          const recipients = [`r${n}-a@example.net`, `r${n}-b@example.org`];
          try {
            const info = await transport.sendMail({ from: 'bulk@shop.example', to: recipients, subject: `m${n}`, text: 'x'.repeat(2000) });
            acknowledged.push({ queueId: queuedId(info.response), recipients });
            if (acknowledged.length === killAfter) relay.process.kill('SIGKILL');
          } catch {
            return; // the relay is gone; mail without a 250 may or may not be stored
          }
        }
      } finally {
        transport.close();
      }
    };
    await Promise.all(Array.from({ length: 20 }, client));
    await relay.exited;
    expect(acknowledged.length).toBeGreaterThanOrEqual(killAfter);
    const db = new BetterSqlite3(dbPath, { readonly: true });
    const lookup = db.prepare(
      'SELECT r.address FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ? ORDER BY r.id',
    );
    const missing = acknowledged.filter(
      ({ queueId, recipients }) =>
        JSON.stringify((lookup.all(queueId) as Array<{ address: string }>).map((r) => r.address)) !== JSON.stringify(recipients),
    );
    db.close();
    expect(missing).toEqual([]);
  });
});

describe.each([
  ['the spool on the main thread (delivery off)', {}],
  ['the spool on the delivery thread', THREADED_SPOOL],
])('shutdown on SIGTERM, with %s', (_where, override) => {
  it('stops accepting, finishes the message in DATA, closes the store and exits 0', async () => {
    const { configFile, dbPath } = setUp(override);
    const relay = track(await startChildRelay(configFile));
    const idle = await SmtpDialog.start(relay.port);
    const busy = await SmtpDialog.start(relay.port);
    await busy.command('MAIL FROM:<a@shop.example>', 250);
    await busy.command('RCPT TO:<late@example.net>', 250);
    await busy.command('DATA', 354);
    busy.write('Subject: in flight\r\n\r\nfirst half, ');

    relay.process.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The listener is closed: a new client cannot connect.
    await expect(SmtpDialog.open(relay.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    busy.write('second half\r\n.\r\n');
    const reply = await busy.read();
    expect(reply.text).toMatch(/^250 2\.0\.0 Ok: queued as /);
    expect((await idle.read()).text).toMatch(/^421 /); // idle connections are told, not left hanging
    expect(await relay.exited).toEqual({ code: 0, signal: null });
    expect(relay.logs.some((entry) => entry.msg === 'rebound stopped; store closed')).toBe(true);
    expect(storedRecipients(dbPath, reply.text.split(' ').pop() as string)).toEqual(['late@example.net']);
  });
});
