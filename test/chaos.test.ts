import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { returnPathFor, type VerpSettings } from '../src/bounces/verp.js';
import { openStore } from '../src/store/database.js';
import { Spool } from '../src/store/spool.js';
import { startChildRelay, type ChildRelay } from './support/child-relay.js';
import { postfixDsn } from './support/postfix-dsn.js';
import { writeTestConfig } from './support/relay.js';
import { spoolMessage } from './support/spool-message.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

const VERP: VerpSettings = { domain: 'bounces.relay.test', prefix: 'bounces', secret: 'chaos-test-secret-0123456789', maxAgeDays: 30 };
const RECIPIENTS = 2000;
const KILLS = 10;
const CLIENTS = 4;
const SUBMITTERS = 2;

/**
 * A store with one delivered message to RECIPIENTS addresses, each sent in its own transaction
 * (an attempt whose MAIL FROM carries that recipient's token), as delivery leaves it.
 */
async function seed(path: string): Promise<Array<{ id: number; address: string; returnPath: string }>> {
  const db = openStore(path);
  const spool = new Spool(db);
  const addresses = Array.from({ length: RECIPIENTS }, (_, k) => `r${k}@example.test`);
  await spool.enqueue(spoolMessage(addresses[0] as string, { recipients: addresses.map((address) => ({ address, domain: 'example.test' })) }));
  spool.close();
  const rows = db.prepare('SELECT id, message_id AS messageId, address FROM recipients ORDER BY id').all() as Array<{ id: number; messageId: number; address: string }>;
  const attempt = db.prepare(`INSERT INTO attempts (recipient_id, message_id, started_at, duration_ms, mail_from, outcome) VALUES (?, ?, ?, 5, ?, 'delivered')`);
  const seeded = db.transaction(() =>
    rows.map((row) => {
      const returnPath = returnPathFor(VERP, row.id);
      attempt.run(row.id, row.messageId, new Date().toISOString(), returnPath);
      return { id: row.id, address: row.address, returnPath };
    }),
  )();
  db.exec(`UPDATE recipients SET status = 'delivered', next_attempt_at = NULL`);
  db.close();
  return seeded;
}

function inboundPortOf(relay: ChildRelay): number {
  const entry = relay.logs.find((line) => line.msg === 'inbound listening');
  if (!entry) throw new Error('the relay did not log its inbound port');
  return entry.port as number;
}

describe('chaos: kill -9 while clients submit messages and reports arrive', () => {
  it(`keeps every acknowledged message and applies every acknowledged report exactly once across ${KILLS} kills and a clean start`, async () => {
    const temp = makeTempDir('rebound-chaos-');
    cleanups.push(temp.remove);
    const configFile = writeTestConfig(temp.dir, {
      log: { level: 'info' },
      returnPath: { domain: VERP.domain, prefix: VERP.prefix, secret: VERP.secret },
      inbound: { enabled: true, maxReportsPerClientPerMinute: 0 },
    });
    const dbPath = `${temp.dir}/rebound.sqlite`;
    const recipients = await seed(dbPath);
    const acknowledged = new Map<number, string>(); // report id -> the address it is about
    const queued = new Map<string, string>(); // queue id -> its recipient, for every message with a 250
    let next = 0;
    let submitted = 0;

    for (let run = 0; run < KILLS && next < recipients.length; run++) {
      const relay = await startChildRelay(configFile);
      cleanups.push(() => relay.process.kill('SIGKILL'));
      const port = inboundPortOf(relay);
      let killed = false;
      const client = async (): Promise<void> => {
        const transport = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true, pool: true, maxConnections: 1 });
        try {
          while (!killed && next < recipients.length) {
            const recipient = recipients[next++] as (typeof recipients)[number];
            const info = await transport.sendMail({ envelope: { from: '', to: [recipient.returnPath] }, raw: postfixDsn(recipient.address, '5.1.1', `550 5.1.1 <${recipient.address}>: User unknown`) });
            acknowledged.set(Number(info.response.split(' ').pop()), recipient.address);
          }
        } catch {
          // killed: a report without a 250 may or may not be stored
        } finally {
          transport.close();
        }
      };
      const submitter = async (): Promise<void> => {
        const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true, pool: true, maxConnections: 1 });
        try {
          while (!killed && submitted < 5_000) {
            const to = `sub${submitted++}@example.net`;
            const info = await transport.sendMail({ from: 'app@shop.example', to, subject: 'chaos', text: 'x'.repeat(2000) });
            queued.set(/queued as ([0-9A-Z]{18})$/.exec(info.response)?.[1] as string, to);
          }
        } catch {
          // killed: a message without a 250 may or may not be stored
        } finally {
          transport.close();
        }
      };
      const clients = [...Array.from({ length: CLIENTS }, client), ...Array.from({ length: SUBMITTERS }, submitter)];
      // Kill at a different point of the stream each run: stored, parsing, applying, marking.
      const before = acknowledged.size;
      const queuedBefore = queued.size;
      await waitFor('reports to arrive', () => acknowledged.size - before, (n) => n >= 5, 10_000);
      await waitFor('messages to be queued', () => queued.size - queuedBefore, (n) => n >= 1, 10_000);
      await new Promise((resolve) => setTimeout(resolve, (run * 37) % 300));
      if (process.env.CHAOS_LOG) console.log(`run ${run}: ${acknowledged.size - before} acknowledged before the kill`);
      killed = true;
      relay.process.kill('SIGKILL');
      await relay.exited;
      await Promise.all(clients);
    }
    expect(acknowledged.size).toBeGreaterThanOrEqual(KILLS * 5);
    expect(queued.size).toBeGreaterThanOrEqual(KILLS);

    // A clean start takes up what the kills left, then stops.
    const relay = await startChildRelay(configFile);
    cleanups.push(() => relay.process.kill('SIGKILL'));
    const db = new BetterSqlite3(dbPath, { readonly: true });
    cleanups.push(() => db.close());
    await waitFor('every report processed', () => db.prepare(`SELECT count(*) FROM inbound_reports WHERE applied_at IS NULL`).pluck().get() as number, (n) => n === 0, 20_000);
    relay.process.kill('SIGTERM');
    expect(await relay.exited).toEqual({ code: 0, signal: null });

    const eventsOf = db.prepare(`SELECT count(*) FROM events WHERE report_id = ? AND event = 'permanent_fail'`).pluck();
    const statusOf = db.prepare('SELECT status FROM recipients WHERE address = ?').pluck();
    const suppressionOf = db.prepare(`SELECT count FROM suppressions WHERE address = ? AND type = 'bounces'`).pluck();
    const reportsAbout = db.prepare(`SELECT count(*) FROM inbound_reports r JOIN recipients p ON p.id = r.recipient_id WHERE p.address = ?`).pluck();
    const wrong: string[] = [];
    for (const [reportId, address] of acknowledged) {
      const events = eventsOf.get(reportId) as number;
      const status = statusOf.get(address) as string;
      // Each address was sent one report, but one whose 250 a kill cut off may be stored too.
      const suppressed = suppressionOf.get(address) as number | undefined;
      const stored = reportsAbout.get(address) as number;
      if (events !== 1 || status !== 'bounced' || suppressed !== stored) wrong.push(`report ${reportId} (${address}): ${events} events, ${status}, suppression count ${suppressed} for ${stored} stored`);
    }
    expect(wrong).toEqual([]);
    const recipientOf = db.prepare('SELECT r.address FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ?').pluck();
    const lost = [...queued].filter(([queueId, to]) => recipientOf.get(queueId) !== to);
    expect(lost).toEqual([]);
    // Every stored report, acknowledged or not, was applied exactly once.
    expect(db.prepare(`SELECT count(*) FROM inbound_reports r WHERE (SELECT count(*) FROM events e WHERE e.report_id = r.id) <> 1`).pluck().get()).toBe(0);
  }, 90_000);
});
