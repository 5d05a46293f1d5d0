import type { Resolver } from 'node:dns/promises';
import type { DkimRecord } from './key-pair.js';

export type PublishedCheck = { published: true } | { published: false; reason: string };

/** The tags of a DKIM key record (RFC 6376 3.6.1: tag=value; …), whitespace inside values dropped as 3.2 allows. */
function tags(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(';')) {
    const equals = part.indexOf('=');
    if (equals > 0) out.set(part.slice(0, equals).trim(), part.slice(equals + 1).replace(/\s+/g, ''));
  }
  return out;
}

/**
 * Whether the DNS already serves the key: a TXT record at the name (its strings joined, as a
 * verifier joins them) whose p= is this key. Asked before a pending key starts to sign, so a
 * rotation never signs with a key receivers cannot find.
 */
export async function checkPublished(resolver: Resolver, record: DkimRecord): Promise<PublishedCheck> {
  let answers: string[][];
  try {
    answers = await resolver.resolveTxt(record.name);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    const absent = code === 'ENOTFOUND' || code === 'ENODATA';
    return { published: false, reason: absent ? `no TXT record at ${record.name} yet (${code})` : `the TXT lookup of ${record.name} failed (${code})` };
  }
  const wanted = tags(record.text).get('p');
  const keys = answers.map((strings) => tags(strings.join('')).get('p') ?? '');
  if (keys.includes(wanted ?? '')) return { published: true };
  if (keys.length === 0) return { published: false, reason: `no TXT record at ${record.name} yet` };
  const shown = keys.map((key) => (key.length > 24 ? `p=${key.slice(0, 24)}…` : `p=${key}`)).join(', ');
  return { published: false, reason: `the TXT record at ${record.name} holds another key (${shown})` };
}
