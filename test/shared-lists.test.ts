import nodemailer from 'nodemailer';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../src/store/database.js';
import { SuppressionLists } from '../src/suppressions/lists.js';
import { claimNodeName, migrateShared } from '../src/shared/postgres-schema.js';
import { DkimKeyStore } from '../src/dkim/key-store.js';
import { startFakeMx, type FakeMx } from './support/fake-mx.js';
import { startChildRelay } from './support/child-relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { startWebhookReceiver } from './support/webhook-receiver.js';
import { ConfigError, loadConfig } from '../src/config/load.js';
import { freshDatabase, startPostgres, type TestPostgres } from './support/postgres.js';
import { FAST_DELIVERY, startTestRelay, writeTestConfig, type TestRelay } from './support/relay.js';
import { waitFor } from './support/wait-for.js';
import { bouncesReport, parseBouncesQuery } from '../src/reports/bounces.js';

/** A suppression made on one node must stop mail on every node within a second (issue 14). */
const WITHIN_MS = 1000;

let postgres: TestPostgres;
let mx: FakeMx;

beforeAll(async () => {
  postgres = await startPostgres();
  // The MX refuses bad…@ for good; everyone else is delivered.
  mx = await startFakeMx({ rcpt: (address) => (address.startsWith('bad') ? { code: 550, text: '5.1.1 no such user here' } : null) });
}, 60_000);
afterAll(async () => {
  await mx?.close();
  await postgres?.stop();
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TOKEN = 'shared-lists-test-token-0123456789';

async function node(url: string, name: string, withAdmin = false, webhookUrl?: string): Promise<TestRelay> {
  const relay = await startTestRelay({
    store: { shared: { url, nodeName: name, catchUpSeconds: 0.5 } },
    ...(withAdmin ? { admin: { enabled: true, port: 0, tokens: [{ name: 'ops', token: TOKEN }] } } : {}),
    ...(webhookUrl
      ? { webhooks: { endpoints: [{ url: webhookUrl, events: ['delivered', 'permanent_fail'], secret: 'shared-test-secret-0123456789' }], allowPrivateTargets: true, pollIntervalMs: 50 } }
      : {}),
    delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
  });
  cleanups.push(() => relay.stop());
  return relay;
}

/** The shared store's two gauges in the node's /metrics. */
async function sharedGauges(relay: TestRelay): Promise<{ up: number; waiting: number }> {
  const text = await (await fetch(`http://127.0.0.1:${relay.relay.admin?.port}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  const gauge = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { up: gauge('rebound_shared_store_up'), waiting: gauge('rebound_shared_outbox_changes') };
}

/** rebound_shared_events_waiting in the node's /metrics. */
async function eventsWaiting(relay: TestRelay): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${relay.relay.admin?.port}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  return Number(/^rebound_shared_events_waiting (\d+)$/m.exec(text)?.[1] ?? NaN);
}

async function send(relay: TestRelay, to: string): Promise<void> {
  await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from: 'app@shop.example', to, subject: 'shared', text: 'Hello.\r\n' });
}

function listsOf(relay: TestRelay): Array<{ address: string; type: string; count: number }> {
  return relay.db.prepare('SELECT address, type, count FROM suppressions ORDER BY address, type').all() as Array<{ address: string; type: string; count: number }>;
}

function statusOf(relay: TestRelay, address: string): string | undefined {
  return relay.db.prepare('SELECT status FROM recipients WHERE address = ? ORDER BY id DESC LIMIT 1').pluck().get(address) as string | undefined;
}

/** A change made the way `rebound suppressions` makes it: another connection to the node's store file. */
function withLists<T>(relay: TestRelay, use: (lists: SuppressionLists) => T): T {
  const db = openStore(relay.config.store.path);
  try {
    return use(new SuppressionLists(db));
  } finally {
    db.close();
  }
}

describe('shared suppression lists (store.shared.url, PostgreSQL)', () => {
  it('a hard bounce on node A suppresses the address on node B within a second, and B then drops mail to it unsent', async () => {
    const url = await freshDatabase(postgres, 'shared');
    const a = await node(url, 'node-a');
    const b = await node(url, 'node-b');
    await send(a, 'bad@example.test');
    await waitFor('the bounce suppressed on A', () => listsOf(a), (rows) => rows.length === 1, 5000);
    const suppressedAt = Date.now();
    await waitFor('the suppression on B', () => listsOf(b), (rows) => rows.length === 1, 5000);
    expect(Date.now() - suppressedAt).toBeLessThan(WITHIN_MS);
    expect(listsOf(b)).toEqual([{ address: 'bad@example.test', type: 'bounces', count: 1 }]);
    // B's audit names who did it and where.
    const audit = b.db.prepare('SELECT action, list, actor FROM suppression_audit').all();
    expect(audit).toEqual([{ action: 'add', list: 'bounces', actor: 'relay on node-a' }]);

    const rcptsBefore = mx.received.length;
    await send(b, 'bad@example.test');
    await waitFor('B drops it', () => statusOf(b, 'bad@example.test'), (status) => status === 'suppressed', 5000);
    expect(mx.received.length).toBe(rcptsBefore);
  });

  it('a suppression removed on node B sends again from node A, and the allowlist is shared the same way', async () => {
    const url = await freshDatabase(postgres, 'shared');
    const a = await node(url, 'node-a');
    const b = await node(url, 'node-b');
    withLists(a, (lists) => lists.add({ address: 'back@example.test', type: 'complaints', source: 'manual', actor: 'cli' }));
    await waitFor('the complaint on B', () => listsOf(b), (rows) => rows.length === 1, 3000);
    expect(withLists(b, (lists) => lists.remove('back@example.test', undefined, 'api:ops', 'asked to be mailed again'))).toEqual(['complaints']);
    const removedAt = Date.now();
    await waitFor('the removal on A', () => listsOf(a), (rows) => rows.length === 0, 3000);
    expect(Date.now() - removedAt).toBeLessThan(WITHIN_MS);
    await send(a, 'back@example.test');
    await waitFor('delivered from A', () => statusOf(a, 'back@example.test'), (status) => status === 'delivered', 5000);

    withLists(b, (lists) => lists.allow('example.test', 'cli', 'our own test domain'));
    await waitFor('the allowlist on A', () => a.db.prepare('SELECT value, kind, created_by AS createdBy FROM allowlist').all(), (rows) => rows.length === 1, 3000);
    expect(a.db.prepare('SELECT value, kind, created_by AS createdBy FROM allowlist').all()).toEqual([{ value: 'example.test', kind: 'domain', createdBy: 'cli' }]);
  });

  it('ends with the same lists on both nodes when they change the same address at once, in the shared log\'s order', async () => {
    const url = await freshDatabase(postgres, 'shared');
    const a = await node(url, 'node-a');
    const b = await node(url, 'node-b');
    // Both nodes change the same entries without waiting for each other.
    for (let k = 0; k < 20; k++) {
      const address = `race${k % 4}@example.test`;
      withLists(k % 2 === 0 ? a : b, (lists) => (k % 3 === 0 ? lists.remove(address, undefined, 'cli', null) : lists.add({ address, type: 'bounces', source: 'manual', actor: 'cli' })));
    }
    // Both outboxes shipped, then a catch-up round on each: every change applied on both.
    await waitFor('both outboxes shipped', () => [a, b].map((n) => n.db.prepare('SELECT count(*) FROM shared_outbox').pluck().get()), (counts) => counts.every((n) => n === 0), 5000);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(listsOf(a).length).toBeGreaterThan(0);
    expect(listsOf(a)).toEqual(listsOf(b));
    const cursor = (n: TestRelay): unknown => n.db.prepare(`SELECT value FROM settings WHERE key = 'shared.changes.version'`).pluck().get();
    expect(cursor(a)).toEqual(cursor(b));
  });

  it('keeps changes made while PostgreSQL is down in the local outbox, loses none, ships them when it is back, and says so in /metrics', async () => {
    const url = await freshDatabase(postgres, 'shared');
    const a = await node(url, 'node-a', true);
    const b = await node(url, 'node-b');
    // A's first round connects in the background: up once it has.
    for (let tries = 0; tries < 30 && (await sharedGauges(a)).up !== 1; tries++) await new Promise((resolve) => setTimeout(resolve, 100));
    await expect(sharedGauges(a)).resolves.toEqual({ up: 1, waiting: 0 });
    await postgres.stopServer();
    try {
      for (let k = 0; k < 5; k++) withLists(a, (lists) => lists.add({ address: `while-down${k}@example.test`, type: 'unsubscribes', source: 'manual', actor: 'cli' }));
      // The lists on A work meanwhile; B cannot know yet; nothing is lost from the outbox.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(listsOf(a)).toHaveLength(5);
      expect(listsOf(b)).toHaveLength(0);
      expect(a.db.prepare('SELECT count(*) FROM shared_outbox').pluck().get()).toBe(5);
      await expect(sharedGauges(a)).resolves.toEqual({ up: 0, waiting: 5 });
    } finally {
      await postgres.startServer();
    }
    await waitFor('the changes on B', () => listsOf(b), (rows) => rows.length === 5, 10_000);
    await waitFor('the outbox emptied', () => a.db.prepare('SELECT count(*) FROM shared_outbox').pluck().get(), (n) => n === 0, 5000);
    for (let tries = 0; tries < 30 && (await sharedGauges(a)).up !== 1; tries++) await new Promise((resolve) => setTimeout(resolve, 100));
    await expect(sharedGauges(a)).resolves.toEqual({ up: 1, waiting: 0 });
  }, 30_000);

  it('loses no outcome, event, webhook or suppression while PostgreSQL is down for 30 s under load, and catches up after', async () => {
    const url = await freshDatabase(postgres, 'shared');
    const hooks = await startWebhookReceiver();
    cleanups.push(() => hooks.close());
    const a = await node(url, 'node-a', true, hooks.url);
    const b = await node(url, 'node-b', false, hooks.url);
    await postgres.stopServer();
    const stoppedAt = Date.now();
    const addresses = Array.from({ length: 60 }, (_, k) => (k % 3 === 0 ? `bad${k}@example.test` : `ok${k}@example.test`));
    try {
      // Mail keeps flowing on A: accepted, delivered or bounced, each outcome and event kept locally.
      for (let k = 0; k < addresses.length; k += 6) await Promise.all(addresses.slice(k, k + 6).map((to) => send(a, to)));
      await waitFor('every outcome on A', () => a.db.prepare(`SELECT count(*) FROM recipients WHERE status IN ('delivered', 'bounced')`).pluck().get(), (n) => n === 60, 20_000);
      expect(a.db.prepare(`SELECT count(*) FROM events WHERE event IN ('delivered', 'permanent_fail')`).pluck().get()).toBe(60);
      expect(listsOf(a)).toHaveLength(20);
      expect(listsOf(b)).toHaveLength(0);
      // Webhooks never wait on PostgreSQL: one per outcome, from A, while it is still down.
      await waitFor('60 webhooks', () => hooks.received.length, (n) => n >= 60, 10_000);
      // Every event waits to be shipped: 60 accepted and 60 outcomes.
      expect(await eventsWaiting(a)).toBe(120);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, stoppedAt + 30_000 - Date.now())));
    } finally {
      await postgres.startServer();
    }
    await waitFor('every suppression on B', () => listsOf(b), (rows) => rows.length === 20, 10_000);
    expect(listsOf(b)).toEqual(listsOf(a));
    expect(a.db.prepare('SELECT count(*) FROM shared_outbox').pluck().get()).toBe(0);
    // Every event of A reached B's copy, and the bounces report reads the same on both.
    const eventsOfA = a.db.prepare('SELECT count(*) FROM events').pluck().get() as number;
    await waitFor('A\'s events on B', () => b.db.prepare(`SELECT count(*) FROM other_node_events WHERE node = 'node-a'`).pluck().get(), (n) => n === eventsOfA, 10_000);
    expect(await eventsWaiting(a)).toBe(0);
    const now = new Date(Date.now() + 60_000);
    const report = (relay: TestRelay) => bouncesReport(relay.db, parseBouncesQuery({ since: new Date(stoppedAt - 60_000).toISOString(), until: now.toISOString(), type: 'all' }, now));
    expect(report(a).reduce((sum, row) => sum + row.amount, 0)).toBe(20);
    expect(report(b)).toEqual(report(a));
    // None lost and none twice, also after the outage.
    const ids = hooks.received.map((hook) => hook.body['event-data'].id as string);
    expect(ids).toHaveLength(60);
    expect(new Set(ids).size).toBe(60);
  }, 60_000);

  it('shares what a node had before it joined, and keeps a change shipped twice (a crash before the outbox row was deleted) once', async () => {
    const url = await freshDatabase(postgres, 'shared');
    // Node A first runs alone, with a suppression of its own.
    const alone = await startTestRelay({});
    withLists(alone, (lists) => lists.add({ address: 'before@example.test', type: 'bounces', source: 'manual', actor: 'cli' }));
    await alone.stopRelay();
    // Its temp dir (and store) goes last, after the node that reopened the store has stopped.
    cleanups.push(() => alone.stop());
    const a = await startTestRelay({ store: { path: alone.config.store.path, shared: { url, nodeName: 'node-a', catchUpSeconds: 0.5 } } });
    cleanups.push(() => a.stop());
    const b = await node(url, 'node-b');
    await waitFor('the old entry on B', () => listsOf(b), (rows) => rows.length === 1, 3000);
    expect(listsOf(b)).toEqual([{ address: 'before@example.test', type: 'bounces', count: 1 }]);

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    const { rows } = await client.query<{ uid: string; at: Date; change: unknown }>('SELECT uid, at, change FROM rebound_changes');
    const first = rows[0];
    if (!first) throw new Error('no change in the shared log');
    // The same outbox row again, as after a crash between the shipping commit and the local delete.
    const db = openStore(a.config.store.path);
    db.prepare('INSERT INTO shared_outbox (uid, at, change) VALUES (?, ?, ?)').run(first.uid, first.at.toISOString(), JSON.stringify(first.change));
    db.close();
    await waitFor('the repeat shipped', () => a.db.prepare('SELECT count(*) FROM shared_outbox').pluck().get(), (n) => n === 0, 3000);
    const { rows: count } = await client.query<{ n: string }>('SELECT count(*) AS n FROM rebound_changes');
    expect(Number(count[0]?.n)).toBe(1);
  });

  it('works between two `rebound start` processes: a bounce on one stops the other, a webhook on both fires once', async () => {
    const url = await freshDatabase(postgres, 'shared');
    const hooks = await startWebhookReceiver();
    cleanups.push(() => hooks.close());
    const dirs = [makeTempDir(), makeTempDir()];
    for (const dir of dirs) cleanups.push(() => dir.remove());
    const children = await Promise.all(
      dirs.map((dir, k) =>
        startChildRelay(
          writeTestConfig(dir.dir, {
            log: { level: 'info' },
            store: { shared: { url, nodeName: `proc-${k}`, catchUpSeconds: 0.5 } },
            delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
            webhooks: { endpoints: [{ url: hooks.url, events: ['permanent_fail'], secret: 'shared-test-secret-0123456789' }], allowPrivateTargets: true, pollIntervalMs: 50 },
          }),
        ),
      ),
    );
    for (const child of children) cleanups.push(() => void child.process.kill('SIGKILL'));
    const [first, second] = children as [(typeof children)[0], (typeof children)[0]];
    await nodemailer.createTransport({ host: '127.0.0.1', port: first.port, ignoreTLS: true }).sendMail({ from: 'app@shop.example', to: 'bad@example.test', subject: 'x', text: 'x' });
    const store = (k: number): string => `${dirs[k]?.dir}/rebound.sqlite`;
    const suppressedOn = (k: number): number => {
      const db = openStore(store(k), { readonly: true });
      try {
        return db.prepare(`SELECT count(*) FROM suppressions WHERE address = 'bad@example.test'`).pluck().get() as number;
      } finally {
        db.close();
      }
    };
    await waitFor('suppressed on the first process', () => suppressedOn(0), (n) => n === 1, 5000);
    await waitFor('and on the second', () => suppressedOn(1), (n) => n === 1, 2000);
    await nodemailer.createTransport({ host: '127.0.0.1', port: second.port, ignoreTLS: true }).sendMail({ from: 'app@shop.example', to: 'bad@example.test', subject: 'y', text: 'y' });
    // Two permanent_fail events, one per node (the bounce on the first, the suppressed drop on
    // the second): one webhook each, never one per node per event.
    await waitFor('two webhooks', () => hooks.received.length, (n) => n >= 2, 5000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(hooks.received).toHaveLength(2);
    expect(second.logs.some((line) => line.msg === 'connected to the shared store' && line.node === 'proc-1')).toBe(true);
  }, 40_000);

  it('shares DKIM keys: a key added on node A signs node B\'s mail, a rotation activated on B moves A, a removal reaches both', async () => {
    const url = await freshDatabase(postgres, 'shared');
    const signing = { dkim: { reloadSeconds: 0.2 } };
    const a = await startTestRelay({ ...signing, store: { shared: { url, nodeName: 'node-a', catchUpSeconds: 0.5 } }, delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    cleanups.push(() => a.stop());
    const b = await startTestRelay({ ...signing, store: { shared: { url, nodeName: 'node-b', catchUpSeconds: 0.5 } }, delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    cleanups.push(() => b.stop());
    const keysOf = (relay: TestRelay): Array<{ selector: string; state: string; public_key: string }> =>
      relay.db.prepare('SELECT selector, state, public_key FROM dkim_keys ORDER BY id').all() as Array<{ selector: string; state: string; public_key: string }>;
    // As `rebound dkim add` does it: another connection to A's store.
    const dbA = openStore(a.config.store.path);
    const added = await new DkimKeyStore(dbA).add('shop.example', 'shared1', 'ed25519');
    dbA.close();
    await waitFor('the key on B', () => keysOf(b), (rows) => rows.length === 1, 3000);
    expect(keysOf(b)).toEqual(keysOf(a));
    expect(keysOf(b)[0]).toMatchObject({ selector: 'shared1', state: 'active' });
    expect(added.record.text).toContain(`p=${keysOf(b)[0]?.public_key}`);
    // B signs with it (its keyring reads the store again within dkim.reloadSeconds).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const before = mx.received.length;
    await send(b, 'signed@example.test');
    await waitFor('the signed message', () => mx.received.length, (n) => n > before, 5000);
    const received = mx.received[mx.received.length - 1]?.raw.toString() ?? '';
    expect(received).toMatch(/^DKIM-Signature: v=1; a=ed25519-sha256;[^]*?d=shop\.example;[^]*?s=shared1;/m);

    // A rotation made and activated on B becomes A's keys too; a removal reaches both.
    const dbB = openStore(b.config.store.path);
    const keys = new DkimKeyStore(dbB);
    await keys.rotate('shop.example', 'shared2', 'ed25519');
    keys.activate('shop.example', 'shared2');
    dbB.close();
    await waitFor('the rotation on A', () => keysOf(a).map((k) => `${k.selector} ${k.state}`), (rows) => rows.join() === 'shared1 retired,shared2 active', 3000);
    const dbB2 = openStore(b.config.store.path);
    new DkimKeyStore(dbB2).remove('shop.example', 'shared1');
    dbB2.close();
    await waitFor('the removal on A', () => keysOf(a).map((k) => k.selector), (rows) => rows.join() === 'shared2', 3000);
    expect(keysOf(a)).toEqual(keysOf(b));
  });

  it('lets one store at a time sync under a node name: a second store with the same name ships and applies nothing', async () => {
    const url = await freshDatabase(postgres, 'shared');
    const a = await node(url, 'twin');
    const b = await node(url, 'twin');
    withLists(a, (lists) => lists.add({ address: 'from-a@example.test', type: 'bounces', source: 'manual', actor: 'cli' }));
    withLists(b, (lists) => lists.add({ address: 'from-b@example.test', type: 'bounces', source: 'manual', actor: 'cli' }));
    // Whichever claimed the name first syncs; the other keeps its change in its outbox.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const outboxes = [a, b].map((n) => n.db.prepare('SELECT count(*) FROM shared_outbox').pluck().get());
    expect(outboxes.sort()).toEqual([0, 1]);
    const [syncing, refused] = outboxes[0] === 0 ? [a, b] : [b, a];
    expect(listsOf(syncing)).toHaveLength(1);
    expect(listsOf(refused)).toHaveLength(1);

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    await migrateShared(client);
    await expect(claimNodeName(client, 'twin', 'a-third-store')).rejects.toThrow(
      'another store syncs as node "twin" (seen within 10 minutes): give each node its own store.shared.nodeName; nothing is shipped or applied until then',
    );
    // A name unseen for 10 minutes may be taken (a node rebuilt on a new disk).
    await client.query(`UPDATE rebound_nodes SET seen_at = now() - interval '11 minutes'`);
    await syncing.stop();
    await expect(claimNodeName(client, 'twin', 'a-third-store')).resolves.toBeUndefined();
  });

  it('refuses a store.shared.url that is not a PostgreSQL URL, naming the key and the form', () => {
    const temp = makeTempDir();
    cleanups.push(() => temp.remove());
    const file = writeTestConfig(temp.dir, { store: { shared: { url: 'mysql://db/rebound' } } });
    expect(() => loadConfig({ file, env: {} })).toThrow(ConfigError);
    expect(() => loadConfig({ file, env: {} })).toThrow(/store\.shared\.url: write a PostgreSQL URL such as postgres:\/\/rebound@db\.internal:5432\/rebound/);
  });
});
