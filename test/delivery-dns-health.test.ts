import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../src/config/load.js';
import { createResolver } from '../src/delivery/mail-hosts.js';
import { ResolverHealth } from '../src/delivery/resolver-health.js';
import { startRelay, type RunningRelay } from '../src/relay.js';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';
import { startDnsServer, type TestDnsServer, type ZoneEntry } from './support/dns-server.js';
import { startFakeMx, type FakeMx } from './support/fake-mx.js';
import { FAST_DELIVERY, logCapture, writeTestConfig, type ConfigOverride } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const execFileAsync = promisify(execFile);
const TOKEN = 'dns-health-test-token-0123456789';
const CANARIES = ['canary-one.test', 'canary-two.test'];

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface LoggedRelay {
  config: Config;
  configFile: string;
  relay: RunningRelay;
  db: Database;
  /** Every JSON log line the relay wrote. */
  logs: Array<Record<string, unknown>>;
}

/** A relay in this process whose log lines the test reads. */
async function loggedRelay(override: ConfigOverride): Promise<LoggedRelay> {
  const temp = makeTempDir();
  const configFile = writeTestConfig(temp.dir, { admin: { enabled: true, port: 0, tokens: [{ name: 'ops', token: TOKEN }] }, ...override });
  const config = loadConfig({ file: configFile, env: {} });
  const { logs, destination } = logCapture();
  const relay = await startRelay(config, pino({ level: 'info' }, destination));
  const db = new BetterSqlite3(config.store.path, { readonly: true });
  cleanups.push(async () => {
    await relay.stop();
    db.close();
    temp.remove();
  });
  return { config, configFile, relay, db, logs };
}

async function dnsServer(zone: Record<string, ZoneEntry>): Promise<TestDnsServer> {
  const dns = await startDnsServer(zone);
  cleanups.push(() => dns.close());
  return dns;
}

async function fakeMx(): Promise<FakeMx> {
  const mx = await startFakeMx();
  cleanups.push(() => mx.close());
  return mx;
}

/** Delivery through the test DNS server, to fake MX hosts on delivery.port; retried every 0.3 s for a minute. */
function dnsDelivery(dns: TestDnsServer, mxPort: number, extra: Record<string, unknown> = {}): ConfigOverride {
  return {
    delivery: {
      ...FAST_DELIVERY,
      port: mxPort,
      dns: { servers: [dns.address], timeoutMs: 300, cacheSeconds: 60, canaries: CANARIES, canaryRecheckSeconds: 0.2 },
      retry: { scheduleSeconds: [0.3], jitter: 0, maxAttempts: 200, maxAgeSeconds: 60 },
      ...extra,
    },
  };
}

async function submit(relay: RunningRelay, to: string[]): Promise<void> {
  await nodemailer
    .createTransport({ host: '127.0.0.1', port: relay.submission.port, ignoreTLS: true })
    .sendMail({ from: 'app@shop.example', to, subject: 'hello', text: 'Hello there.\r\n' });
}

interface RecipientRow {
  address: string;
  status: string;
  attempts: number;
  lastReply: string | null;
}

function recipients(db: Database): RecipientRow[] {
  return db.prepare('SELECT address, status, attempts, last_reply AS lastReply FROM recipients ORDER BY id').all() as RecipientRow[];
}

function count(db: Database, sql: string): number {
  return db.prepare(sql).pluck().get() as number;
}

async function admin(relay: RunningRelay, path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://127.0.0.1:${relay.admin?.port}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: response.status, text: await response.text() };
}

/** Asks /healthz until it answers 200 (bounded: 100 tries, 50 ms apart). */
async function healthzOk(relay: RunningRelay): Promise<{ status: number; text: string }> {
  let answer = await admin(relay, '/healthz');
  for (let i = 0; i < 100 && answer.status !== 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    answer = await admin(relay, '/healthz');
  }
  if (answer.status !== 200) throw new Error(`/healthz stayed ${answer.status}: ${answer.text}`);
  return answer;
}

function resolverGauge(metrics: string): string | undefined {
  return /^rebound_dns_resolver_healthy (\S+)$/m.exec(metrics)?.[1];
}

/** An answering zone: the canaries, and each domain with an MX on 127.0.0.1. */
function workingZone(domains: string[]): Record<string, ZoneEntry> {
  const zone: Record<string, ZoneEntry> = { 'canary-one.test': { MX: [{ preference: 10, exchange: 'mx.canary-one.test' }] }, 'mx.local.test': { A: ['127.0.0.1'] } };
  for (const domain of domains) zone[domain] = { MX: [{ preference: 10, exchange: 'mx.local.test' }] };
  return zone;
}

describe('a resolver that answers NXDOMAIN for every name', () => {
  it('defers mail to every domain, suppresses nothing, says why, and delivers once DNS answers again', async () => {
    const mx = await fakeMx();
    const dns = await dnsServer({}); // every name: NXDOMAIN
    const routedMx = await fakeMx();
    const { relay, db, logs, configFile } = await loggedRelay(dnsDelivery(dns, mx.port, { routes: { 'routed.test': `127.0.0.1:${routedMx.port}` } }));
    const domains = ['example.net', 'gmail.test', 'shop.test'];
    const to = domains.map((domain) => `user@${domain}`);
    await submit(relay, [...to, 'user@routed.test']);

    // Deferred again and again (each retry asks DNS anew), never bounced.
    const deferred = await waitFor(
      'every DNS recipient deferred twice',
      () => recipients(db),
      (rows) => to.every((address) => rows.some((r) => r.address === address && r.status === 'deferred' && r.attempts >= 2)),
    );
    for (const row of deferred.filter((r) => r.address !== 'user@routed.test')) {
      const domain = row.address.split('@')[1] as string;
      expect(row.lastReply).toMatch(
        new RegExp(
          `^4\\.4\\.3 DNS resolver looks broken since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(canaries canary-one\\.test, canary-two\\.test did not resolve via ${dns.address}\\); ` +
            `deferred, not bounced: ${domain.replace('.', '\\.')}: domain does not exist \\(NXDOMAIN\\)$`,
        ),
      );
    }
    // Routes do not ask DNS: their mail goes out as usual.
    expect(deferred.find((r) => r.address === 'user@routed.test')?.status).toBe('delivered');
    expect(count(db, 'SELECT count(*) FROM suppressions')).toBe(0);
    expect(count(db, `SELECT count(*) FROM events WHERE event = 'permanent_fail'`)).toBe(0);
    expect(db.prepare(`SELECT DISTINCT severity, category FROM events WHERE event = 'temporary_fail'`).all()).toEqual([{ severity: 'temporary', category: 'routing-errors' }]);

    // The log says it once (not once per check or per recipient), naming the resolver and the canaries.
    const brokenLogs = logs.filter((entry) => String(entry.msg).startsWith('DNS resolver looks broken'));
    expect(brokenLogs).toHaveLength(1);
    expect(brokenLogs[0]).toMatchObject({ level: 50, servers: [dns.address], canaries: ['canary-one.test: ENOTFOUND', 'canary-two.test: ENOTFOUND'] });

    const health = await admin(relay, '/healthz');
    expect(health.status).toBe(503);
    expect(JSON.parse(health.text)).toEqual({
      ok: false,
      error: expect.stringMatching(new RegExp(`^DNS resolver looks broken since .* \\(canaries canary-one\\.test, canary-two\\.test did not resolve via ${dns.address}\\); mail is deferred, not bounced$`)),
    });
    expect(resolverGauge((await admin(relay, '/metrics')).text)).toBe('0');

    // Why mail waits: in the queue listing of the CLI and of the API.
    const { stdout } = await execFileAsync(process.execPath, [CLI, 'queue', '--config', configFile], { cwd: PROJECT_ROOT });
    expect(stdout).toMatch(/<user@example\.net>\s+last: 4\.4\.3 DNS resolver looks broken since /);
    const queue = JSON.parse((await admin(relay, '/v1/queue')).text) as { oldest: Array<{ address: string; lastReply: string }> };
    expect(queue.oldest.find((entry) => entry.address === 'user@example.net')?.lastReply).toMatch(/^4\.4\.3 DNS resolver looks broken since .*; deferred, not bounced: /);

    // The resolver is fixed: the same mail goes out at its next retry, with nobody flushing it.
    dns.setZone(workingZone(domains));
    await waitFor('every recipient delivered', () => recipients(db), (rows) => rows.every((r) => r.status === 'delivered'));
    expect(mx.received.flatMap((message) => message.to).sort()).toEqual(to.sort());
    const healed = await waitFor('the resolver healthy again', () => logs, (entries) => entries.some((e) => String(e.msg).startsWith('DNS resolver answers the canaries again')));
    expect(healed.find((e) => String(e.msg).startsWith('DNS resolver answers the canaries again'))).toMatchObject({ level: 40, servers: [dns.address] });
    expect((await admin(relay, '/healthz')).status).toBe(200);
    expect(resolverGauge((await admin(relay, '/metrics')).text)).toBe('1');
    expect(count(db, 'SELECT count(*) FROM suppressions')).toBe(0);
  });

  it('recovers /healthz by itself, with no mail to send, when the canaries resolve again', async () => {
    const dns = await dnsServer({});
    // Retried only in an hour: nothing but the resolver check itself asks DNS meanwhile.
    const { relay, db } = await loggedRelay(dnsDelivery(dns, 25, { retry: { scheduleSeconds: [3600], jitter: 0, maxAttempts: 5, maxAgeSeconds: 86_400 } }));
    await submit(relay, ['user@example.net']);
    await waitFor('the recipient deferred', () => recipients(db), (rows) => rows[0]?.status === 'deferred');
    expect((await admin(relay, '/healthz')).status).toBe(503);
    dns.setZone({ 'canary-two.test': { A: ['192.0.2.1'] } }); // an A record is enough; example.net still NXDOMAIN
    const checksBefore = dns.queries.filter((q) => CANARIES.includes(q.name)).length;
    const health = await healthzOk(relay);
    expect(JSON.parse(health.text)).toEqual({ ok: true });
    expect(dns.queries.filter((q) => CANARIES.includes(q.name)).length).toBeGreaterThan(checksBefore);
    expect(dns.queries.filter((q) => q.name === 'example.net')).toHaveLength(1);
    expect(recipients(db)).toMatchObject([{ status: 'deferred', attempts: 1 }]);
  });

  it('bounces as before when delivery.dns.canaries is [] (the check is off)', async () => {
    const dns = await dnsServer({});
    const { relay, db } = await loggedRelay(dnsDelivery(dns, 25, { dns: { servers: [dns.address], timeoutMs: 300, cacheSeconds: 60, canaries: [] } }));
    await submit(relay, ['user@example.net']);
    const [row] = await waitFor('the recipient bounced', () => recipients(db), (rows) => rows[0]?.status === 'bounced');
    expect(row?.lastReply).toBe('5.1.2 example.net: domain does not exist (NXDOMAIN)');
    expect(count(db, 'SELECT count(*) FROM suppressions')).toBe(1);
    expect(dns.queries.filter((q) => CANARIES.includes(q.name))).toEqual([]);
  });
});

describe('a resolver that times out or fails on everything', () => {
  it('defers naming the broken resolver, and /healthz says so', async () => {
    const dns = await dnsServer({
      'canary-one.test': { silent: true },
      'canary-two.test': { rcode: 'SERVFAIL' },
      'example.net': { rcode: 'SERVFAIL' },
      'mx.slow.test': { silent: true },
      'slow.test': { MX: [{ preference: 10, exchange: 'mx.slow.test' }] },
    });
    const { relay, db } = await loggedRelay(dnsDelivery(dns, 25));
    await submit(relay, ['user@example.net', 'user@slow.test']);
    const rows = await waitFor('both deferred', () => recipients(db), (all) => all.length === 2 && all.every((r) => r.status === 'deferred'));
    expect(rows[0]?.lastReply).toMatch(/^4\.4\.3 DNS resolver looks broken since .*; deferred, not bounced: example\.net: DNS MX lookup failed \(ESERVFAIL\)$/);
    expect(rows[1]?.lastReply).toMatch(/^4\.4\.3 DNS resolver looks broken since .*; deferred, not bounced: slow\.test: DNS MX host \(mx\.slow\.test\) lookup failed \(ETIMEOUT\)$/);
    expect((await admin(relay, '/healthz')).status).toBe(503);
    expect(count(db, `SELECT count(*) FROM events WHERE event = 'permanent_fail'`)).toBe(0);
  });
});

describe('a healthy resolver', () => {
  it('bounces a real NXDOMAIN as bad-domain and suppresses it, as before; good mail never asks the canaries; a resolver broken a moment later is not believed', async () => {
    const mx = await fakeMx();
    const dns = await dnsServer(workingZone(['good.test']));
    const { relay, db } = await loggedRelay(dnsDelivery(dns, mx.port));
    await submit(relay, ['user@good.test']);
    await waitFor('delivered', () => recipients(db), (rows) => rows[0]?.status === 'delivered');
    expect(dns.queries.filter((q) => CANARIES.includes(q.name))).toEqual([]);

    await submit(relay, ['user@missing.test']);
    const rows = await waitFor('bounced', () => recipients(db), (all) => all[1]?.status === 'bounced');
    expect(rows[1]?.lastReply).toBe('5.1.2 missing.test: domain does not exist (NXDOMAIN)');
    expect(db.prepare(`SELECT category, severity FROM events WHERE event = 'permanent_fail'`).all()).toEqual([{ category: 'bad-domain', severity: 'permanent' }]);
    expect(db.prepare('SELECT address, type FROM suppressions').all()).toEqual([{ address: 'user@missing.test', type: 'bounces' }]);
    expect((await admin(relay, '/healthz')).status).toBe(200);
    expect(resolverGauge((await admin(relay, '/metrics')).text)).toBe('1');

    // The resolver breaks a moment after that good check: its first false NXDOMAIN is not believed.
    dns.setZone({});
    await submit(relay, ['user@fresh.test']);
    const after = await waitFor('deferred', () => recipients(db), (all) => all[2]?.status === 'deferred');
    expect(after[2]?.lastReply).toMatch(/^4\.4\.3 DNS resolver looks broken since .*; deferred, not bounced: fresh\.test: domain does not exist \(NXDOMAIN\)$/);
    expect(count(db, 'SELECT count(*) FROM suppressions')).toBe(1);
  });
});

describe('ResolverHealth', () => {
  const canaryChecks = (dns: TestDnsServer) => dns.queries.filter((q) => q.name === 'canary-one.test' && q.type === 'MX').length;

  it('shares one check among concurrent callers and keeps a failed one for recheckMs', async () => {
    const dns = await dnsServer({});
    const health = new ResolverHealth(createResolver([dns.address], 300), { canaries: CANARIES, recheckMs: 60_000 }, pino({ level: 'silent' }));
    cleanups.push(() => health.stop());
    const answeredAt = performance.now();
    expect(await Promise.all(Array.from({ length: 10 }, () => health.believes(answeredAt)))).toEqual(Array(10).fill(false));
    expect(await health.believes(performance.now())).toBe(false);
    // One check: MX and A of each canary, once.
    expect(dns.queries.map((q) => `${q.name} ${q.type}`).sort()).toEqual(['canary-one.test A', 'canary-one.test MX', 'canary-two.test A', 'canary-two.test MX']);
    expect(health.status()).toMatchObject({ healthy: false, servers: [dns.address], canaries: CANARIES, brokenSince: expect.any(String) });
  });

  it('believes an answer only after a check that started after it', async () => {
    const dns = await dnsServer(workingZone([]));
    const health = new ResolverHealth(createResolver([dns.address], 300), { canaries: CANARIES, recheckMs: 60_000 }, pino({ level: 'silent' }));
    cleanups.push(() => health.stop());
    const first = performance.now();
    const during = health.believes(first); // starts a check
    const second = performance.now(); // given while that check is under way: it needs the next one
    expect(await Promise.all([during, health.believes(second), health.believes(first)])).toEqual([true, true, true]);
    expect(canaryChecks(dns)).toBe(2);
    expect(await health.believes(second)).toBe(true); // judged already
    expect(canaryChecks(dns)).toBe(2);
    expect(await health.believes(performance.now())).toBe(true); // a later answer: checked again
    expect(canaryChecks(dns)).toBe(3);
    expect(health.status()).toMatchObject({ healthy: true, brokenSince: null, problem: null, checkedAt: expect.any(String) });
  });
});
