import { domainToASCII } from 'node:url';

export interface NormalizedAddress {
  address: string;
  domain: string;
}

/**
 * The one way Rebound writes an address everywhere (recipients, suppressions, reports): the local
 * part as given (RFC 5321 lets the receiving host decide its case), the domain lower-cased and, when
 * international, as punycode. Returns null for something that is not local@domain.
 */
export function normalizeAddress(input: string): NormalizedAddress | null {
  const at = input.lastIndexOf('@');
  if (at <= 0 || at === input.length - 1) return null;
  const local = input.slice(0, at);
  const rawDomain = input.slice(at + 1);
  let domain: string;
  if (rawDomain.startsWith('[') && rawDomain.endsWith(']')) {
    domain = rawDomain.toLowerCase(); // address literal, e.g. [192.0.2.1]
  } else {
    domain = domainToASCII(rawDomain.replace(/\.$/, ''));
    if (domain === '') return null;
  }
  return { address: `${local}@${domain}`, domain };
}
