import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResolver, lookupMailHosts } from '../src/delivery/mail-hosts.js';
import { NextHopResolver } from '../src/delivery/next-hop.js';
import { ResolverHealth } from '../src/delivery/resolver-health.js';
import { createLogger } from '../src/logger.js';
import { startDnsServer, type TestDnsServer } from './support/dns-server.js';

describe('MX lookup against a real DNS server on 127.0.0.1', () => {
  let dns: TestDnsServer;
  beforeAll(async () => {
    dns = await startDnsServer({
      'mx.test': { MX: [{ preference: 20, exchange: 'backup.mx.test' }, { preference: 10, exchange: 'a.mx.test' }, { preference: 10, exchange: 'b.mx.test' }] },
      'a.mx.test': { A: ['127.0.0.11'] },
      'b.mx.test': { A: ['127.0.0.12'], AAAA: ['::1'] },
      'backup.mx.test': { A: ['127.0.0.13'] },
      'a-only.test': { A: ['127.0.0.21'] },
      'null-mx.test': { MX: [{ preference: 0, exchange: '.' }], A: ['127.0.0.31'] },
      'nothing.test': {},
      'servfail.test': { rcode: 'SERVFAIL' },
      'slow.test': { silent: true },
      'dangling.test': { MX: [{ preference: 10, exchange: 'gone.dangling.test' }] },
    });
  });
  afterAll(() => dns.close());

  const resolver = () => createResolver([dns.address], 300);

  it('orders MX hosts by preference, shuffling equal ones, with their addresses', async () => {
    const seenFirst = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const result = await lookupMailHosts('mx.test', resolver());
      if (!('hosts' in result)) throw new Error(JSON.stringify(result));
      expect(result.hosts.map((h) => h.name).slice(1)).toContain(result.hosts[2]?.name);
      expect(result.hosts[2]).toEqual({ name: 'backup.mx.test', addresses: ['127.0.0.13'] });
      expect(new Set(result.hosts.slice(0, 2).map((h) => h.name))).toEqual(new Set(['a.mx.test', 'b.mx.test']));
      seenFirst.add(result.hosts[0]?.name ?? '');
    }
    expect(seenFirst).toEqual(new Set(['a.mx.test', 'b.mx.test']));
    const b = await lookupMailHosts('mx.test', resolver());
    expect('hosts' in b && b.hosts.find((h) => h.name === 'b.mx.test')?.addresses).toEqual(['127.0.0.12', '::1']);
  });

  it('falls back to A/AAAA when there is no MX (RFC 5321 5.1)', async () => {
    expect(await lookupMailHosts('a-only.test', resolver())).toEqual({ hosts: [{ name: 'a-only.test', addresses: ['127.0.0.21'] }] });
  });

  it('treats a null MX as permanent bad-domain 556 5.1.10, without A fallback (RFC 7505)', async () => {
    expect(await lookupMailHosts('null-mx.test', resolver())).toMatchObject({
      failure: { severity: 'permanent', type: 'hard', category: 'bad-domain', code: 556, enhancedCode: '5.1.10' },
      cause: 'null-mx',
    });
  });

  it('treats NXDOMAIN, and a name with neither MX nor address, as permanent bad-domain', async () => {
    expect(await lookupMailHosts('no-such-domain.test', resolver())).toMatchObject({ failure: { severity: 'permanent', category: 'bad-domain' }, cause: 'absent' });
    expect(await lookupMailHosts('nothing.test', resolver())).toMatchObject({ failure: { severity: 'permanent', category: 'bad-domain' }, cause: 'absent' });
  });

  it('treats SERVFAIL and a timeout as temporary', async () => {
    expect(await lookupMailHosts('servfail.test', resolver())).toMatchObject({ failure: { severity: 'temporary', category: 'routing-errors' }, cause: 'unanswered' });
    expect(await lookupMailHosts('slow.test', resolver())).toMatchObject({
      failure: { severity: 'temporary', category: 'routing-errors', text: expect.stringMatching(/ETIMEOUT/) },
    });
  });

  it('fails permanently when every MX name is NXDOMAIN', async () => {
    expect(await lookupMailHosts('dangling.test', resolver())).toMatchObject({ failure: { severity: 'permanent', category: 'bad-domain' } });
  });

  it('uses a route before DNS: exact domain, then parent domains, then "*"', async () => {
    const hops = new NextHopResolver(
      { 'sub.routed.test': '127.0.0.41:2600', 'routed.test': { host: '127.0.0.42', port: 2601, auth: { user: 'u', pass: 'p' }, requireTLS: true } },
      resolver(),
      25,
      60_000,
    );
    expect(await hops.lookup('sub.routed.test')).toMatchObject({ nextHop: { hosts: [{ name: '127.0.0.41', addresses: ['127.0.0.41'] }], port: 2600, routed: true } });
    expect(await hops.lookup('deep.other.routed.test')).toMatchObject({
      nextHop: { hosts: [{ addresses: ['127.0.0.42'] }], port: 2601, auth: { user: 'u', pass: 'p' }, requireTLS: true, verifyCertificate: true },
    });
    expect(await hops.lookup('a-only.test')).toMatchObject({ nextHop: { hosts: [{ addresses: ['127.0.0.21'] }], port: 25, routed: false } });
    const smarthost = new NextHopResolver({ '*': 'localhost:2700' }, resolver(), 25, 60_000);
    expect(await smarthost.lookup('anything.example')).toMatchObject({ nextHop: { hosts: [{ name: 'localhost' }], port: 2700 } });
  });

  it('with canaries that do not resolve, defers what rests on the resolver but keeps a null MX and routes', async () => {
    const health = new ResolverHealth(resolver(), { canaries: ['absent-canary.test'], recheckMs: 60_000 }, createLogger('silent'));
    const hops = new NextHopResolver({ 'routed.test': '127.0.0.41:2600' }, resolver(), 25, 60_000, health);
    try {
      for (const domain of ['no-such-domain.test', 'nothing.test', 'dangling.test', 'servfail.test']) {
        expect(await hops.lookup(domain)).toMatchObject({
          failure: { severity: 'temporary', category: 'routing-errors', enhancedCode: '4.4.3', text: expect.stringMatching(/^DNS resolver looks broken since .*; deferred, not bounced: /) },
        });
      }
      expect(await hops.lookup('null-mx.test')).toMatchObject({ failure: { severity: 'permanent', code: 556 } });
      expect(await hops.lookup('routed.test')).toMatchObject({ nextHop: { routed: true, port: 2600 } });
      expect(await hops.lookup('a-only.test')).toMatchObject({ nextHop: { hosts: [{ addresses: ['127.0.0.21'] }] } });
    } finally {
      health.stop();
    }
  });

  it('caches answers, shares one lookup among concurrent callers, and forgets temporary failures', async () => {
    const hops = new NextHopResolver({}, resolver(), 25, 60_000);
    const before = dns.queries.filter((q) => q.name === 'a-only.test').length;
    await Promise.all(Array.from({ length: 10 }, () => hops.lookup('a-only.test')));
    await hops.lookup('a-only.test');
    expect(dns.queries.filter((q) => q.name === 'a-only.test').length - before).toBe(3); // MX, A, AAAA once
    const servfailBefore = dns.queries.filter((q) => q.name === 'servfail.test').length;
    await hops.lookup('servfail.test');
    await hops.lookup('servfail.test');
    expect(dns.queries.filter((q) => q.name === 'servfail.test').length - servfailBefore).toBeGreaterThanOrEqual(2);
  });
});
