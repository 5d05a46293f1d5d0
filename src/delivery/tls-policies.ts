import type { Database } from 'better-sqlite3';
import type { Resolver } from 'node:dns/promises';
import type { DeliveryConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { localFailure } from './failure.js';
import { StsPolicyCache, type CachedStsPolicy } from './mta-sts/policy-cache.js';
import { fetchStsPolicy, type PolicyFetchSettings } from './mta-sts/policy-fetch.js';
import { mxMatchesPolicy, parseStsPolicy, stsRecordId } from './mta-sts/policy-text.js';
import type { NextHop, NextHopLookup } from './next-hop.js';
import { configuredTlsLevel, policyMap, stricter, trustedCertificates, type TlsLevel } from './tls-policy.js';

/** After a failed or malformed fetch, the same policy id is fetched again no sooner than this. */
const FETCH_RETRY_MS = 5 * 60_000;

/**
 * The TLS a recipient domain's mail must get: delivery.tls.policies (an entry there is the
 * operator's word and wins), else the default raised by the domain's MTA-STS policy. An MTA-STS
 * policy in enforce mode also narrows the MX hosts to those it lists.
 */
export class TlsPolicies {
  private readonly policies: Map<string, TlsLevel>;
  private readonly cache: StsPolicyCache;
  private readonly fetchSettings: PolicyFetchSettings;
  /** TXT answers kept as long as MX answers (delivery.dns.cacheSeconds), so each batch does not ask again. */
  private readonly recordIds = new Map<string, { expires: number; id: Promise<string | null> }>();
  /** One fetch per domain at a time; concurrent batches wait for the same one. */
  private readonly fetches = new Map<string, Promise<CachedStsPolicy | null>>();
  /** Domains whose last fetch failed, and the id it was for: not fetched again for that id before `until`. */
  private readonly failedFetches = new Map<string, { id: string; until: number }>();

  constructor(
    private readonly settings: DeliveryConfig,
    db: Database,
    private readonly resolver: Resolver,
    private readonly log: Logger,
  ) {
    this.policies = policyMap(settings.tls.policies);
    this.cache = new StsPolicyCache(db);
    this.fetchSettings = { resolver, port: settings.mtaSts.httpsPort, timeoutMs: settings.mtaSts.fetchTimeoutSeconds * 1000, ca: trustedCertificates(settings.tls.caFile) };
  }

  async apply(domain: string, nextHop: NextHop): Promise<NextHopLookup> {
    const configured = configuredTlsLevel(domain, this.policies, this.settings.tls.default);
    const explicit = configured.source !== 'delivery.tls.default';
    // MTA-STS speaks of MX hosts; a configured route is the operator's own next hop.
    if (explicit || nextHop.routed || !this.settings.mtaSts.enabled) return { nextHop: { ...nextHop, tls: configured } };
    const policy = await this.stsPolicy(domain.toLowerCase());
    if (!policy || policy.mode === 'none') return { nextHop: { ...nextHop, tls: configured } };
    const listed = nextHop.hosts.filter((host) => mxMatchesPolicy(host.name, policy.mx));
    const unlisted = nextHop.hosts.filter((host) => !listed.includes(host)).map((host) => host.name);
    if (policy.mode === 'testing') {
      if (unlisted.length > 0) this.log.warn({ domain, policyId: policy.id, unlisted, mx: policy.mx }, 'MTA-STS testing: enforce would refuse these MX hosts; delivering as usual');
      return { nextHop: { ...nextHop, tls: configured } };
    }
    if (listed.length === 0) {
      const text = `MTA-STS policy of ${domain} (enforce, id ${policy.id}) lists none of its MX hosts (${unlisted.join(', ')}); policy mx: ${policy.mx.join(', ')}`;
      this.log.warn({ domain, policyId: policy.id, unlisted, mx: policy.mx }, 'MTA-STS enforce: no MX host matches the policy; deferred');
      return { failure: localFailure('temporary', 'routing-errors', text, null, '4.7.5') };
    }
    if (unlisted.length > 0) this.log.warn({ domain, policyId: policy.id, unlisted }, 'MTA-STS enforce: skipping MX hosts the policy does not list');
    const tls = stricter(configured, { level: 'verify', source: `MTA-STS enforce, id ${policy.id}` });
    return { nextHop: { ...nextHop, hosts: listed, tls } };
  }

  /**
   * RFC 8461 5.1: a cached policy whose id matches the TXT record is used as is; a new id (or no
   * cached policy) means a fetch; a failed fetch, or no TXT answer, falls back to the cached
   * policy until its max_age ends. A malformed policy counts as none (3.3), logged.
   */
  private async stsPolicy(domain: string): Promise<CachedStsPolicy | null> {
    const id = await this.recordId(domain);
    // Read after the wait: a fetch that ended meanwhile has already stored its policy.
    const cached = this.cache.get(domain);
    if (id === null || cached?.id === id) return cached;
    // A policy host that is down (or blocked) is not asked again by every batch.
    const failed = this.failedFetches.get(domain);
    if (failed && failed.id === id && failed.until > Date.now()) return cached;
    let fetch = this.fetches.get(domain);
    if (!fetch) {
      fetch = this.fetchAndKeep(domain, id, cached).finally(() => this.fetches.delete(domain));
      this.fetches.set(domain, fetch);
    }
    return fetch;
  }

  private async fetchAndKeep(domain: string, id: string, cached: CachedStsPolicy | null): Promise<CachedStsPolicy | null> {
    let body: string;
    try {
      body = await fetchStsPolicy(domain, this.fetchSettings);
    } catch (error) {
      this.log.warn({ domain, policyId: id, err: (error as Error).message, usingCached: cached !== null }, 'MTA-STS policy fetch failed');
      this.rememberFailure(domain, id);
      return cached;
    }
    const policy = parseStsPolicy(body);
    if (typeof policy === 'string') {
      this.log.warn({ domain, policyId: id, reason: policy, usingCached: cached !== null }, 'MTA-STS policy is malformed; treated as no policy');
      this.rememberFailure(domain, id);
      return cached;
    }
    this.log.info({ domain, policyId: id, mode: policy.mode, mx: policy.mx, maxAge: policy.maxAgeSeconds }, 'MTA-STS policy fetched');
    this.failedFetches.delete(domain);
    return this.cache.put(domain, id, policy);
  }

  private rememberFailure(domain: string, id: string): void {
    const now = Date.now();
    this.failedFetches.set(domain, { id, until: now + FETCH_RETRY_MS });
    if (this.failedFetches.size > 10_000) for (const [name, entry] of this.failedFetches) if (entry.until <= now) this.failedFetches.delete(name);
  }

  private recordId(domain: string): Promise<string | null> {
    const now = Date.now();
    const kept = this.recordIds.get(domain);
    if (kept && kept.expires > now) return kept.id;
    const id = this.resolver.resolveTxt(`_mta-sts.${domain}`).then(stsRecordId, () => null);
    this.recordIds.set(domain, { expires: now + this.settings.dns.cacheSeconds * 1000, id });
    if (this.recordIds.size > 10_000) for (const [name, entry] of this.recordIds) if (entry.expires <= now) this.recordIds.delete(name);
    return id;
  }
}
