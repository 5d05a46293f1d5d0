import nodemailer from 'nodemailer';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Database } from '../src/store/database.js';
import { bouncesReport, parseBouncesQuery } from '../src/reports/bounces.js';
import { Activity } from '../src/reports/activity.js';
import { Retention } from '../src/store/retention.js';
import { EventSync } from '../src/shared/event-sync.js';
import { migrateShared } from '../src/shared/postgres-schema.js';
import { startFakeMx, type FakeMx } from './support/fake-mx.js';
import { freshDatabase, startPostgres, type TestPostgres } from './support/postgres.js';
import { FAST_DELIVERY, startTestRelay, writeTestConfig, type TestRelay } from './support/relay.js';
import { startChildRelay } from './support/child-relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';
import { ADMIN_TOKEN, PANEL_TOKENS, panelBrowser, screenshot, signIn } from './support/panel-browser.js';

let postgres: TestPostgres;
let mx: FakeMx;

beforeAll(async () => {
  postgres = await startPostgres();
  // bad…@ is refused for good, slow…@ for now; everyone else is delivered.
  mx = await startFakeMx({
    rcpt: (address) =>
      address.startsWith('bad') ? { code: 550, text: '5.1.1 no such user here' } : address.startsWith('slow') ? { code: 451, text: '4.3.0 try again later' } : null,
  });
}, 60_000);
afterAll(async () => {
  await mx?.close();
  await postgres?.stop();
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const browser = panelBrowser();

async function node(url: string, name: string, withAdmin = false): Promise<TestRelay> {
  const relay = await startTestRelay({
    store: { shared: { url, nodeName: name, catchUpSeconds: 0.5 } },
    ...(withAdmin ? { admin: { enabled: true, port: 0, tokens: PANEL_TOKENS } } : {}),
    delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
  });
  cleanups.push(() => relay.stop());
  return relay;
}

async function send(relay: TestRelay, to: string, tag?: string): Promise<string> {
  const info = await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({
    from: 'app@shop.example',
    to,
    subject: 'shared events',
    text: 'Hello.\r\n',
    ...(tag ? { headers: { 'X-Mailgun-Tag': tag } } : {}),
  });
  // "250 2.0.0 Ok: queued as <queue id>"
  return info.response.split(' ').pop() as string;
}

function count(db: Database, sql: string): number {
  return db.prepare(sql).pluck().get() as number;
}

const SINCE = new Date(Date.now() - 3_600_000).toISOString();

/** Everything the bounces report and the overview show, as read from one node's store. */
function reads(db: Database): unknown {
  const now = new Date(Date.now() + 60_000);
  const report = (groupBy: string, extra: Record<string, string> = {}) => bouncesReport(db, parseBouncesQuery({ since: SINCE, until: now.toISOString(), groupBy, type: 'all', ...extra }, now));
  const activity = new Activity(db);
  return {
    byDomain: report('recipient-domain'),
    byTag: report('tag'),
    oneTag: report('category', { tag: 'spring' }),
    counts: activity.countsSince(new Date(SINCE)),
    hourly: activity.bouncesPerHour(now, 2).byCategory,
    top: activity.topBouncingDomains(new Date(SINCE), 5),
  };
}

describe('shared events (store.shared.url): every node reads every node\'s mail', () => {
  it('gives the same bounces report, overview and suppressions on both nodes, tags included, each event counted once', async () => {
    const url = await freshDatabase(postgres, 'events');
    const a = await node(url, 'node-a', true);
    const b = await node(url, 'node-b', true);
    await send(a, 'bad1@example.test', 'spring');
    await send(a, 'ok1@example.test', 'spring');
    await send(a, 'slow1@example.test');
    await send(b, 'bad2@example.test', 'autumn');
    await send(b, 'ok2@example.test');
    // Every recipient final (slow1 retried until it expires), so no event comes after the reads.
    const unfinished = (n: TestRelay): number => count(n.db, `SELECT count(*) FROM recipients WHERE status IN ('queued', 'sending', 'deferred')`);
    await waitFor('every recipient final on A', () => unfinished(a), (n) => n === 0, 10_000);
    await waitFor('every recipient final on B', () => unfinished(b), (n) => n === 0, 10_000);
    // Each node's events reach the other (and only the other).
    await waitFor('A\'s events on B', () => count(b.db, `SELECT count(*) FROM other_node_events WHERE node = 'node-a'`), (n) => n === count(a.db, 'SELECT count(*) FROM events'), 5000);
    await waitFor('B\'s events on A', () => count(a.db, `SELECT count(*) FROM other_node_events WHERE node = 'node-b'`), (n) => n === count(b.db, 'SELECT count(*) FROM events'), 5000);
    expect(count(a.db, `SELECT count(*) FROM other_node_events WHERE node = 'node-a'`)).toBe(0);

    const onA = reads(a.db);
    expect(onA).toEqual(reads(b.db));
    // And they are every node's figures, not one node's.
    const byDomain = (onA as { byDomain: Array<{ amount: number; reason: string }> }).byDomain;
    expect(byDomain.filter((row) => row.reason === 'bounced').reduce((sum, row) => sum + row.amount, 0)).toBe(2);
    expect(byDomain.some((row) => row.reason === 'deferred')).toBe(true);
    expect(byDomain.filter((row) => row.reason === 'expired').reduce((sum, row) => sum + row.amount, 0)).toBe(1);
    const counts = (onA as { counts: { accepted: number; delivered: number; bounced: number } }).counts;
    // Bounced: the two 550s and slow1's expiry.
    expect(counts).toMatchObject({ accepted: 5, delivered: 2, bounced: 3 });
    const byTag = (onA as { byTag: Array<{ group: string; amount: number }> }).byTag;
    expect(byTag.filter((row) => row.group === 'spring').reduce((sum, row) => sum + row.amount, 0)).toBe(1);
    expect(byTag.filter((row) => row.group === 'autumn').reduce((sum, row) => sum + row.amount, 0)).toBe(1);
    expect((onA as { oneTag: Array<{ amount: number }> }).oneTag.reduce((sum, row) => sum + row.amount, 0)).toBe(1);

    // The same through the admin API of each node.
    const api = async (relay: TestRelay, path: string): Promise<unknown> => {
      const response = await fetch(`http://127.0.0.1:${relay.relay.admin?.port}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(response.status).toBe(200);
      return response.json();
    };
    const report = `/v1/reports/bounces?since=${encodeURIComponent(SINCE)}&until=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}&type=all&group_by=category`;
    expect(await api(a, report)).toEqual(await api(b, report));
    const suppressions = (await api(a, '/v1/suppressions')) as { items: Array<{ address: string }> };
    expect(suppressions.items.map((item) => item.address).sort()).toEqual(['bad1@example.test', 'bad2@example.test']);
    expect(await api(b, '/v1/suppressions')).toEqual(suppressions);
  }, 30_000);

  it('keeps an event shipped twice (a crash before the cursor was saved) once, and ships again events whose ids restarted', async () => {
    const url = await freshDatabase(postgres, 'events');
    const dir = makeTempDir();
    cleanups.push(() => dir.remove());
    const a = await node(url, 'node-a');
    await send(a, 'ok3@example.test');
    await waitFor('delivered on A', () => count(a.db, `SELECT count(*) FROM events WHERE event = 'delivered'`), (n) => n === 1, 5000);
    await waitFor('shipped', () => Number(a.db.prepare(`SELECT value FROM settings WHERE key = 'shared.events.shipped'`).pluck().get() ?? 0), (n) => n === count(a.db, 'SELECT max(id) FROM events'), 5000);
    await a.stopRelay();

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    const shared = async (): Promise<number> => Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM rebound_events')).rows[0]?.n);
    expect(await shared()).toBe(2);

    const db = openStore(a.config.store.path);
    cleanups.push(() => void db.close());
    const sync = new EventSync(db, 'node-a');
    // The cursor lost: everything is shipped again and kept once.
    db.prepare(`DELETE FROM settings WHERE key = 'shared.events.shipped'`).run();
    expect(await sync.ship(client)).toEqual({ shipped: 2, more: false });
    expect(await shared()).toBe(2);
    // The events table emptied (retention) and its ids started again from 1: the new ones are not
    // mistaken for ones already shipped.
    const message = db.prepare('SELECT id FROM messages LIMIT 1').pluck().get() as number;
    db.prepare('DELETE FROM events').run();
    db.prepare(`INSERT INTO events (at, event, message_id, recipient_id) VALUES (?, 'accepted', ?, NULL)`).run(new Date().toISOString(), message);
    expect(sync.waitingCount()).toBe(1);
    expect(await sync.ship(client)).toEqual({ shipped: 1, more: false });
    expect(await shared()).toBe(3);
    expect(sync.waitingCount()).toBe(0);
  }, 30_000);

  it('purges a node\'s own events from PostgreSQL and the other nodes\' copies after historyDays, and nothing sooner', async () => {
    const url = await freshDatabase(postgres, 'events');
    const dirs = [makeTempDir(), makeTempDir()];
    for (const dir of dirs) cleanups.push(() => dir.remove());
    const [storeA, storeB] = dirs.map((dir) => openStore(`${dir.dir}/rebound.sqlite`)) as [Database, Database];
    cleanups.push(() => void storeA.close(), () => void storeB.close());
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    await migrateShared(client);

    // Two events on A: one 40 days old, one now.
    const old = new Date(Date.now() - 40 * 86_400_000).toISOString();
    storeA.prepare(`INSERT INTO messages (queue_id, received_at, mail_from, client_ip, protocol, size, received_header, raw) VALUES ('Q1', ?, 'app@shop.example', '127.0.0.1', 'ESMTP', 1, '', X'')`).run(old);
    const insert = storeA.prepare(`INSERT INTO events (at, event, message_id, recipient_id, detail) VALUES (?, 'permanent_fail', 1, NULL, 'x')`);
    insert.run(old);
    insert.run(new Date().toISOString());
    const a = new EventSync(storeA, 'node-a');
    const b = new EventSync(storeB, 'node-b');
    const cutoff = new Date(Date.now() - 30 * 86_400_000);
    expect((await a.ship(client)).shipped).toBe(2);
    expect((await b.pull(client)).copied).toBe(2);
    expect(count(storeB, 'SELECT count(*) FROM other_node_events')).toBe(2);

    // Each node deletes only its own.
    expect(await b.purge(client, cutoff)).toBe(0);
    expect(await a.purge(client, cutoff)).toBe(1);
    expect(await a.purge(client, cutoff)).toBe(0);
    expect(Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM rebound_events')).rows[0]?.n)).toBe(1);

    const retention = new Retention(storeB, { bodyDays: 0, historyDays: 30, unmatchedReportDays: 0 });
    expect(retention.pending(new Date()).otherNodeEventsDeleted).toBe(1);
    expect(retention.step(new Date(), 100).otherNodeEventsDeleted).toBe(1);
    expect(count(storeB, 'SELECT count(*) FROM other_node_events')).toBe(1);
    expect(new Retention(storeB, { bodyDays: 0, historyDays: 0, unmatchedReportDays: 0 }).step(new Date(), 100).otherNodeEventsDeleted).toBe(0);
  }, 30_000);

  it('answers "what happened to mail for x@y" on every node: /v1/events and the history page show the other nodes\' events', async () => {
    const url = await freshDatabase(postgres, 'events');
    const a = await node(url, 'node-a');
    const b = await node(url, 'node-b', true);
    const queueId = await send(a, 'bad7@example.test');
    await waitFor('the bounce on B\'s copy', () => count(b.db, `SELECT count(*) FROM other_node_events WHERE event = 'permanent_fail'`), (n) => n === 1, 5000);
    const base = `http://127.0.0.1:${b.relay.admin?.port}`;
    const api = async (path: string): Promise<{ status: number; body: any }> => {
      const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      return { status: response.status, body: await response.json() };
    };
    const byAddress = await api('/v1/events?recipient=bad7@example.test');
    expect(byAddress.status).toBe(200);
    expect(byAddress.body).toMatchObject({ items: [], total: 0, otherNodes: { total: 2 } });
    expect(byAddress.body.otherNodes.items.map((e: { node: string; event: string; queueId: string }) => [e.node, e.event, e.queueId])).toEqual([
      ['node-a', 'accepted', queueId],
      ['node-a', 'permanent_fail', queueId],
    ]);
    expect(byAddress.body.otherNodes.items[1]).toMatchObject({ reason: 'bounced', category: 'bad-mailbox', code: 550, enhancedCode: '5.1.1' });
    expect((await api(`/v1/events?message=${queueId}&limit=1&page=2`)).body).toMatchObject({ items: [], otherNodes: { total: 2, items: [{ event: 'permanent_fail' }] } });
    // Nowhere at all: still a 404 that says so.
    expect(await api('/v1/events?recipient=nobody@example.test')).toEqual({ status: 404, body: { error: 'no mail to nobody@example.test in the store' } });

    const page = await browser.page();
    await signIn(page, base, ADMIN_TOKEN);
    await page.goto(`${base}/history?q=bad7%40example.test&kind=auto`);
    expect(await page.getByRole('status').innerText()).toBe('Nothing went through this node; what the other nodes recorded is below.');
    const rows = await page.locator('table[data-table="other-nodes"] tbody tr').allInnerTexts();
    expect(rows).toHaveLength(2);
    expect(rows[1]).toContain('node-a');
    expect(rows[1]).toContain('permanent_fail (bounced)');
    expect(rows[1]).toContain('5.1.1');
    await screenshot(page, 'history-other-nodes');
  }, 30_000);

  it('loses no event and keeps none twice when the relay is killed (kill -9) while it ships them, and ships the rest after a restart', async () => {
    const url = await freshDatabase(postgres, 'events');
    const dir = makeTempDir();
    cleanups.push(() => dir.remove());
    const configFile = writeTestConfig(dir.dir, {
      log: { level: 'info' },
      store: { shared: { url, nodeName: 'crashing', catchUpSeconds: 0.5 } },
      delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
    });
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    const shared = async (): Promise<number> => {
      const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM rebound_events`).catch(() => ({ rows: [{ n: '0' }] }));
      return Number(rows[0]?.n);
    };

    const first = await startChildRelay(configFile);
    cleanups.push(() => void first.process.kill('SIGKILL'));
    const submit = nodemailer.createTransport({ host: '127.0.0.1', port: first.port, ignoreTLS: true });
    // Mail keeps coming while the first events are shipped; the relay dies in the middle of it.
    const sending = (async () => {
      for (let k = 0; k < 40; k++) {
        await Promise.all([0, 1, 2, 3, 4].map((j) => submit.sendMail({ from: 'app@shop.example', to: `ok${k * 5 + j}@example.test`, subject: 'crash', text: 'x' }).catch(() => undefined)));
      }
    })();
    await waitFor('the first events shipped', shared, (n) => n > 0, 10_000);
    first.process.kill('SIGKILL');
    await first.exited;
    await sending;

    const second = await startChildRelay(configFile);
    cleanups.push(() => void second.process.kill('SIGKILL'));
    const store = openStore(`${dir.dir}/rebound.sqlite`, { readonly: true });
    cleanups.push(() => void store.close());
    // Whatever the first relay had accepted is delivered now; every event reaches PostgreSQL once.
    await waitFor(
      'every event shipped',
      async () => ({ local: count(store, 'SELECT count(*) FROM events'), pending: count(store, `SELECT count(*) FROM recipients WHERE status IN ('queued', 'sending', 'deferred')`), shared: await shared() }),
      (n) => n.pending === 0 && n.shared === n.local,
      15_000,
    );
    const { rows } = await client.query<{ uid: string }>('SELECT uid FROM rebound_events');
    const local = store.prepare('SELECT id, at FROM events ORDER BY id').all() as Array<{ id: number; at: string }>;
    expect(rows.map((row) => row.uid).sort()).toEqual(local.map((event) => `crashing/${event.id}/${event.at}`).sort());
  }, 40_000);
});
