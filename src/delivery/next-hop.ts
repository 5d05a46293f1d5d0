import { lookup as systemLookup, type Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Classification } from '../bounces/classifier.js';
import type { NextHopConfig } from '../config/schema.js';
import { localFailure } from './failure.js';
import { lookupMailHosts, type LookupFailureCause, type MailHost } from './mail-hosts.js';
import type { ResolverHealth } from './resolver-health.js';
import { OPPORTUNISTIC, type TlsRequirement } from './tls-policy.js';

/** Where a recipient domain's mail goes next, and how to talk to it. */
export interface NextHop {
  hosts: MailHost[];
  port: number;
  /** true for a configured route (smarthost or per-domain next hop), false for DNS MX. */
  routed: boolean;
  auth?: { user: string; pass: string };
  secure: boolean;
  requireTLS: boolean;
  verifyCertificate: boolean;
  /** A traffic shaping rule's messages per connection (shaper.ts); unset: delivery.maxMessagesPerConnection. */
  maxMessagesPerConnection?: number;
  /** The recipient domain's TLS policy (delivery.tls, MTA-STS), set by TlsPolicies before sending. */
  tls: TlsRequirement;
}

export type NextHopLookup = { nextHop: NextHop } | { failure: Classification };

interface ParsedRoute {
  host: string;
  port: number | undefined;
  auth?: { user: string; pass: string };
  secure: boolean;
  requireTLS: boolean;
  verifyCertificate: boolean;
}

function parseRoute(route: NextHopConfig): ParsedRoute {
  if (typeof route !== 'string') {
    const secure = route.secure ?? false;
    const requireTLS = route.requireTLS ?? false;
    return {
      host: route.host,
      port: route.port,
      ...(route.auth ? { auth: route.auth } : {}),
      secure,
      requireTLS,
      verifyCertificate: route.verifyCertificate ?? (secure || requireTLS),
    };
  }
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(route);
  const host = match?.[1] ?? match?.[2] ?? route;
  return { host, port: match?.[3] ? Number(match[3]) : undefined, secure: false, requireTLS: false, verifyCertificate: false };
}

/**
 * A route's host is the operator's own choice (a smarthost, an internal hub), so it is resolved
 * like any host name the system knows, /etc/hosts included, and never through MX.
 */
async function routeHostAddresses(host: string): Promise<string[] | Classification> {
  if (isIP(host)) return [host];
  try {
    return (await systemLookup(host, { all: true })).map((entry) => entry.address);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    return localFailure('temporary', 'routing-errors', `route host ${host} does not resolve (${code}); check delivery.routes`, null, '4.4.3');
  }
}

/**
 * Routes (`delivery.routes`) are looked up by the domain, then by each parent domain, then "*";
 * a route names a host that is connected to directly (its A/AAAA, no MX lookup), like Postfix's
 * transport map with [brackets].
 */
export class NextHopResolver {
  private readonly routes: Map<string, ParsedRoute>;
  /** Node's resolver caches nothing; without this every batch would ask DNS again. */
  private readonly cache = new Map<string, { expires: number; lookup: Promise<NextHopLookup> }>();

  constructor(
    routes: Record<string, NextHopConfig>,
    private readonly resolver: Resolver,
    private readonly defaultPort: number,
    private readonly cacheMs: number,
    /** Checks the resolver before a DNS failure counts (see resolver-health.ts); null: always believed. */
    private readonly resolverHealth: ResolverHealth | null = null,
  ) {
    this.routes = new Map(Object.entries(routes).map(([domain, route]) => [domain.toLowerCase(), parseRoute(route)]));
  }

  /**
   * The next hop for a domain, from the cache when a recent answer is there. Concurrent batches
   * for one domain share one lookup; a temporary failure is not kept, so the next batch asks again.
   */
  lookup(domain: string): Promise<NextHopLookup> {
    const now = Date.now();
    const cached = this.cache.get(domain);
    if (cached && cached.expires > now) return cached.lookup;
    const lookup = this.resolve(domain);
    this.cache.set(domain, { expires: now + this.cacheMs, lookup });
    void lookup.then((result) => {
      if ('failure' in result && result.failure.severity === 'temporary' && this.cache.get(domain)?.lookup === lookup) this.cache.delete(domain);
    });
    if (this.cache.size > 10_000) this.evictExpired(now);
    return lookup;
  }

  private evictExpired(now: number): void {
    for (const [domain, entry] of this.cache) if (entry.expires <= now) this.cache.delete(domain);
  }

  routeFor(domain: string): ParsedRoute | undefined {
    const labels = domain.toLowerCase().split('.');
    for (let i = 0; i < labels.length; i++) {
      const route = this.routes.get(labels.slice(i).join('.'));
      if (route) return route;
    }
    return this.routes.get('*');
  }

  /**
   * A DNS failure as it counts: one that rests on the resolver's word (NXDOMAIN, no records, no
   * answer) stands only if the canaries, asked after it, show the resolver can be believed;
   * otherwise it is a deferral that names the broken resolver. A null MX is the domain's own
   * record and stands.
   */
  private async believed(failure: Classification, cause: LookupFailureCause, answeredAt: number): Promise<Classification> {
    if (cause === 'null-mx' || !this.resolverHealth) return failure;
    if (await this.resolverHealth.believes(answeredAt)) return failure;
    return this.resolverHealth.deferral(failure);
  }

  private async resolve(domain: string): Promise<NextHopLookup> {
    const route = this.routeFor(domain);
    if (route) {
      const addresses = await routeHostAddresses(route.host);
      if (!Array.isArray(addresses)) return { failure: addresses };
      const { port, host, ...options } = route;
      return { nextHop: { hosts: [{ name: host, addresses }], port: port ?? this.defaultPort, routed: true, ...options, tls: OPPORTUNISTIC } };
    }
    const lookup = await lookupMailHosts(domain, this.resolver);
    if ('failure' in lookup) return { failure: await this.believed(lookup.failure, lookup.cause, performance.now()) };
    return {
      nextHop: { hosts: lookup.hosts, port: this.defaultPort, routed: false, secure: false, requireTLS: false, verifyCertificate: false, tls: OPPORTUNISTIC },
    };
  }
}
