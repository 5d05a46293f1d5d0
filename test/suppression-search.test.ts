import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/store/database.js';
import { addressSearchOf, filterOf } from '../src/suppressions/address-search.js';
import { linesAt } from '../src/suppressions/csv.js';
import { importSuppressionCsv } from '../src/suppressions/csv-import.js';
import { allowValueOrThrow, SuppressionLists } from '../src/suppressions/lists.js';
import { tempStore } from './support/temp-store.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function store(): Database {
  return tempStore(cleanups);
}

describe('address search (the panel\'s search field)', () => {
  it.each([
    ['', { kind: 'none' }],
    ['   ', { kind: 'none' }],
    ['@Example.COM', { kind: 'domain', domain: 'example.com', bare: false }],
    ['example.com', { kind: 'domain', domain: 'example.com', bare: true }],
    ['bücher.example.', { kind: 'domain', domain: 'xn--bcher-kva.example', bare: true }],
    ['@localhost', { kind: 'domain', domain: 'localhost', bare: false }],
    ['alice', { kind: 'text', text: 'alice' }],
    ['alice@example.com', { kind: 'text', text: 'alice@example.com' }],
    ['@not a domain', { kind: 'text', text: '@not a domain' }],
    ['50%_off', { kind: 'text', text: '50%_off' }],
  ])('reads %j', (input, expected) => {
    expect(addressSearchOf(input)).toEqual(expected);
  });

  it('matches every address at the domain and no other, and takes LIKE wildcards literally', () => {
    const lists = new SuppressionLists(store());
    const addresses = ['a@example.com', 'b@example.com', 'c@mail.example.com', 'd@notexample.com', 'example.com@other.test', 'e@example.com.au', 'f@ex_mple.com', 'g@exxmple.com', '100%@x.test'];
    lists.addAll(addresses.map((address) => ({ address, type: 'bounces', source: 'manual', actor: 'test' })));
    const found = (q: string) =>
      lists
        .list({ type: 'bounces', limit: 100, ...filterOf(addressSearchOf(q)) })
        .entries.map((e) => e.address)
        .sort();
    expect(found('@example.com')).toEqual(['a@example.com', 'b@example.com']);
    expect(found('ex_mple.com')).toEqual(['f@ex_mple.com']);
    expect(found('100%')).toEqual(['100%@x.test']);
    expect(found('example.com')).toEqual(['a@example.com', 'b@example.com']);
    expect(lists.list({ type: 'bounces', limit: 1, ...filterOf(addressSearchOf('example')) }).total).toBe(6);
  });

  it('finds a domain\'s allowlist entry and the allowlisted addresses at it', () => {
    const lists = new SuppressionLists(store());
    lists.allow('partner.test', 'test', null);
    lists.allow('vip@partner.test', 'test', null);
    lists.allow('other@elsewhere.test', 'test', null);
    const { total, entries } = lists.allowlist({ limit: 10, domain: 'partner.test' });
    expect(total).toBe(2);
    expect(entries.map((e) => e.value).sort()).toEqual(['partner.test', 'vip@partner.test']);
    expect(lists.allowlist({ limit: 10, search: 'other' }).entries.map((e) => e.value)).toEqual(['other@elsewhere.test']);
  });

  it('refuses an allowlist value that is neither an address nor a domain, naming it', () => {
    expect(allowValueOrThrow('Partner.Test.')).toBe('partner.test');
    expect(() => allowValueOrThrow('two words')).toThrow('"two words" is neither an email address (local@domain) nor a domain');
    expect(() => allowValueOrThrow('@')).toThrow('"@" is not an email address (local@domain)');
  });
});

describe('linesAt (the text beside an import error\'s line number)', () => {
  it('splits as the CSV reader does (CRLF, LF, CR), skips a byte-order mark, and stops after the last line wanted', () => {
    const text = '\ufeffaddress\r\none@x.test\ntwo@x.test\rthree@x.test';
    expect(Object.fromEntries(linesAt(text, new Set([1, 3, 4, 9])))).toEqual({ 1: 'address', 3: 'two@x.test', 4: 'three@x.test' });
    expect(linesAt(text, new Set()).size).toBe(0);
  });
});

describe('importSuppressionCsv (the API\'s and the panel\'s import)', () => {
  it('lands the good rows with the actor and the default reason, refuses another list\'s rows with the caller\'s words, in line order', async () => {
    const lists = new SuppressionLists(store());
    const logged: string[] = [];
    const outcome = await importSuppressionCsv(lists, 'address,type,reason\na@x.test,bounces,\nb@x.test,complaints,\nbad,bounces,\nc@x.test,bounces,own words\n', {
      list: 'bounces',
      actor: 'panel:ops',
      reason: 'imported from x.csv',
      otherList: (rowType, list) => `${rowType} is not ${list}`,
      log: { info: (_details, message) => logged.push(message) },
    });
    expect(outcome).toEqual({
      added: 2,
      errors: [
        { line: 3, message: 'complaints is not bounces' },
        { line: 4, message: '"bad" is not an email address' },
      ],
    });
    expect(lists.entriesFor('a@x.test')).toEqual([expect.objectContaining({ type: 'bounces', source: 'import', reason: 'imported from x.csv' })]);
    expect(lists.entriesFor('c@x.test')[0]?.reason).toBe('own words');
    expect(lists.auditFor('a@x.test')).toEqual([expect.objectContaining({ action: 'add', actor: 'panel:ops' })]);
    expect(lists.entriesFor('b@x.test')).toEqual([]);
    // Short imports log nothing; the progress lines are for files of 100,000 rows and more.
    expect(logged).toEqual([]);
  });
});
