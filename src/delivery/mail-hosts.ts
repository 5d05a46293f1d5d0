import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Classification } from '../bounces/classifier.js';
import { localFailure } from './failure.js';

/** A host to try, in order, with the addresses it resolved to. */
export interface MailHost {
  name: string;
  addresses: string[];
}

/**
 * Why a lookup failed. `absent`: the resolver said the domain or its records do not exist
 * (NXDOMAIN, or no MX and no A/AAAA), which is only as true as the resolver is honest;
 * `null-mx`: the domain published a record refusing mail; `unanswered`: no answer came
 * (SERVFAIL, a timeout, a refused query).
 */
export type LookupFailureCause = 'absent' | 'null-mx' | 'unanswered';

export type MailHostLookup = { hosts: MailHost[] } | { failure: Classification; cause: LookupFailureCause };

export function createResolver(servers: readonly string[], timeoutMs: number): Resolver {
  // tries: 2 so one lost UDP packet is not a deferral; the timeout is per try.
  const resolver = new Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers.length > 0) resolver.setServers([...servers]);
  return resolver;
}

type DnsError = Error & { code?: string };

/** NXDOMAIN: the name does not exist, a permanent answer. */
const NOT_FOUND = new Set(['ENOTFOUND']);
/** The name exists but has no record of that type. */
const NO_DATA = new Set(['ENODATA']);

function dnsFailure(domain: string, what: string, error: DnsError): { failure: Classification; cause: LookupFailureCause } {
  if (error.code !== undefined && NOT_FOUND.has(error.code)) {
    return { failure: localFailure('permanent', 'bad-domain', `${domain}: domain does not exist (NXDOMAIN)`, null, '5.1.2'), cause: 'absent' };
  }
  // SERVFAIL, timeouts, refused queries: the answer may come later.
  return { failure: localFailure('temporary', 'routing-errors', `${domain}: DNS ${what} lookup failed (${error.code ?? error.message})`, null, '4.4.3'), cause: 'unanswered' };
}

async function addressesOf(name: string, resolver: Resolver): Promise<string[] | DnsError> {
  if (isIP(name)) return [name];
  const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
  const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
  if (addresses.length > 0) return addresses;
  const errors = [v4, v6].flatMap((result) => (result.status === 'rejected' ? [result.reason as DnsError] : []));
  // Report the informative error: a SERVFAIL outranks "no AAAA record".
  return errors.find((error) => !NO_DATA.has(error.code ?? '')) ?? errors[0] ?? Object.assign(new Error('no address'), { code: 'ENODATA' });
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/**
 * The hosts that receive mail for `domain`, per RFC 5321 5.1: MX records by preference, random
 * among equal preference; no MX record means the domain's own A/AAAA ("implicit MX"); a null MX
 * (RFC 7505, "0 .") means the domain accepts no mail, with no A fallback.
 */
export async function lookupMailHosts(domain: string, resolver: Resolver): Promise<MailHostLookup> {
  let records: Array<{ exchange: string; priority: number }>;
  try {
    records = await resolver.resolveMx(domain);
  } catch (error) {
    const dnsError = error as DnsError;
    if (!NO_DATA.has(dnsError.code ?? '')) return dnsFailure(domain, 'MX', dnsError);
    records = [];
  }

  if (records.some((record) => record.exchange === '' || record.exchange === '.')) {
    return { failure: localFailure('permanent', 'bad-domain', `${domain} accepts no mail (null MX, RFC 7505)`, 556, '5.1.10'), cause: 'null-mx' };
  }

  if (records.length === 0) {
    const addresses = await addressesOf(domain, resolver);
    if (!Array.isArray(addresses)) {
      if (NO_DATA.has(addresses.code ?? '')) {
        return { failure: localFailure('permanent', 'bad-domain', `${domain} has no MX and no A/AAAA record`, null, '5.1.2'), cause: 'absent' };
      }
      return dnsFailure(domain, 'A/AAAA', addresses);
    }
    return { hosts: [{ name: domain, addresses }] };
  }

  const byPreference = new Map<number, string[]>();
  for (const record of records) byPreference.set(record.priority, [...(byPreference.get(record.priority) ?? []), record.exchange]);
  const names = [...byPreference.keys()].sort((a, b) => a - b).flatMap((priority) => shuffle(byPreference.get(priority) ?? []));

  const hosts: MailHost[] = [];
  let lastError: DnsError | null = null;
  for (const name of names) {
    const addresses = await addressesOf(name, resolver);
    if (Array.isArray(addresses)) hosts.push({ name, addresses });
    else lastError = addresses;
  }
  if (hosts.length === 0) {
    // Every MX name failed to resolve: temporary, the MX hosts' DNS may come back.
    return dnsFailure(domain, `MX host (${names.join(', ')})`, lastError ?? new Error('no address'));
  }
  return { hosts };
}
