import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { startRelay, type RunningRelay } from '../src/relay.js';
import { startFakeMx, type FakeMx, type FakeMxScript } from './support/fake-mx.js';
import { FAST_DELIVERY, logCapture, writeTestConfig, type ConfigOverride } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';
import BetterSqlite3 from 'better-sqlite3';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Started {
  relay: RunningRelay;
  logs: Array<Record<string, unknown>>;
  db: BetterSqlite3.Database;
  /** Stops the relay (once; the cleanup does not stop it again). */
  stopRelay(): Promise<void>;
}

/** A relay whose log lines land in `logs`, as a test's own pino destination. */
async function relayWithLogs(override: ConfigOverride): Promise<Started> {
  const temp = makeTempDir('rebound-stage-thread-');
  const config = loadConfig({ file: writeTestConfig(temp.dir, { log: { level: 'info' }, ...override }), env: {} });
  const { logs, destination } = logCapture();
  const relay = await startRelay(config, pino({ level: 'info' }, destination));
  const db = new BetterSqlite3(config.store.path, { readonly: true });
  let stopping: Promise<void> | null = null;
  const stopRelay = (): Promise<void> => (stopping ??= relay.stop());
  cleanups.push(async () => {
    await stopRelay();
    db.close();
    temp.remove();
  });
  return { relay, logs, db, stopRelay };
}

async function fakeMx(script: FakeMxScript = {}): Promise<FakeMx> {
  const mx = await startFakeMx(script);
  cleanups.push(() => mx.close());
  return mx;
}

function send(port: number, to: string): Promise<unknown> {
  return nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true }).sendMail({ from: 'app@shop.example', to, subject: `to ${to}`, text: 'hello\r\n' });
}

function statusCounts(db: BetterSqlite3.Database): Record<string, number> {
  const rows = db.prepare('SELECT status, count(*) AS n FROM recipients GROUP BY status').all() as Array<{ status: string; n: number }>;
  return Object.fromEntries(rows.map((row) => [row.status, row.n]));
}

describe('the delivery stage on its own thread (delivery.stageThread, the default)', () => {
  it('is on by default, delivers, and its log lines reach the relay\'s own log destination', async () => {
    const mx = await fakeMx();
    const { relay, logs, db, stopRelay } = await relayWithLogs({ delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    await send(relay.submission.port, 'alice@example.test');
    await waitFor('delivery', () => statusCounts(db), (counts) => counts.delivered === 1);
    expect(mx.received.map((message) => message.to)).toEqual([['alice@example.test']]);
    expect(logs.some((entry) => entry.msg === 'delivery runs on its own thread')).toBe(true);
    // Written on the delivery thread, carried to this destination by the main thread.
    expect(logs.find((entry) => entry.msg === 'delivery started')).toMatchObject({ stage: 'delivery', service: 'rebound' });
    await stopRelay();
    expect(logs.some((entry) => entry.msg === 'delivery stopped')).toBe(true);
  });

  it('500 messages from 20 clients while both threads write the store: every one delivered once, every event recorded, no store error', async () => {
    const mx = await fakeMx();
    const { relay, logs, db } = await relayWithLogs({ delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    const addresses = Array.from({ length: 500 }, (_, n) => `user${n}@example.test`);
    const clients = Array.from({ length: 20 }, (_, client) => (async () => {
      for (let n = client; n < addresses.length; n += 20) await send(relay.submission.port, addresses[n] as string);
    })());
    await Promise.all(clients);
    await waitFor('every recipient delivered', () => statusCounts(db), (counts) => counts.delivered === 500, 30_000);
    expect(mx.received).toHaveLength(500);
    expect(new Set(mx.received.flatMap((message) => message.to)).size).toBe(500);
    const events = db.prepare('SELECT event, count(*) AS n FROM events GROUP BY event ORDER BY event').all();
    expect(events).toEqual([{ event: 'accepted', n: 500 }, { event: 'delivered', n: 500 }]);
    expect(db.prepare("SELECT count(*) FROM attempts WHERE outcome = 'delivered'").pluck().get()).toBe(500);
    expect(logs.filter((entry) => (entry.level as number) >= 50)).toEqual([]);
  });

  it('a delivery thread that dies mid-transaction is replaced, and what it had claimed is sent again', async () => {
    // The first DATA is answered slowly, so the thread is ended while that transaction is open.
    const mx = await fakeMx({ dataDelayMs: 1_000 });
    const { relay, logs, db } = await relayWithLogs({ delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    const first = relay.deliveryThread?.thread();
    expect(first).toBeDefined();
    await send(relay.submission.port, 'carol@example.test');
    await waitFor('the recipient claimed', () => statusCounts(db), (counts) => counts.sending === 1);
    await first?.terminate();
    await waitFor('a new delivery thread', () => relay.deliveryThread?.thread(), (thread) => thread !== first);
    await waitFor('the recipient delivered by the new thread', () => statusCounts(db), (counts) => counts.delivered === 1, 15_000);
    expect(logs.find((entry) => entry.msg === 'the delivery thread exited; a new one starts in a second and queues again what it had claimed')).toMatchObject({ code: 1 });
    expect(logs.some((entry) => entry.msg === 'recipients left "sending" by the last run are queued again (at-least-once)')).toBe(true);
    expect(statusCounts(db)).toEqual({ delivered: 1 });
  });

  it('commits accepted mail on the thread: a 250 means stored; while a dead thread is replaced, mail is refused with 451, never acknowledged', async () => {
    const mx = await fakeMx();
    const { relay, db } = await relayWithLogs({ delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    const first = relay.deliveryThread?.thread();
    const info = (await send(relay.submission.port, 'dave@example.test')) as { response: string };
    const queueId = info.response.split(' ').pop();
    expect(db.prepare('SELECT count(*) FROM messages WHERE queue_id = ?').pluck().get(queueId)).toBe(1);

    await first?.terminate();
    // The thread is gone and its replacement starts a second later: nothing can be stored meanwhile.
    await expect(send(relay.submission.port, 'erin@example.test')).rejects.toMatchObject({ responseCode: 451 });
    await waitFor('a new delivery thread', () => relay.deliveryThread?.thread(), (thread) => thread !== first);
    await send(relay.submission.port, 'frank@example.test');
    await waitFor('both acknowledged messages delivered', () => statusCounts(db), (counts) => counts.delivered === 2);
    const addresses = db.prepare('SELECT address FROM recipients ORDER BY id').pluck().all();
    expect(addresses).toEqual(['dave@example.test', 'frank@example.test']);
  });

  it('with delivery.stageThread false the stage runs on the main thread, as before', async () => {
    const mx = await fakeMx();
    const { relay, logs, db } = await relayWithLogs({ delivery: { ...FAST_DELIVERY, stageThread: false, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    await send(relay.submission.port, 'bob@example.test');
    await waitFor('delivery', () => statusCounts(db), (counts) => counts.delivered === 1);
    expect(logs.some((entry) => entry.msg === 'delivery runs on its own thread')).toBe(false);
    expect(logs.some((entry) => entry.msg === 'delivery started')).toBe(true);
  });
});
