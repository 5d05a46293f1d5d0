import { chmodSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPostgresBinDir, postgresAvailable, startPostgres, type TestPostgres } from './support/postgres.js';
import { makeTempDir } from './support/temp-dir.js';

/** Fake server programs (empty executables) in `dir`, for the lookup only. */
function fakePrograms(dir: string, names = ['initdb', 'pg_ctl', 'postgres']): void {
  mkdirSync(dir, { recursive: true });
  for (const name of names) {
    writeFileSync(join(dir, name), '#!/bin/sh\n');
    chmodSync(join(dir, name), 0o755);
  }
}

describe('finding PostgreSQL', () => {
  it('is available on this machine (.ci/run installs it)', () => {
    expect(postgresAvailable()).toBe(true);
  });

  it("takes the newest of Debian's /usr/lib/postgresql/<version>/bin when PATH has none", () => {
    const temp = makeTempDir();
    try {
      for (const version of ['9.6', '13', '15']) fakePrograms(join(temp.dir, version, 'bin'));
      fakePrograms(join(temp.dir, '16', 'bin'), ['psql']); // a client-only install has no server
      mkdirSync(join(temp.dir, 'not-a-version', 'bin'), { recursive: true });
      expect(findPostgresBinDir({ path: '', debianRoot: temp.dir })).toBe(join(temp.dir, '15', 'bin'));
    } finally {
      temp.remove();
    }
  });

  it("follows initdb on PATH to the directory that holds pg_ctl and postgres beside it", () => {
    const temp = makeTempDir();
    try {
      fakePrograms(join(temp.dir, 'real'));
      mkdirSync(join(temp.dir, 'onpath'));
      symlinkSync(join(temp.dir, 'real', 'initdb'), join(temp.dir, 'onpath', 'initdb'));
      expect(findPostgresBinDir({ path: join(temp.dir, 'onpath'), debianRoot: join(temp.dir, 'none') })).toBe(join(temp.dir, 'real'));
    } finally {
      temp.remove();
    }
  });

  it("says to install Debian's postgresql package when there is none", async () => {
    const temp = makeTempDir();
    try {
      await expect(startPostgres({ path: temp.dir, debianRoot: join(temp.dir, 'none') })).rejects.toThrow(
        "install Debian's postgresql package (.ci/run does)",
      );
    } finally {
      temp.remove();
    }
  });
});

// Proves on CI that the shared store's tests (issue 14) get a real PostgreSQL: a cluster of its
// own, two clients that talk through LISTEN/NOTIFY, and a server that goes down and comes back.
describe('test PostgreSQL cluster', () => {
  let cluster: TestPostgres;
  const clients: pg.Client[] = [];

  async function connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: cluster.url, connectionTimeoutMillis: 5_000 });
    // A server stopped under a connected client ends that connection with an 'error' event.
    client.on('error', () => undefined);
    await client.connect();
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    cluster = await startPostgres();
  });

  afterAll(async () => {
    for (const client of clients) await client.end().catch(() => undefined);
    await cluster?.stop();
  });

  it('listens on 127.0.0.1 only, as a superuser, with UTF8', async () => {
    const url = new URL(cluster.url);
    expect(url.hostname).toBe('127.0.0.1');
    expect(Number(url.port)).toBe(cluster.port);
    const client = await connect();
    const { rows } = await client.query<{ listen: string; encoding: string; superuser: string; fsync: string }>(
      "SELECT current_setting('listen_addresses') AS listen, pg_encoding_to_char(encoding) AS encoding, current_setting('is_superuser') AS superuser, current_setting('fsync') AS fsync FROM pg_database WHERE datname = current_database()",
    );
    expect(rows[0]).toEqual({ listen: '127.0.0.1', encoding: 'UTF8', superuser: 'on', fsync: 'off' });
  });

  it('refuses a user the cluster does not know', async () => {
    const url = new URL(cluster.url);
    url.username = 'intruder';
    const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5_000 });
    await expect(client.connect()).rejects.toThrow(/role "intruder" does not exist/);
    await client.end().catch(() => undefined);
  });

  it('carries a NOTIFY from one client to another that LISTENs, within a second', async () => {
    const listener = await connect();
    const notifier = await connect();
    await listener.query('LISTEN rebound_test');
    const received = new Promise<pg.Notification>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no notification within 1 s')), 1_000);
      listener.once('notification', (message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
    await notifier.query("SELECT pg_notify('rebound_test', 'recipient 42 delivered')");
    const message = await received;
    expect(message.channel).toBe('rebound_test');
    expect(message.payload).toBe('recipient 42 delivered');
  });

  it('keeps its data when the server is stopped and started again', async () => {
    const writer = await connect();
    await writer.query('CREATE TABLE kept (id integer PRIMARY KEY, note text NOT NULL)');
    await writer.query("INSERT INTO kept VALUES (1, 'before the stop')");

    await cluster.stopServer();
    const refused = new pg.Client({ connectionString: cluster.url, connectionTimeoutMillis: 2_000 });
    await expect(refused.connect()).rejects.toThrow(/ECONNREFUSED/);
    await refused.end().catch(() => undefined);

    await cluster.startServer();
    const reader = await connect();
    const { rows } = await reader.query('SELECT id, note FROM kept');
    expect(rows).toEqual([{ id: 1, note: 'before the stop' }]);
  });

  it('stop removes the cluster and is safe to call twice', async () => {
    const other = await startPostgres();
    expect(other.port).not.toBe(cluster.port);
    const dataDir = await (async () => {
      const client = new pg.Client({ connectionString: other.url });
      await client.connect();
      const { rows } = await client.query<{ dir: string }>("SELECT current_setting('data_directory') AS dir");
      await client.end();
      return rows[0]!.dir;
    })();
    expect(existsSync(dataDir)).toBe(true);
    await other.stop();
    await other.stop();
    expect(existsSync(dataDir)).toBe(false);
    const client = new pg.Client({ connectionString: other.url, connectionTimeoutMillis: 2_000 });
    await expect(client.connect()).rejects.toThrow(/ECONNREFUSED/);
    await client.end().catch(() => undefined);
  });
});
