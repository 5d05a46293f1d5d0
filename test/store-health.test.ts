import { copyFileSync, existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { startAdmin } from '../src/admin/server.js';
import { loadConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { openStore } from '../src/store/database.js';
import { Spool } from '../src/store/spool.js';
import { StoreHealth } from '../src/store/store-health.js';
import { startChildRelay, type ChildRelay } from './support/child-relay.js';
import { writeTestConfig } from './support/relay.js';
import { spoolMessage } from './support/spool-message.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const temp = makeTempDir('rebound-store-health-');
  cleanups.push(temp.remove);
  return temp.dir;
}

function send(port: number, to: string): Promise<{ response: string }> {
  return nodemailer
    .createTransport({ host: '127.0.0.1', port, ignoreTLS: true })
    .sendMail({ from: 'app@shop.example', to, subject: `to ${to}`, text: 'hello' });
}

function queueIds(path: string): string[] {
  const db = new BetterSqlite3(path, { readonly: true });
  try {
    return (db.prepare('SELECT queue_id AS queueId FROM messages ORDER BY id').all() as Array<{ queueId: string }>).map((row) => row.queueId);
  } finally {
    db.close();
  }
}

function logged(relay: ChildRelay, text: string): Record<string, unknown> | undefined {
  return relay.logs.find((entry) => String(entry.msg).includes(text));
}

describe('store health: a store file deleted under the running relay', () => {
  it.each([
    ['delivery off: the spool commits on the main thread', {}],
    // Nothing listens on port 9 of 127.0.0.1 here: the mail is deferred, its outcomes written too.
    ['delivery on its own thread, where the spool commits', { delivery: { enabled: true, stageThread: true, routes: { '*': '127.0.0.1:9' } } }],
  ])('refuses new mail with 451, fails /healthz, logs why, and rescues every acknowledged message (%s)', async (_where, delivery) => {
    const dir = tempDir();
    const dbPath = join(dir, 'rebound.sqlite');
    const configFile = writeTestConfig(dir, { log: { level: 'info' }, admin: { enabled: true, port: 0 }, ...delivery });
    const relay = await startChildRelay(configFile);
    cleanups.push(() => void relay.process.kill('SIGKILL'));
    const adminPort = (await waitFor('the admin port in the log', () => logged(relay, 'admin API listening'), Boolean))?.port as number;

    const acknowledged: string[] = [];
    for (let i = 0; i < 5; i++) acknowledged.push(/queued as ([0-9A-Z]{18})/.exec((await send(relay.port, `before${i}@example.net`)).response)?.[1] as string);
    // As `rm data/rebound.sqlite` does: the WAL stays, so its syncs still succeed.
    rmSync(dbPath);

    // The next message is refused (451, so the client keeps it and retries), not acknowledged into a file nobody will open.
    await expect(send(relay.port, 'after@example.net')).rejects.toMatchObject({ responseCode: 451 });
    const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { error: string }).error).toContain(`${dbPath} was deleted`);
    // The log line comes from whichever thread's check saw it first, and reaches the child's stdout a moment after the 451.
    const why = await waitFor('the log line saying why', () => logged(relay, 'the store file was deleted under the running relay'), Boolean);
    expect(why).toMatchObject({ level: 50, store: dbPath });

    const rescue = (await waitFor('the rescue copy', () => logged(relay, 'rescue copy written'), Boolean))?.rescue as string;
    expect(queueIds(rescue)).toEqual(acknowledged);

    // The operator's way back: stop, move the rescue copy into place, start; the mail is there.
    relay.process.kill('SIGTERM');
    expect((await relay.exited).code).toBe(0);
    for (const suffix of ['-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
    renameSync(rescue, dbPath);
    const restarted = await startChildRelay(configFile);
    cleanups.push(() => void restarted.process.kill('SIGKILL'));
    expect(queueIds(dbPath)).toEqual(acknowledged);
    await send(restarted.port, 'again@example.net');
    expect(queueIds(dbPath)).toHaveLength(6);
  });

  it('opens a second connection only to a store that is there, so a restarted delivery thread never creates an empty one', () => {
    const dir = tempDir();
    const path = join(dir, 'gone.sqlite');
    expect(() => openStore(path, { mustExist: true })).toThrow(`cannot open the store at ${path}`);
    expect(existsSync(path)).toBe(false);
  });

  it('treats a file replaced at store.path as lost too, and refuses commits into the old one', async () => {
    const dir = tempDir();
    const path = join(dir, 'store.sqlite');
    const db = openStore(path);
    const health = new StoreHealth(db, path, createLogger('silent'));
    cleanups.push(() => {
      health.stop();
      db.close();
    });
    const spool = new Spool(db);
    await spool.enqueue(spoolMessage('kept@example.net'));
    expect(health.problem()).toBeNull();

    copyFileSync(path, join(dir, 'copy.sqlite'));
    renameSync(join(dir, 'copy.sqlite'), path);
    await expect(spool.enqueue(spoolMessage('lost@example.net'))).rejects.toThrow(`${path} was replaced by another file`);
    expect(health.problem()?.cause).toContain('was replaced');
    const rescue = await health.rescued;
    expect(rescue !== null && existsSync(rescue)).toBe(true);
  });
});

describe('store health: writes that fail', () => {
  it('fails /healthz and refuses mail while commits fail (disk full), and recovers by itself', async () => {
    const dir = tempDir();
    const config = loadConfig({ file: writeTestConfig(dir, { admin: { enabled: true, port: 0, tokens: [{ name: 'metrics', token: 'metrics-token-0123456789abcdef' }] } }), env: {} });
    const db = openStore(config.store.path);
    // Not watched yet: the watch's probe write is small enough to fit a page still free, and would clear the failure early.
    const health = new StoreHealth(db, config.store.path, createLogger('silent'));
    const admin = await startAdmin(config, db, createLogger('silent'));
    cleanups.push(async () => {
      await admin.stop();
      health.stop();
      db.close();
    });
    const healthz = async (): Promise<number> => (await fetch(`http://127.0.0.1:${admin.address.port}/healthz`)).status;
    const storeGauge = async (): Promise<string | undefined> =>
      /^rebound_store_healthy (\d)$/m.exec(await (await fetch(`http://127.0.0.1:${admin.address.port}/metrics`, { headers: { authorization: 'Bearer metrics-token-0123456789abcdef' } })).text())?.[1];
    const spool = new Spool(db);
    await spool.enqueue(spoolMessage('first@example.net'));
    expect(await healthz()).toBe(200);
    expect(await storeGauge()).toBe('1');

    // A real SQLITE_FULL: the file may not grow past the pages it has.
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages}`);
    await expect(spool.enqueue(spoolMessage('big@example.net', { raw: Buffer.alloc(1 << 20, 0x61) }))).rejects.toThrow(/full/);
    expect(spool.storeProblem()?.cause).toMatch(/writes to the store at .* fail: database or disk is full/);
    expect(await healthz()).toBe(503);
    expect(await storeGauge()).toBe('0');

    db.pragma(`max_page_count = ${pages * 1000}`);
    health.watch(50);
    await waitFor('the write probe to clear the failure', () => health.problem(), (problem) => problem === null);
    expect(await healthz()).toBe(200);
    expect(await storeGauge()).toBe('1');
  });
});
