import { domainOrNull, type ListFilter } from './lists.js';

/**
 * What a search field asks for: every address at one domain (`@example.com`, or `example.com`
 * alone), or text found anywhere in an address (`alice`, `alice@example.com`). `bare` marks a
 * domain written without its `@`: such a word may be part of a local part (`john.smith`) too.
 */
export type AddressSearch = { kind: 'none' } | { kind: 'domain'; domain: string; bare: boolean } | { kind: 'text'; text: string };

/** Reads a search field. Never throws: text that is not a domain is searched for as text. */
export function addressSearchOf(input: string): AddressSearch {
  const text = input.trim();
  if (text === '') return { kind: 'none' };
  if (text.startsWith('@')) {
    const domain = domainOrNull(text.slice(1));
    if (domain !== null) return { kind: 'domain', domain, bare: false };
  } else if (!text.includes('@') && text.includes('.')) {
    const domain = domainOrNull(text);
    if (domain !== null) return { kind: 'domain', domain, bare: true };
  }
  return { kind: 'text', text };
}

/** The listing filter (SuppressionLists.list and .allowlist) a search stands for. */
export function filterOf(search: AddressSearch): ListFilter {
  if (search.kind === 'domain') return { domain: search.domain };
  if (search.kind === 'text') return { search: search.text };
  return {};
}
