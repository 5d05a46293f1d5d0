import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { OperatorError } from '../errors.js';

/** Postfix's words: none (never STARTTLS), may (opportunistic), encrypt (STARTTLS or defer), verify (and a valid certificate for the host name). */
export type TlsLevel = 'none' | 'may' | 'encrypt' | 'verify';

/**
 * The TLS a batch must get at its next hop, worked out on the stage's thread (config, MTA-STS) and
 * handed to the sender with the next hop, so the sender thread needs no store or DNS of its own.
 */
export interface TlsRequirement {
  level: TlsLevel;
  /** Who asked for it, named in logs and in the deferral's text: "delivery.tls.policies", "MTA-STS enforce", ... */
  source: string;
}

export const OPPORTUNISTIC: TlsRequirement = { level: 'may', source: 'delivery.tls.default' };

/**
 * The configured level for a recipient domain: its own entry, else its nearest parent's (so
 * "example.com" covers "eu.example.com" unless that has an entry), else the default.
 */
export function configuredTlsLevel(domain: string, policies: ReadonlyMap<string, TlsLevel>, fallback: TlsLevel): TlsRequirement {
  const labels = domain.toLowerCase().replace(/\.$/, '').split('.');
  for (let i = 0; i < labels.length; i++) {
    const name = labels.slice(i).join('.');
    const level = policies.get(name);
    if (level) return { level, source: `delivery.tls.policies["${name}"]` };
  }
  return { level: fallback, source: 'delivery.tls.default' };
}

export function policyMap(policies: Record<string, TlsLevel>): Map<string, TlsLevel> {
  return new Map(Object.entries(policies).map(([domain, level]) => [domain.toLowerCase().replace(/\.$/, ''), level]));
}

/** The stricter of two requirements (MTA-STS can raise a configured level, never lower it). */
export function stricter(a: TlsRequirement, b: TlsRequirement): TlsRequirement {
  const rank: Record<TlsLevel, number> = { none: 0, may: 1, encrypt: 2, verify: 3 };
  return rank[b.level] > rank[a.level] ? b : a;
}

/**
 * The CAs a verified connection trusts: the system's plus delivery.tls.caFile. Node's `ca` option
 * replaces its default list instead of adding to it, hence rootCertificates here.
 */
export function trustedCertificates(caFile: string | null): string[] | undefined {
  if (caFile === null) return undefined;
  let pem: string;
  try {
    pem = readFileSync(caFile, 'utf8');
  } catch (error) {
    throw new OperatorError(`delivery.tls.caFile: cannot read ${caFile} (${(error as NodeJS.ErrnoException).code ?? 'unreadable'}); fix the path or set it to null`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new OperatorError(`delivery.tls.caFile: ${caFile} holds no PEM certificate ("-----BEGIN CERTIFICATE-----"); give a file of CA certificates in PEM`);
  }
  return [...rootCertificates, pem];
}
