import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import nodemailer from 'nodemailer';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load.js';
import { startRelay, type RunningRelay } from '../src/relay.js';
import { startDnsServer, type TestDnsServer, type ZoneEntry } from './support/dns-server.js';
import { startFakeMx, type FakeMx, type FakeMxScript } from './support/fake-mx.js';
import { FAST_DELIVERY, logCapture, writeTestConfig } from './support/relay.js';
import { startStsPolicyServer, type StsPolicyServer } from './support/sts-policy-server.js';
import { makeTempDir } from './support/temp-dir.js';
import { makeTestCa, selfSignedFor, type TestCa } from './support/test-ca.js';
import { waitFor } from './support/wait-for.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let ca: TestCa;
/** A certificate from the test CA for each name the tests use. */
const certs = new Map<string, { key: string; cert: string }>();
beforeAll(async () => {
  ca = await makeTestCa();
  for (const name of ['mx1.sts.test', 'mx2.sts.test', 'mx.policy.test']) certs.set(name, await ca.issue([name]));
  certs.set('mta-sts', await ca.issue(['mta-sts.sts.test']));
}, 60_000);

function cert(name: string): { key: string; cert: string } {
  const pair = certs.get(name);
  if (!pair) throw new Error(`no test certificate for ${name}`);
  return pair;
}

interface Relay {
  relay: RunningRelay;
  db: Database;
  logs: Array<Record<string, unknown>>;
  /** Stops the relay, keeping its store for another start in `temp`. */
  stop(): Promise<void>;
  temp: ReturnType<typeof makeTempDir>;
}

async function startLoggedRelay(delivery: Record<string, unknown>, temp = makeTempDir()): Promise<Relay> {
  const caFile = join(temp.dir, 'ca.pem');
  writeFileSync(caFile, ca.cert);
  const deliveryTls = (delivery.tls ?? {}) as Record<string, unknown>;
  const file = writeTestConfig(temp.dir, { delivery: { ...FAST_DELIVERY, ...delivery, tls: { caFile, ...deliveryTls } } });
  const config = loadConfig({ file, env: {} });
  const { logs, destination } = logCapture();
  const relay = await startRelay(config, pino({ level: 'info' }, destination));
  const db = new BetterSqlite3(config.store.path, { readonly: true });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await relay.stop();
    db.close();
  };
  cleanups.push(async () => {
    await stop();
    temp.remove();
  });
  return { relay, db, logs, stop, temp };
}

async function mx(host: string, script: FakeMxScript = {}): Promise<FakeMx> {
  const server = await startFakeMx({ host, ...script });
  cleanups.push(() => server.close());
  return server;
}

async function dns(zone: Record<string, ZoneEntry>): Promise<TestDnsServer> {
  const server = await startDnsServer(zone);
  cleanups.push(() => server.close());
  return server;
}

async function submit(relay: RunningRelay, to: string[]): Promise<void> {
  await nodemailer
    .createTransport({ host: '127.0.0.1', port: relay.submission.port, ignoreTLS: true })
    .sendMail({ from: 'app@shop.example', to, subject: 'hello', text: 'Hello there.\r\n' });
}

interface RecipientRow {
  address: string;
  status: string;
  lastReply: string | null;
}

function recipients(db: Database): RecipientRow[] {
  return db.prepare('SELECT address, status, last_reply AS lastReply FROM recipients ORDER BY id').all() as RecipientRow[];
}

function attempts(db: Database): Array<{ outcome: string; category: string | null; text: string | null; mxHost: string | null }> {
  return db.prepare('SELECT outcome, category, text, mx_host AS mxHost FROM attempts ORDER BY id').all() as Array<{ outcome: string; category: string | null; text: string | null; mxHost: string | null }>;
}

function waitForStatus(db: Database, address: string, status: string, timeoutMs = 10_000): Promise<RecipientRow[]> {
  return waitFor(`${address} ${status}`, () => recipients(db), (rows) => rows.some((r) => r.address === address && r.status === status), timeoutMs);
}

function waitForAttempts(db: Database, n: number): ReturnType<typeof attempts> {
  return attempts(db).length >= n ? attempts(db) : [];
}

/** Deliveries by DNS: one MX name per fake host, all on one port (delivery.port). */
function dnsDelivery(server: TestDnsServer, port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    port,
    dns: { servers: [server.address], timeoutMs: 500, cacheSeconds: 0, canaries: [], canaryRecheckSeconds: 1 },
    retry: { scheduleSeconds: [0.2], jitter: 0, maxAttempts: 100, maxAgeSeconds: 60 },
    ...extra,
  };
}

describe('delivery.tls policies (none | may | encrypt | verify)', () => {
  it('encrypt never sends in plaintext: a host without STARTTLS is deferred with the policy named', async () => {
    const plain = await mx('127.0.0.1');
    const zone = await dns({ 'enc.test': { MX: [{ preference: 10, exchange: 'mx1.sts.test' }] }, 'mx1.sts.test': { A: ['127.0.0.1'] } });
    const { relay, db } = await startLoggedRelay(dnsDelivery(zone, plain.port, { tls: { policies: { 'enc.test': 'encrypt' } } }));
    await submit(relay, ['a@enc.test']);
    const tries = await waitFor('two attempts', () => waitForAttempts(db, 2), (rows) => rows.length >= 2);
    expect(plain.received).toHaveLength(0);
    expect(tries[0]).toMatchObject({ outcome: 'temporary_fail', category: 'bad-connection', mxHost: 'mx1.sts.test' });
    expect(tries[0]?.text).toContain('TLS required (encrypt, delivery.tls.policies["enc.test"])');
    expect(recipients(db)[0]?.status).not.toBe('delivered');
  });

  it('encrypt delivers over STARTTLS whatever the certificate; a subdomain follows its parent entry', async () => {
    const tlsMx = await mx('127.0.0.1', { tls: await selfSignedFor('somewhere.else') });
    const zone = await dns({ 'eu.enc.test': { MX: [{ preference: 10, exchange: 'mx1.sts.test' }] }, 'mx1.sts.test': { A: ['127.0.0.1'] } });
    const { relay, db } = await startLoggedRelay(dnsDelivery(zone, tlsMx.port, { tls: { policies: { 'enc.test': 'encrypt' } } }));
    await submit(relay, ['a@eu.enc.test']);
    await waitForStatus(db, 'a@eu.enc.test', 'delivered');
    expect(tlsMx.received.map((m) => m.secure)).toEqual([true]);
  });

  it('none never uses STARTTLS, even where it is offered', async () => {
    const tlsMx = await mx('127.0.0.1', { tls: cert('mx1.sts.test') });
    const zone = await dns({ 'plain.test': { MX: [{ preference: 10, exchange: 'mx1.sts.test' }] }, 'mx1.sts.test': { A: ['127.0.0.1'] } });
    const { relay, db } = await startLoggedRelay(dnsDelivery(zone, tlsMx.port, { tls: { policies: { 'plain.test': 'none' } } }));
    await submit(relay, ['a@plain.test']);
    await waitForStatus(db, 'a@plain.test', 'delivered');
    expect(tlsMx.received.map((m) => m.secure)).toEqual([false]);
  });

  it('verify accepts a certificate from the configured CA for the MX name', async () => {
    const good = await mx('127.0.0.1', { tls: cert('mx1.sts.test') });
    const zone = await dns({ 'ver.test': { MX: [{ preference: 10, exchange: 'mx1.sts.test' }] }, 'mx1.sts.test': { A: ['127.0.0.1'] } });
    const { relay, db } = await startLoggedRelay(dnsDelivery(zone, good.port, { tls: { default: 'verify' } }));
    await submit(relay, ['a@ver.test']);
    await waitForStatus(db, 'a@ver.test', 'delivered');
    expect(good.received.map((m) => m.secure)).toEqual([true]);
  });

  it.each([
    ['a certificate for another name', async () => cert('mx2.sts.test')],
    ['a certificate no trusted CA signed', async () => selfSignedFor('mx1.sts.test')],
  ])('verify refuses %s, never falls back to plaintext, and defers', async (_what, tls) => {
    const bad = await mx('127.0.0.1', { tls: await tls() });
    const zone = await dns({ 'ver.test': { MX: [{ preference: 10, exchange: 'mx1.sts.test' }] }, 'mx1.sts.test': { A: ['127.0.0.1'] } });
    const { relay, db } = await startLoggedRelay(dnsDelivery(zone, bad.port, { tls: { policies: { 'ver.test': 'verify' } } }));
    await submit(relay, ['a@ver.test']);
    const tries = await waitFor('two attempts', () => waitForAttempts(db, 2), (rows) => rows.length >= 2);
    expect(bad.received).toHaveLength(0);
    expect(tries[0]).toMatchObject({ outcome: 'temporary_fail', category: 'bad-connection' });
    expect(tries[0]?.text).toContain('TLS required (verify');
    expect(tries[0]?.text).toContain('no certificate valid for mx1.sts.test');
  });

  it('never reuses a kept-open connection opened under a weaker policy', async () => {
    // One host for both domains, its certificate for another name: fine for may, not for verify.
    const shared = await mx('127.0.0.1', { tls: cert('mx2.sts.test') });
    const zone = await dns({
      'may.test': { MX: [{ preference: 10, exchange: 'mx1.sts.test' }] },
      'ver.test': { MX: [{ preference: 10, exchange: 'mx1.sts.test' }] },
      'mx1.sts.test': { A: ['127.0.0.1'] },
    });
    const { relay, db } = await startLoggedRelay(dnsDelivery(zone, shared.port, { tls: { policies: { 'ver.test': 'verify' } } }));
    await submit(relay, ['a@may.test']);
    await waitForStatus(db, 'a@may.test', 'delivered');
    expect(shared.openConnections).toBe(1);
    await submit(relay, ['b@ver.test']);
    const tries = await waitFor('a refused attempt', () => attempts(db), (rows) => rows.some((r) => r.outcome === 'temporary_fail'));
    expect(tries.find((r) => r.outcome === 'temporary_fail')?.text).toContain('no certificate valid for mx1.sts.test');
    expect(shared.received.map((m) => m.to)).toEqual([['a@may.test']]);
  });

  it('refuses at start a caFile that is missing or holds no certificate', async () => {
    const temp = makeTempDir();
    cleanups.push(() => temp.remove());
    const missing = writeTestConfig(temp.dir, { delivery: { tls: { caFile: join(temp.dir, 'nope.pem') } } });
    expect(() => loadConfig({ file: missing, env: {} })).toThrow(ConfigError);
    expect(() => loadConfig({ file: missing, env: {} })).toThrow(/delivery\.tls\.caFile: cannot read/);
    const junk = join(temp.dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate');
    const config = loadConfig({ file: writeTestConfig(temp.dir, { delivery: { ...FAST_DELIVERY, tls: { caFile: junk } } }), env: {} });
    await expect(startRelay(config, pino({ level: 'silent' }))).rejects.toThrow(/holds no PEM certificate/);
  });

  it('refuses an unknown level and a malformed domain in the policies', () => {
    const temp = makeTempDir();
    cleanups.push(() => temp.remove());
    expect(() => loadConfig({ file: writeTestConfig(temp.dir, { delivery: { tls: { policies: { 'a.test': 'secure' } } } }), env: {} })).toThrow(/delivery\.tls\.policies/);
    expect(() => loadConfig({ file: writeTestConfig(temp.dir, { delivery: { tls: { policies: { 'a b.test': 'verify' } } } }), env: {} })).toThrow(/domain name/);
  });
});

describe('MTA-STS (RFC 8461)', () => {
  let policyServer: StsPolicyServer;

  async function stsSetup(policy: string | null, txtId = 'id1'): Promise<{ zone: TestDnsServer; good: FakeMx; rogue: FakeMx; zoneEntries: Record<string, ZoneEntry> }> {
    policyServer = await startStsPolicyServer(cert('mta-sts'));
    cleanups.push(() => policyServer.close());
    if (policy !== null) policyServer.set('mta-sts.sts.test', { body: policy });
    // mx1: listed, STARTTLS with a certificate for its name. mx2: preferred, not listed, plaintext.
    const good = await mx('127.0.0.2', { tls: cert('mx1.sts.test') });
    const rogue = await mx('127.0.0.3', { port: good.port });
    const zoneEntries: Record<string, ZoneEntry> = {
      'sts.test': { MX: [{ preference: 5, exchange: 'mx2.sts.test' }, { preference: 10, exchange: 'mx1.sts.test' }] },
      'mx1.sts.test': { A: ['127.0.0.2'] },
      'mx2.sts.test': { A: ['127.0.0.3'] },
      '_mta-sts.sts.test': { TXT: [[`v=STSv1; id=${txtId};`]] },
      'mta-sts.sts.test': { A: ['127.0.0.1'] },
    };
    const zone = await dns(zoneEntries);
    return { zone, good, rogue, zoneEntries };
  }

  function stsDelivery(zone: TestDnsServer, port: number, mtaSts: Record<string, unknown> = {}): Record<string, unknown> {
    return dnsDelivery(zone, port, { mtaSts: { enabled: true, httpsPort: policyServer.port, fetchTimeoutSeconds: 1, ...mtaSts } });
  }

  const ENFORCE = 'version: STSv1\r\nmode: enforce\r\nmx: *.sts.test\r\nmax_age: 86400\r\n';

  it('enforce delivers only to a listed MX, over verified TLS, and fetches the policy once for many messages', async () => {
    const { zone, good, rogue } = await stsSetup('version: STSv1\r\nmode: enforce\r\nmx: mx1.sts.test\r\nmax_age: 86400\r\n');
    const { relay, db, logs } = await startLoggedRelay(stsDelivery(zone, good.port));
    for (let k = 0; k < 3; k++) await submit(relay, [`m${k}@sts.test`]);
    for (let k = 0; k < 3; k++) await waitForStatus(db, `m${k}@sts.test`, 'delivered');
    expect(rogue.connections).toBe(0);
    expect(good.received.map((m) => m.secure)).toEqual([true, true, true]);
    expect(policyServer.fetches).toEqual(['mta-sts.sts.test']);
    expect(logs.some((l) => l.msg === 'MTA-STS enforce: skipping MX hosts the policy does not list')).toBe(true);
    expect(db.prepare('SELECT domain, policy_id, mode FROM mta_sts_policies').all()).toEqual([{ domain: 'sts.test', policy_id: 'id1', mode: 'enforce' }]);
  });

  it('enforce defers when no listed MX offers TLS valid for its name, and never sends in plaintext', async () => {
    const { zone, rogue, zoneEntries } = await stsSetup(ENFORCE);
    // Only the plaintext host is left, and the policy lists it (*.sts.test).
    zone.setZone({ ...zoneEntries, 'sts.test': { MX: [{ preference: 5, exchange: 'mx2.sts.test' }] } });
    const { relay, db } = await startLoggedRelay(stsDelivery(zone, rogue.port));
    await submit(relay, ['x@sts.test']);
    const tries = await waitFor('two attempts', () => waitForAttempts(db, 2), (rows) => rows.length >= 2);
    expect(rogue.received).toHaveLength(0);
    expect(tries[0]).toMatchObject({ outcome: 'temporary_fail', category: 'bad-connection' });
    expect(tries[0]?.text).toContain('TLS required (verify, MTA-STS enforce, id id1)');
  });

  it('enforce defers (routing-errors) when the policy lists none of the MX hosts', async () => {
    const { zone, good, rogue } = await stsSetup('version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n');
    const { relay, db } = await startLoggedRelay(stsDelivery(zone, good.port));
    await submit(relay, ['y@sts.test']);
    const rows = await waitFor('a deferral', () => recipients(db), (r) => r[0]?.lastReply?.includes('lists none of its MX hosts') ?? false);
    expect(rows[0]?.status).not.toBe('delivered');
    expect(good.connections + rogue.connections).toBe(0);
    expect(attempts(db)[0]).toMatchObject({ outcome: 'temporary_fail', category: 'routing-errors' });
  });

  it('testing mode delivers as before and logs what enforce would have refused', async () => {
    const { zone, good, rogue } = await stsSetup('version: STSv1\nmode: testing\nmx: mx1.sts.test\nmax_age: 86400\n');
    const { relay, db, logs } = await startLoggedRelay(stsDelivery(zone, good.port));
    await submit(relay, ['t@sts.test']);
    await waitForStatus(db, 't@sts.test', 'delivered');
    // The preferred, unlisted, plaintext host got it, as without MTA-STS.
    expect(rogue.received.map((m) => m.to)).toEqual([['t@sts.test']]);
    const line = logs.find((l) => l.msg === 'MTA-STS testing: enforce would refuse these MX hosts; delivering as usual');
    expect(line).toMatchObject({ domain: 'sts.test', unlisted: ['mx2.sts.test'] });
  });

  it('keeps the policy in the store: after a restart, with the policy server gone, enforce still holds', async () => {
    const { zone, good, rogue } = await stsSetup(ENFORCE.replace('*.sts.test', 'mx1.sts.test'));
    const first = await startLoggedRelay(stsDelivery(zone, good.port));
    await submit(first.relay, ['before@sts.test']);
    await waitForStatus(first.db, 'before@sts.test', 'delivered');
    await first.stop();
    await policyServer.close();
    const second = await startLoggedRelay(stsDelivery(zone, good.port), first.temp);
    await submit(second.relay, ['after@sts.test']);
    await waitForStatus(second.db, 'after@sts.test', 'delivered');
    expect(rogue.connections).toBe(0);
    expect(good.received.map((m) => m.to)).toEqual([['before@sts.test'], ['after@sts.test']]);
    expect(second.logs.some((l) => l.msg === 'MTA-STS policy fetch failed')).toBe(false);
  });

  it('enforces the same with the SMTP client on its own thread (stageThread off, sendThread on)', async () => {
    const { zone, good, rogue } = await stsSetup('version: STSv1\nmode: enforce\nmx: mx1.sts.test\nmax_age: 86400\n');
    const { relay, db } = await startLoggedRelay({ ...stsDelivery(zone, good.port), stageThread: false, sendThread: true });
    await submit(relay, ['thread@sts.test']);
    await waitForStatus(db, 'thread@sts.test', 'delivered');
    expect(rogue.connections).toBe(0);
    expect(good.received.map((m) => m.secure)).toEqual([true]);
  });

  it('fetches again when the TXT id changes, and uses the new policy', async () => {
    const { zone, good, rogue, zoneEntries } = await stsSetup(ENFORCE.replace('*.sts.test', 'mx1.sts.test'));
    const { relay, db } = await startLoggedRelay(stsDelivery(zone, good.port));
    await submit(relay, ['one@sts.test']);
    await waitForStatus(db, 'one@sts.test', 'delivered');
    expect(good.received).toHaveLength(1);
    policyServer.set('mta-sts.sts.test', { body: 'version: STSv1\nmode: testing\nmx: mx1.sts.test\nmax_age: 86400\n' });
    zone.setZone({ ...zoneEntries, '_mta-sts.sts.test': { TXT: [['v=STSv1; id=id2']] } });
    await submit(relay, ['two@sts.test']);
    await waitForStatus(db, 'two@sts.test', 'delivered');
    expect(policyServer.fetches).toEqual(['mta-sts.sts.test', 'mta-sts.sts.test']);
    // Testing mode now: the preferred unlisted host takes it.
    expect(rogue.received.map((m) => m.to)).toEqual([['two@sts.test']]);
    expect(db.prepare('SELECT policy_id, mode FROM mta_sts_policies').get()).toEqual({ policy_id: 'id2', mode: 'testing' });
  });

  it('keeps the cached policy when a fetch for a new id fails (an attacker blocking the fetch gains nothing)', async () => {
    const { zone, good, rogue, zoneEntries } = await stsSetup(ENFORCE.replace('*.sts.test', 'mx1.sts.test'));
    const { relay, db, logs } = await startLoggedRelay(stsDelivery(zone, good.port));
    await submit(relay, ['one@sts.test']);
    await waitForStatus(db, 'one@sts.test', 'delivered');
    policyServer.set('mta-sts.sts.test', { body: 'gone', status: 404 });
    zone.setZone({ ...zoneEntries, '_mta-sts.sts.test': { TXT: [['v=STSv1; id=id2']] } });
    await submit(relay, ['two@sts.test']);
    await waitForStatus(db, 'two@sts.test', 'delivered');
    expect(rogue.connections).toBe(0);
    expect(good.received).toHaveLength(2);
    expect(logs.find((l) => l.msg === 'MTA-STS policy fetch failed')).toMatchObject({ domain: 'sts.test', usingCached: true });
  });

  it.each([
    ['a malformed policy', { body: 'version: STSv1\nmode: enforce\nmax_age: 86400\n' }, 'MTA-STS policy is malformed; treated as no policy'],
    ['an oversized policy', { body: Buffer.alloc(70 * 1024, 'a') }, 'MTA-STS policy fetch failed'],
    ['a policy served as HTML', { body: ENFORCE, contentType: 'text/html' }, 'MTA-STS policy fetch failed'],
    ['a redirect', { body: '', status: 302, location: 'https://elsewhere.test/policy' }, 'MTA-STS policy fetch failed'],
    ['a fetch that hangs', 'hang' as const, 'MTA-STS policy fetch failed'],
  ])('treats %s as no policy, with a log line', async (_what, answer, message) => {
    const { zone, good, rogue } = await stsSetup(null);
    policyServer.set('mta-sts.sts.test', answer);
    const { relay, db, logs } = await startLoggedRelay(stsDelivery(zone, good.port, { fetchTimeoutSeconds: 0.5 }));
    await submit(relay, ['n@sts.test']);
    await waitForStatus(db, 'n@sts.test', 'delivered');
    await submit(relay, ['n2@sts.test']);
    await waitForStatus(db, 'n2@sts.test', 'delivered');
    // No policy: delivered as today, to the preferred host; the bad policy is not fetched again for the next message.
    expect(rogue.received).toHaveLength(2);
    expect(policyServer.fetches).toEqual(['mta-sts.sts.test']);
    expect(logs.some((l) => l.msg === message && l.domain === 'sts.test')).toBe(true);
    expect(db.prepare('SELECT count(*) FROM mta_sts_policies').pluck().get()).toBe(0);
  });

  it('refuses a policy server whose certificate is not valid for mta-sts.DOMAIN', async () => {
    policyServer = await startStsPolicyServer(cert('mx1.sts.test'));
    cleanups.push(() => policyServer.close());
    policyServer.set('mta-sts.sts.test', { body: ENFORCE });
    const rogue = await mx('127.0.0.3');
    const zone = await dns({
      'sts.test': { MX: [{ preference: 5, exchange: 'mx2.sts.test' }] },
      'mx2.sts.test': { A: ['127.0.0.3'] },
      '_mta-sts.sts.test': { TXT: [['v=STSv1; id=id1;']] },
      'mta-sts.sts.test': { A: ['127.0.0.1'] },
    });
    const { relay, db, logs } = await startLoggedRelay(stsDelivery(zone, rogue.port));
    await submit(relay, ['c@sts.test']);
    await waitForStatus(db, 'c@sts.test', 'delivered');
    expect(logs.find((l) => l.msg === 'MTA-STS policy fetch failed')?.err).toMatch(/mta-sts\.sts\.test/);
  });

  it('an explicit delivery.tls.policies entry wins over the domain\'s MTA-STS policy', async () => {
    const { zone, good, rogue } = await stsSetup(ENFORCE.replace('*.sts.test', 'mx1.sts.test'));
    const { relay, db } = await startLoggedRelay({ ...stsDelivery(zone, good.port), tls: { policies: { 'sts.test': 'may' } } });
    await submit(relay, ['o@sts.test']);
    await waitForStatus(db, 'o@sts.test', 'delivered');
    expect(rogue.received).toHaveLength(1);
    expect(policyServer.fetches).toEqual([]);
  });
});
