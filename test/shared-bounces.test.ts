import nodemailer from 'nodemailer';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nodeTagOf, returnPathFor } from '../src/bounces/verp.js';
import { ForwardedReports } from '../src/shared/forwarded-reports.js';
import { claimNodeName, migrateShared } from '../src/shared/postgres-schema.js';
import { writeTransaction } from '../src/store/write-lock.js';
import { startFakeMx, type FakeMx } from './support/fake-mx.js';
import { postfixDsn } from './support/postfix-dsn.js';
import { freshDatabase, startPostgres, type TestPostgres } from './support/postgres.js';
import { FAST_DELIVERY, startTestRelay, type TestRelay } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { waitFor } from './support/wait-for.js';
import { inboundPort, sendReport } from './support/inbound-report.js';
import { tempStore } from './support/temp-store.js';

/**
 * One return-path domain, its MX on every node (issue 14): a report that reaches node B for
 * node A's mail is passed on to A through the shared store and applied there.
 */
let postgres: TestPostgres;
let mx: FakeMx;

beforeAll(async () => {
  postgres = await startPostgres();
  mx = await startFakeMx();
}, 60_000);
afterAll(async () => {
  await mx?.close();
  await postgres?.stop();
});

const cleanups: Array<() => Promise<void> | void> = [];
/** Temp stores' closers (tempStore pushes plain functions). */
const storeCleanups: Array<() => void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const cleanup of storeCleanups.splice(0).reverse()) cleanup();
});

const TOKEN = 'shared-bounces-test-token-0123456789';

async function node(url: string, name: string, { inbound = true, historyDays = 90, admin = false, unsubscribe = false, reportsPerMinute = 0 } = {}): Promise<TestRelay> {
  const relay = await startTestRelay({
    // One one-click URL for every node, as behind a load balancer.
    ...(unsubscribe ? { unsubscribe: { enabled: true, url: 'https://mail.shop.example/unsubscribe' } } : {}),
    store: { shared: { url, nodeName: name, catchUpSeconds: 0.5 }, retention: { historyDays } },
    ...(admin ? { admin: { enabled: true, port: 0, tokens: [{ name: 'ops', token: TOKEN }] } } : {}),
    returnPath: { domain: 'bounces.relay.test' },
    inbound: { enabled: inbound, maxReportsPerClientPerMinute: reportsPerMinute },
    delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
  });
  cleanups.push(() => relay.stop());
  return relay;
}

/** Sends one message through `relay`, waits for its delivery, returns the return path it used (attempts.mail_from). */
async function delivered(relay: TestRelay, to: string): Promise<{ returnPath: string; recipientId: number }> {
  await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from: 'app@shop.example', to, subject: 'hello', text: 'hi' });
  const row = await waitFor(
    `delivery to ${to}`,
    () => relay.db.prepare(`SELECT a.mail_from AS returnPath, r.id AS recipientId FROM attempts a JOIN recipients r ON r.id = a.recipient_id WHERE r.address = ? AND a.outcome = 'delivered'`).get(to) as { returnPath: string; recipientId: number } | undefined,
    (found) => found !== undefined,
  );
  return row as { returnPath: string; recipientId: number };
}

function statusOf(relay: TestRelay, address: string): string | undefined {
  return relay.db.prepare('SELECT status FROM recipients WHERE address = ? ORDER BY id DESC LIMIT 1').pluck().get(address) as string | undefined;
}

function suppressed(relay: TestRelay, address: string): boolean {
  return relay.db.prepare(`SELECT 1 FROM suppressions WHERE address = ? AND type = 'bounces'`).get(address) !== undefined;
}

/** Waits until `relay` has read `other`'s tag from the shared store. */
async function knows(relay: TestRelay, other: string): Promise<void> {
  await waitFor(`${other}'s tag`, () => relay.db.prepare(`SELECT value FROM settings WHERE key = 'shared.nodeTags'`).pluck().get() as string | undefined, (tags) => tags !== undefined && tags.includes(nodeTagOf(other)));
}

/** rebound_shared_forward_outbox_reports in the node's /metrics. */
async function forwardOutboxGauge(relay: TestRelay): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${relay.relay.admin?.port}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  return Number(/^rebound_shared_forward_outbox_reports (\d+)$/m.exec(text)?.[1] ?? NaN);
}

const dsn = (address: string): string => postfixDsn(address, '5.1.1', `550 5.1.1 <${address}>: Recipient address rejected: User unknown`);

describe('reports on any node (one return-path domain, store.shared.url)', () => {
  it("passes a report B's MX took for A's mail on to A, which applies it; the suppression reaches B through the shared lists", async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const a = await node(url, 'node-a');
    const b = await node(url, 'node-b');
    const { returnPath } = await delivered(a, 'gone@example.test');
    expect(returnPath).toContain(`-${nodeTagOf('node-a')}-`);
    await knows(b, 'node-a');
    expect(await sendReport(b, returnPath, dsn('gone@example.test'))).toMatch(/^250/);
    await waitFor("A's recipient bounced", () => statusOf(a, 'gone@example.test'), (status) => status === 'bounced', 5000);
    expect(suppressed(a, 'gone@example.test')).toBe(true);
    await waitFor('the suppression on B', () => suppressed(b, 'gone@example.test'), (yes) => yes, 5000);
    // B kept the report, applied nothing of its own, and says where it went; A stored it as received.
    expect(b.db.prepare('SELECT outcome, recipient_id AS recipientId FROM inbound_reports').all()).toEqual([{ outcome: 'forwarded to node node-a', recipientId: null }]);
    expect(b.db.prepare('SELECT count(*) FROM events WHERE report_id IS NOT NULL').pluck().get()).toBe(0);
    expect(a.db.prepare('SELECT client_ip AS clientIp, rcpt_to AS rcptTo, mail_from AS mailFrom FROM inbound_reports').all()).toEqual([{ clientIp: 'node node-b', rcptTo: returnPath, mailFrom: '' }]);
    expect(b.db.prepare('SELECT count(*) FROM forward_outbox').pluck().get()).toBe(0);
  }, 30_000);

  it('applies a report forwarded to a node whose own MX is off (inbound.enabled false)', async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const a = await node(url, 'node-a', { inbound: false });
    const b = await node(url, 'node-b');
    expect(a.relay.inbound).toBeNull();
    const { returnPath, recipientId } = await delivered(a, 'gone@example.test');
    await knows(b, 'node-a');
    expect(await sendReport(b, returnPath, dsn('gone@example.test'))).toMatch(/^250/);
    await waitFor("A's recipient bounced", () => statusOf(a, 'gone@example.test'), (status) => status === 'bounced', 5000);
    expect(a.db.prepare('SELECT client_ip AS clientIp, recipient_id AS recipientId FROM inbound_reports').all()).toEqual([{ clientIp: 'node node-b', recipientId }]);
    expect(suppressed(a, 'gone@example.test')).toBe(true);
  }, 30_000);

  it('keeps a report for another node in forward_outbox while PostgreSQL is down, counts it in /metrics (rebound_shared_forward_outbox_reports), and forwards it when PostgreSQL is back', async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const a = await node(url, 'node-a');
    const b = await node(url, 'node-b', { admin: true });
    const { returnPath } = await delivered(a, 'later@example.test');
    await knows(b, 'node-a');
    expect(await forwardOutboxGauge(b)).toBe(0);
    await postgres.stopServer();
    try {
      expect(await sendReport(b, returnPath, dsn('later@example.test'))).toMatch(/^250/);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(b.db.prepare('SELECT count(*) FROM forward_outbox').pluck().get()).toBe(1);
      expect(await forwardOutboxGauge(b)).toBe(1);
      expect(statusOf(a, 'later@example.test')).toBe('delivered');
    } finally {
      await postgres.startServer();
    }
    await waitFor("A's recipient bounced", () => statusOf(a, 'later@example.test'), (status) => status === 'bounced', 10_000);
    expect(await forwardOutboxGauge(b)).toBe(0);
  }, 40_000);

  it('defers an unknown tag and refuses a forged token for its own tag at RCPT; a forged token for a known node reaches that node and is stored there, not applied', async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const a = await node(url, 'node-a');
    const b = await node(url, 'node-b');
    const { returnPath, recipientId } = await delivered(a, 'kept@example.test');
    await knows(b, 'node-a');
    const dialog = await SmtpDialog.start(inboundPort(b));
    await dialog.command('MAIL FROM:<>', 250);
    const unknown = returnPathFor({ ...b.relay.verp, secret: 'whatever', nodeTag: nodeTagOf('node-x') }, recipientId);
    expect((await dialog.command(`RCPT TO:<${unknown}>`)).code).toBe(451);
    const forgedOwn = returnPathFor({ ...b.relay.verp, secret: 'not-b-secret' }, 1);
    expect((await dialog.command(`RCPT TO:<${forgedOwn}>`)).code).toBe(550);
    await dialog.quit();
    // B cannot check A's MAC: it takes the report, A checks it with its own secret and refuses to apply it.
    const forgedForA = returnPath.replace(/[a-z2-7]{13}@/, 'aaaaaaaaaaaaa@');
    expect(await sendReport(b, forgedForA, dsn('kept@example.test'))).toMatch(/^250/);
    const outcome = await waitFor('the report on A', () => a.db.prepare('SELECT outcome, recipient_id AS recipientId FROM inbound_reports').get() as { outcome: string | null; recipientId: number | null } | undefined, (row) => row?.outcome != null, 5000);
    expect(outcome).toMatchObject({ recipientId: null });
    expect(outcome?.outcome).toMatch(/not applied|no valid/i);
    expect(statusOf(a, 'kept@example.test')).toBe('delivered');
  }, 30_000);

  it('defers a report for a node tag it does not know yet (451 4.7.1, naming why) and takes it once that node has joined; a tag of the wrong shape or an expired token stays refused', async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const b = await node(url, 'node-b');
    await knows(b, 'node-b');
    const tagC = nodeTagOf('node-c');
    const forC = returnPathFor({ ...b.relay.verp, secret: 'node-c-secret', nodeTag: tagC }, 7);
    const dialog = await SmtpDialog.start(inboundPort(b));
    await dialog.command('MAIL FROM:<>', 250);
    const deferred = await dialog.command(`RCPT TO:<${forC}>`);
    expect(deferred.code).toBe(451);
    expect(deferred.text).toBe(`451 4.7.1 <${forC}>: unknown node tag ${tagC}, try again later`);
    // Not the shape of a tag (a 1 is not base32, five characters are too few): refused for good.
    for (const badTag of ['abc1ef', 'abcde']) {
      expect((await dialog.command(`RCPT TO:<${forC.replace(`-${tagC}-`, `-${badTag}-`)}>`)).code).toBe(550);
    }
    // Past returnPath.maxAgeDays by its day: no node would take it.
    const expired = returnPathFor({ ...b.relay.verp, secret: 'node-c-secret', nodeTag: tagC }, 7, new Date(Date.now() - (b.config.returnPath.maxAgeDays + 2) * 86_400_000));
    expect((await dialog.command(`RCPT TO:<${expired}>`)).code).toBe(550);
    await dialog.quit();
    // Node C joins; at B's next round its tag is known and the retried report is taken for C.
    await node(url, 'node-c');
    await knows(b, 'node-c');
    const retried = await SmtpDialog.start(inboundPort(b));
    await retried.command('MAIL FROM:<>', 250);
    await retried.command(`RCPT TO:<${forC}>`, 250);
    await retried.quit();
  }, 30_000);

  it('refuses a tagged token at RCPT on a node without a shared store (no round will ever teach it the tag)', async () => {
    const alone = await startTestRelay({ returnPath: { domain: 'bounces.relay.test' }, inbound: { enabled: true } });
    cleanups.push(() => alone.stop());
    const tagged = returnPathFor({ ...alone.relay.verp, secret: 'some-node-secret', nodeTag: nodeTagOf('node-c') }, 7);
    const dialog = await SmtpDialog.start(inboundPort(alone));
    await dialog.command('MAIL FROM:<>', 250);
    expect((await dialog.command(`RCPT TO:<${tagged}>`)).code).toBe(550);
    await dialog.quit();
  });

  it('applies on its own node an untagged (v1) token from before the shared store, and its own tagged token', async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const a = await node(url, 'node-a');
    const first = await delivered(a, 'old@example.test');
    const v1 = returnPathFor({ ...a.relay.verp, nodeTag: null }, first.recipientId);
    expect(await sendReport(a, v1, dsn('old@example.test'))).toMatch(/^250/);
    await waitFor('v1 applied', () => statusOf(a, 'old@example.test'), (status) => status === 'bounced', 5000);
    const second = await delivered(a, 'own@example.test');
    expect(await sendReport(a, second.returnPath, dsn('own@example.test'))).toMatch(/^250/);
    await waitFor('own tag applied', () => statusOf(a, 'own@example.test'), (status) => status === 'bounced', 5000);
    expect(a.db.prepare('SELECT count(*) FROM forward_outbox').pluck().get()).toBe(0);
  }, 30_000);

  it('purges from the shared store, on the node they were for, forwarded reports it has taken that are older than store.retention.historyDays, at most once an hour', async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    await migrateShared(client);
    const daysAgo = (days: number): Date => new Date(Date.now() - days * 86_400_000);
    const forwarded = async (uid: string, toNode: string, receivedAt: Date): Promise<void> => {
      await client.query(
        `INSERT INTO rebound_forwarded_reports (uid, to_node, from_node, received_at, mail_from, rcpt_to, raw) VALUES ($1, $2, 'node-b', $3, '', '["x@bounces.relay.test"]', $4)`,
        [uid, toNode, receivedAt, Buffer.from(dsn('x@example.test'))],
      );
    };
    const left = async (): Promise<string[]> => (await client.query<{ uid: string }>('SELECT uid FROM rebound_forwarded_reports ORDER BY id')).rows.map((row) => row.uid);
    await forwarded('old-for-a', 'node-a', daysAgo(3));
    await forwarded('new-for-a', 'node-a', daysAgo(0));
    await forwarded('old-for-c', 'node-c', daysAgo(3));
    // historyDays 1: node A keeps reports a day, so the shared copies of the ones it took go after a day.
    const a = await node(url, 'node-a', { historyDays: 1 });
    await waitFor('both reports taken by A', () => a.db.prepare('SELECT count(*) FROM inbound_reports').pluck().get(), (n) => n === 2, 5000);
    for (let tries = 0; tries < 50 && (await left()).includes('old-for-a'); tries++) await new Promise((resolve) => setTimeout(resolve, 100));
    // A's recent one stays, and another node's (not A's to purge) too.
    expect(await left()).toEqual(['new-for-a', 'old-for-c']);
    // Within the hour the purge does not run again: an old report taken now stays for the next one.
    await forwarded('old-again-for-a', 'node-a', daysAgo(3));
    await waitFor('the third report taken by A', () => a.db.prepare('SELECT count(*) FROM inbound_reports').pluck().get(), (n) => n === 3, 5000);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await left()).toEqual(['new-for-a', 'old-for-c', 'old-again-for-a']);
  }, 30_000);

  it('purges only reports the node has taken (at or before its cursor), received before the cutoff, addressed to it', async () => {
    const client = new pg.Client({ connectionString: await freshDatabase(postgres, 'bounces') });
    await client.connect();
    cleanups.push(() => client.end());
    await migrateShared(client);
    const db = tempStore(storeCleanups);
    const reports = new ForwardedReports(db, 'node-a');
    const daysAgo = (days: number): Date => new Date(Date.now() - days * 86_400_000);
    const forwarded = async (uid: string, toNode: string, receivedAt: Date): Promise<void> => {
      await client.query(
        `INSERT INTO rebound_forwarded_reports (uid, to_node, from_node, received_at, mail_from, rcpt_to, raw) VALUES ($1, $2, 'node-b', $3, '', '[]', '\\x00')`,
        [uid, toNode, receivedAt],
      );
    };
    const left = async (): Promise<string[]> => (await client.query<{ uid: string }>('SELECT uid FROM rebound_forwarded_reports ORDER BY id')).rows.map((row) => row.uid);
    // Nothing taken yet: nothing to purge, however old.
    await forwarded('old-taken', 'node-a', daysAgo(5));
    expect(await reports.purgeTaken(client, daysAgo(1))).toBe(0);
    await forwarded('new-taken', 'node-a', daysAgo(0));
    const taken: string[] = [];
    await reports.pull(client, async (report, markTaken) => {
      taken.push(report.receivedAt.toISOString());
      writeTransaction(db, markTaken)();
    });
    expect(taken).toHaveLength(2);
    await forwarded('old-not-taken', 'node-a', daysAgo(5));
    await forwarded('old-for-b', 'node-b', daysAgo(5));
    expect(await reports.purgeTaken(client, daysAgo(1))).toBe(1);
    expect(await left()).toEqual(['new-taken', 'old-not-taken', 'old-for-b']);
  });

  it('refuses a second node name on the same tag, naming both and the fix', async () => {
    const client = new pg.Client({ connectionString: await freshDatabase(postgres, 'bounces') });
    await client.connect();
    cleanups.push(() => client.end());
    await migrateShared(client);
    await claimNodeName(client, 'first', 'store-1', 'abcdef');
    await expect(claimNodeName(client, 'second', 'store-2', 'abcdef')).rejects.toThrow(/"second" and "first" have the same return-path tag \(abcdef\): rename one \(store.shared.nodeName\)/);
    await expect(claimNodeName(client, 'first', 'store-1', 'abcdef')).resolves.toBeUndefined();
  });

  it('passes on a report sent to B\'s postmaster@ that quotes A\'s token in the original\'s Return-Path; A applies it', async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const a = await node(url, 'node-a');
    const b = await node(url, 'node-b');
    const { returnPath } = await delivered(a, 'quoted@example.test');
    await knows(b, 'node-a');
    const quoted = dsn('quoted@example.test').replace('From: app@shop.example\r\n', `Return-Path: <${returnPath}>\r\nFrom: app@shop.example\r\n`);
    expect(await sendReport(b, 'postmaster@bounces.relay.test', quoted)).toMatch(/^250/);
    await waitFor('bounced on A', () => statusOf(a, 'quoted@example.test'), (status) => status === 'bounced', 5000);
    expect(b.db.prepare('SELECT outcome FROM inbound_reports').pluck().get()).toBe("forwarded to node node-a: its quoted Return-Path carries that node's token");
    expect(a.db.prepare('SELECT rcpt_to FROM inbound_reports').pluck().get()).toBe('postmaster@bounces.relay.test');
    await waitFor('suppressed on B', () => suppressed(b, 'quoted@example.test'), (found) => found, 5000);
  });

  it('passes an unsubscribe for A\'s link on to A when B takes it, by mail to B\'s MX or as a one-click POST to B; B refuses a forged link itself', async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const a = await node(url, 'node-a', { unsubscribe: true });
    const b = await node(url, 'node-b', { admin: true, unsubscribe: true });
    await knows(b, 'node-a');
    const links = async (to: string): Promise<{ mailto: string; oneClick: string }> => {
      await delivered(a, to);
      const raw = mx.received.filter((m) => m.to[0] === to).at(-1)?.raw.toString('latin1') ?? '';
      const match = /^List-Unsubscribe: <mailto:([^?>]+)\?subject=unsubscribe>, <https:\/\/mail\.shop\.example\/unsubscribe\/([0-9a-z-]+)>/m.exec(raw);
      if (!match) throw new Error(`no List-Unsubscribe in the mail to ${to}`);
      return { mailto: match[1] as string, oneClick: match[2] as string };
    };
    const unsubscribed = (relay: TestRelay, address: string): string | undefined =>
      relay.db.prepare(`SELECT e.reason FROM events e JOIN recipients r ON r.id = e.recipient_id WHERE e.event = 'unsubscribed' AND r.address = ?`).pluck().get(address) as string | undefined;
    const onList = (relay: TestRelay, address: string): boolean => relay.db.prepare(`SELECT 1 FROM suppressions WHERE address = ? AND type = 'unsubscribes'`).get(address) !== undefined;

    // By mail: B's MX takes it (250), A unsubscribes its recipient, the list reaches B.
    const byMail = await links('reader1@example.test');
    expect(byMail.mailto).toContain(`-${nodeTagOf('node-a')}-`);
    const reply = await nodemailer
      .createTransport({ host: '127.0.0.1', port: inboundPort(b), ignoreTLS: true })
      .sendMail({ from: 'reader1@example.test', to: byMail.mailto, subject: 'unsubscribe', text: 'unsubscribe' });
    expect(reply.response).toMatch(/^250 .*unsubscribed/);
    await waitFor('unsubscribed on A', () => unsubscribed(a, 'reader1@example.test'), (reason) => reason === 'mailto', 5000);
    await waitFor('on B\'s list', () => onList(b, 'reader1@example.test'), (found) => found, 5000);

    // One-click, POSTed to B: the page says done, A applies it as one-click.
    const oneClick = await links('reader2@example.test');
    const base = `http://127.0.0.1:${b.relay.admin?.port}/unsubscribe/`;
    const page = await fetch(`${base}${oneClick.oneClick}`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<form method="post"');
    const post = (token: string): Promise<Response> =>
      fetch(`${base}${token}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    const posted = await post(oneClick.oneClick);
    expect(posted.status).toBe(200);
    expect(await posted.text()).toContain('You will not get these emails any more.');
    await waitFor('one-click on A', () => unsubscribed(a, 'reader2@example.test'), (reason) => reason === 'one-click', 5000);

    // A forged link with A's tag: B checks it with A's link key (rebound_nodes) and refuses it, by
    // POST and at RCPT, without passing anything on.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    const forwardedCount = async (): Promise<number> => Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM rebound_forwarded_reports')).rows[0]?.n);
    const forwardedSoFar = await forwardedCount();
    expect(forwardedSoFar).toBe(2);
    const forged = `${oneClick.oneClick.slice(0, -4)}aaaa`;
    const refused = await post(forged);
    expect(refused.status).toBe(404);
    expect(await refused.text()).toContain('This unsubscribe link is not valid.');
    const forgedRcpt = await SmtpDialog.start(inboundPort(b));
    await forgedRcpt.command('MAIL FROM:<reader1@example.test>', 250);
    expect((await forgedRcpt.command(`RCPT TO:<${byMail.mailto.replace(/[a-z2-7]{4}@/, 'aaaa@')}>`)).code).toBe(550);
    await forgedRcpt.quit();
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(b.db.prepare('SELECT count(*) FROM forward_outbox').pluck().get()).toBe(0);
    expect(await forwardedCount()).toBe(forwardedSoFar);
    expect(a.db.prepare(`SELECT count(*) FROM events WHERE event = 'unsubscribed'`).pluck().get()).toBe(2);
    // A link of a node nobody knows: the sender is told to retry, by mail and by POST.
    const unknown = oneClick.oneClick.replace(nodeTagOf('node-a'), 'zzzzzz');
    const later = await post(unknown);
    expect(later.status).toBe(503);
    expect(later.headers.get('retry-after')).toBe('60');
    const dialog = await SmtpDialog.start(inboundPort(b));
    await dialog.command('MAIL FROM:<reader3@example.test>', 250);
    const deferred = await dialog.command(`RCPT TO:<${byMail.mailto.replace(nodeTagOf('node-a'), 'zzzzzz')}>`);
    expect(deferred.text).toMatch(/^451 4\.7\.1 .*unknown node tag zzzzzz, try again later/);
    await dialog.quit();
  }, 30_000);

  it('counts unsubscribe mail for another node\'s link against the client\'s report budget, and passes on only its header', async () => {
    const url = await freshDatabase(postgres, 'bounces');
    const a = await node(url, 'node-a', { unsubscribe: true });
    const b = await node(url, 'node-b', { unsubscribe: true, reportsPerMinute: 1 });
    await knows(b, 'node-a');
    await delivered(a, 'budget@example.test');
    const raw = mx.received.filter((m) => m.to[0] === 'budget@example.test').at(-1)?.raw.toString('latin1') ?? '';
    const mailto = /<mailto:([^?>]+)\?subject=unsubscribe>/.exec(raw)?.[1] ?? '';
    const send = () =>
      nodemailer
        .createTransport({ host: '127.0.0.1', port: inboundPort(b), ignoreTLS: true })
        .sendMail({ from: 'budget@example.test', to: mailto, subject: 'unsubscribe', text: `please${'x'.repeat(5000)}` });
    expect((await send()).response).toMatch(/^250 /);
    await expect(send()).rejects.toThrow(/451 4\.7\.1 .*too many reports from your address/);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    const rows = await waitFor('the request in the shared store', async () => (await client.query<{ raw: Buffer }>('SELECT raw FROM rebound_forwarded_reports')).rows, (found) => found.length === 1, 5000);
    const passedOn = rows[0]?.raw.toString('latin1') ?? '';
    expect(passedOn).toContain('Subject: unsubscribe');
    expect(passedOn).not.toContain('please');
  });
});
