import { domainToASCII } from 'node:url';
import { OperatorError } from '../errors.js';

/** A signing domain or selector the operator typed that cannot be one; the message names the fix. */
export class DkimInputError extends OperatorError {
  override name = 'DkimInputError';
}

/** One DNS label as a host name has it (RFC 1123 2.1): letters, digits, inner hyphens, 1-63 octets. */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * The signing domain (d=) the way the store keeps it: lower case, an international name as
 * punycode, no final dot. At least two labels: a key for a top-level domain would sign mail
 * for every domain under it (see keysFor).
 */
export function signingDomainOrThrow(input: string): string {
  const trimmed = input.trim().replace(/\.$/, '');
  const ascii = trimmed === '' || /[\s@/:]/.test(trimmed) ? '' : domainToASCII(trimmed);
  const labels = ascii.split('.');
  if (ascii === '' || ascii.length > 253 || labels.some((label) => !LABEL.test(label))) {
    throw new DkimInputError(`"${input}" is not a domain name; give the domain of the From: addresses to sign, e.g. example.com`);
  }
  if (labels.length < 2) throw new DkimInputError(`"${input}" is a top-level domain; give the domain of the From: addresses to sign, e.g. example.com`);
  return ascii;
}

/**
 * A selector (s=): one or more labels (RFC 6376 3.1 allows dots), lower case. Together with
 * "._domainkey." and the domain it must still fit a DNS name.
 */
export function selectorOrThrow(input: string, domain: string): string {
  const selector = input.trim().toLowerCase();
  const labels = selector.split('.');
  if (selector === '' || labels.some((label) => !LABEL.test(label))) {
    throw new DkimInputError(`"${input}" is not a selector; use letters, digits and inner hyphens (dots between labels), e.g. rb202612`);
  }
  if (`${selector}._domainkey.${domain}`.length > 253) {
    throw new DkimInputError(`the selector "${input}" makes ${selector}._domainkey.${domain} longer than a DNS name may be (253); use a shorter one`);
  }
  return selector;
}

/**
 * The From domain, then each parent up to the last two labels: the keys of the first that has
 * any sign the message. A simple stand-in for the organisational domain of DMARC (RFC 7489
 * 3.2), which needs the Public Suffix List (no such package is installed here): it can only
 * pick a domain the operator added a key for, and never a top-level one.
 */
export function signingDomainCandidates(fromDomain: string): string[] {
  const labels = fromDomain.split('.');
  const candidates: string[] = [];
  for (let start = 0; start <= labels.length - 2; start++) candidates.push(labels.slice(start).join('.'));
  return candidates;
}
