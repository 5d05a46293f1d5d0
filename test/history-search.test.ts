import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../src/store/database.js';
import { HistorySearch, MAX_TERM_CHARS, planSearch, SearchTermError, type SearchKind, type SearchOutcome, type SearchPlan } from '../src/store/history-search.js';
import { MessageHistory } from '../src/store/history.js';
import { isQueueId, newQueueId } from '../src/store/queue-id.js';
import { Spool } from '../src/store/spool.js';
import { redactUrl } from '../src/redact-url.js';
import { spoolMessage } from './support/spool-message.js';
import { tempStore } from './support/temp-store.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function store(): Database {
  return tempStore(cleanups);
}

/** n messages, message i to user<i % 3>@example.test from sender<i % 2>@shop.example, subject "Order <i>". */
async function fill(db: Database, n: number, fields: (i: number) => Parameters<typeof spoolMessage>[1] = () => ({})): Promise<string[]> {
  const spool = new Spool(db);
  const queueIds: string[] = [];
  for (let i = 0; i < n; i++) {
    const message = spoolMessage(`user${i % 3}@example.test`, {
      receivedAt: new Date(Date.UTC(2026, 10, 22, 12, 0, i)),
      mailFrom: `sender${i % 2}@shop.example`,
      subject: `Order ${i}`,
      messageIdHeader: `order-${i}@shop.example`,
      ...fields(i),
    });
    queueIds.push(message.queueId);
    await spool.enqueue(message);
  }
  spool.close();
  return queueIds;
}

/** Every page of a search, following `older` until it ends (bounded: 100 pages). */
function allPages(search: HistorySearch, term: string, kind: SearchKind): { ids: number[]; pages: SearchOutcome[] } {
  const plan = planSearch(term, kind);
  const pages: SearchOutcome[] = [];
  let before: number | undefined;
  for (let page = 0; page < 100; page++) {
    const outcome = search.find(plan, before);
    pages.push(outcome);
    if (outcome.older === null) break;
    before = outcome.older;
  }
  return { ids: pages.flatMap((page) => page.matches.map((match) => match.messageRowId)), pages };
}

describe('what a search term is taken for', () => {
  it('guesses from the shape: <id@host> is a Message-ID, a queue id is one, one address a recipient (or a sender when there is no mail to it), the rest a subject', () => {
    const queueId = newQueueId();
    expect(isQueueId(queueId)).toBe(true);
    const cases: Array<[string, Array<[string, string]>]> = [
      ['<abc.123@mail.shop.example>', [['message-id', 'abc.123@mail.shop.example']]],
      [queueId, [['queue-id', queueId]]],
      [queueId.toLowerCase(), [['queue-id', queueId]]],
      ['  Bob@Example.COM ', [['recipient', 'Bob@example.com']]],
      ['bob@bücher.example', [['recipient', 'bob@xn--bcher-kva.example']]],
      ['<>', [['sender', '']]],
      ['Spring sale', [['subject', 'Spring sale']]],
      ['a@b@c', [['subject', 'a@b@c']]],
      ['Re: bob@example.com', [['subject', 'Re: bob@example.com']]],
      ['<img src=x onerror=alert(1)>', [['subject', '<img src=x onerror=alert(1)>']]],
      // 18 characters but an O: not a queue id.
      ['NEWSLETTERFORMOONS', [['subject', 'NEWSLETTERFORMOONS']]],
    ];
    for (const [term, parts] of cases) {
      const plan = planSearch(term, 'auto');
      expect(plan.guessed, term).toBe(true);
      expect(plan.parts.map((part) => [part.field, part.value]), term).toEqual(parts);
      expect(plan.unlessNoMailTo, term).toEqual(parts[0]?.[0] === 'recipient' ? [{ field: 'sender', value: parts[0][1] }] : undefined);
    }
  });

  it('takes a chosen kind, normalised for its field', () => {
    expect(planSearch('<bob@Example.com>', 'recipient').parts).toEqual([{ field: 'recipient', value: 'bob@example.com' }]);
    expect(planSearch('<>', 'sender').parts).toEqual([{ field: 'sender', value: '' }]);
    expect(planSearch('abc@host', 'message-id').parts).toEqual([{ field: 'message-id', value: 'abc@host' }]);
    expect(planSearch('01kapx3v2m8qz4h7rb', 'queue-id').parts).toEqual([{ field: 'queue-id', value: '01KAPX3V2M8QZ4H7RB' }]);
    expect(planSearch('bob@example.com', 'subject').parts).toEqual([{ field: 'subject', value: 'bob@example.com' }]);
    expect(planSearch('bob@example.com', 'subject').guessed).toBe(false);
  });

  it('refuses an empty term, a huge one and one that is not of the chosen kind, saying what would work', () => {
    const refusals: Array<[string, SearchKind, RegExp]> = [
      ['', 'auto', /^Enter an address, a sender, a Message-ID, a subject or a queue id\.$/],
      ['   ', 'subject', /^Enter an address/],
      ['x'.repeat(MAX_TERM_CHARS + 1), 'auto', /is 501 characters long; at most 500 are searched/],
      ['nobody', 'recipient', /^"nobody" is not an email address \(local@domain\)\.$/],
      ['bob smith@example.com', 'recipient', /is not an email address/],
      ['shop', 'sender', /"shop" is not an envelope sender: give an address \(local@domain\), or <> for the null sender\./],
      ['two words@x', 'message-id', /is not a Message-ID: one has no spaces/],
      ['<>', 'message-id', /is not a Message-ID/],
      ['12345', 'queue-id', /"12345" is not a queue id: queue ids are 18 characters, digits and letters without I, L, O or U/],
      ['01KAPX3V2M8QZ4H7RO', 'queue-id', /is not a queue id/],
    ];
    for (const [term, kind, message] of refusals) {
      expect(() => planSearch(term, kind), `${kind}: ${term.slice(0, 20)}`).toThrow(SearchTermError);
      expect(() => planSearch(term, kind)).toThrow(message);
    }
  });
});

describe('finding messages', () => {
  it('finds by recipient through its index, by queue id, sender, Message-ID and subject, newest first, and says which lookup found each', async () => {
    const db = store();
    const queueIds = await fill(db, 9, (i) => (i === 4 ? { mailFrom: 'user1@example.test', subject: 'Ready: 100% off_today' } : {}));
    const search = new HistorySearch(db, { pageSize: 20, scanWindow: 1000 });
    const ids = (term: string, kind: SearchKind = 'auto') => search.find(planSearch(term, kind)).matches.map((m) => [m.messageRowId, m.matchedBy.join('+')]);
    // Messages 1, 4, 7 (rows 2, 5, 8) go to user1; message 4 also comes from user1. There is mail
    // to user1, so a guess takes it for a recipient; there is none to sender1, so for a sender.
    expect(ids('user1@example.test')).toEqual([[8, 'recipient'], [5, 'recipient'], [2, 'recipient']]);
    expect(ids('user1@example.test', 'recipient')).toEqual([[8, 'recipient'], [5, 'recipient'], [2, 'recipient']]);
    expect(ids('user1@example.test', 'sender')).toEqual([[5, 'sender']]);
    expect(ids('sender1@shop.example')).toEqual([[8, 'sender'], [6, 'sender'], [4, 'sender'], [2, 'sender']]);
    expect(search.find(planSearch('sender1@shop.example', 'auto')).searched).toEqual([{ field: 'sender', value: 'sender1@shop.example' }]);
    expect(search.find(planSearch('user1@example.test', 'auto')).searched).toEqual([{ field: 'recipient', value: 'user1@example.test' }]);
    expect(ids(queueIds[6] as string)).toEqual([[7, 'queue-id']]);
    expect(ids('<order-3@shop.example>')).toEqual([[4, 'message-id']]);
    expect(ids('order 2')).toEqual([[3, 'subject']]);
    // LIKE's wildcards in the term are plain characters.
    expect(ids('100% off_')).toEqual([[5, 'subject']]);
    expect(ids('0%')).toEqual([[5, 'subject']]);
    expect(ids('r_')).toEqual([]);
    expect(ids('nobody@example.test')).toEqual([]);
    expect(ids('00000000000000000Z')).toEqual([]);
  });

  it('pages through many matches, and a search without an index reads at most scanWindow messages per page, never skipping or repeating one', async () => {
    const db = store();
    await fill(db, 60);
    const search = new HistorySearch(db, { pageSize: 4, scanWindow: 10 });
    // Indexed: no window; user0 has messages 1, 4, ..., 58 (20 of them), 4 per page.
    const byRecipient = allPages(search, 'user0@example.test', 'recipient');
    expect(byRecipient.ids).toEqual(Array.from({ length: 20 }, (_, i) => 58 - 3 * i));
    expect(byRecipient.pages.every((page) => page.scanned === null)).toBe(true);
    // A subject in one message only: 6 windows of 10, each a page, the match on the fifth.
    const bySubject = allPages(search, 'Order 12', 'subject');
    expect(bySubject.ids).toEqual([13]);
    expect(bySubject.pages.map((page) => page.matches.length)).toEqual([0, 0, 0, 0, 1, 0]);
    expect(bySubject.pages.map((page) => page.scanned?.complete)).toEqual([false, false, false, false, false, true]);
    expect(bySubject.pages[0]?.scanned?.oldestReceivedAt).toBe('2026-11-22T12:00:50.000Z');
    // A sender with many matches: pages of 4, each within its window; every match once.
    const bySender = allPages(search, 'sender0@shop.example', 'auto');
    expect(bySender.ids).toEqual(Array.from({ length: 30 }, (_, i) => 59 - 2 * i));
    expect(new Set(bySender.ids).size).toBe(bySender.ids.length);
    expect(bySender.pages.some((page) => page.scanned !== null && !page.scanned.complete)).toBe(true);
  });

  it('keeps an indexed lookup to the window of a scanned one it is searched with, so pages neither skip nor repeat a match', async () => {
    const db = store();
    await fill(db, 60);
    // 3 or 4 of user2's messages in each window of 10, fewer than a page: without the window on
    // the recipient lookup, older recipients would fill the page and the subject scan skip rows.
    const search = new HistorySearch(db, { pageSize: 5, scanWindow: 10 });
    // user2 gets messages 2, 5, ..., 59 (rows 3, 6, ..., 60); subject "Order 1" is in 1 and 10-19 (rows 2, 11-20).
    const plan: SearchPlan = {
      parts: [
        { field: 'recipient', value: 'user2@example.test' },
        { field: 'subject', value: 'Order 1' },
      ],
      guessed: false,
    };
    const pages: SearchOutcome[] = [];
    let before: number | undefined;
    for (let page = 0; page < 100; page++) {
      const outcome = search.find(plan, before);
      pages.push(outcome);
      if (outcome.older === null) break;
      before = outcome.older;
    }
    const ids = pages.flatMap((page) => page.matches.map((match) => match.messageRowId));
    const expected = [...new Set([...Array.from({ length: 20 }, (_, i) => 60 - 3 * i), 2, ...Array.from({ length: 10 }, (_, i) => 11 + i)])].sort((a, b) => b - a);
    expect(ids).toEqual(expected);
    expect(pages.find((page) => page.matches.some((m) => m.messageRowId === 12))?.matches.find((m) => m.messageRowId === 12)?.matchedBy).toEqual(['recipient', 'subject']);
  });

  it('reads a message\'s story: only the searched address, or the first recipients of many; tries, events and webhook rows by recipient', async () => {
    const db = store();
    const spool = new Spool(db);
    const recipients = Array.from({ length: 7 }, (_, i) => ({ address: `r${i}@example.test`, domain: 'example.test' }));
    await spool.enqueue(spoolMessage('r0@example.test', { recipients, subject: 'Many' }));
    spool.close();
    const history = new MessageHistory(db);
    const firstThree = history.story(1, { maxRecipients: 3 });
    expect(firstThree?.recipientsTotal).toBe(7);
    expect(firstThree?.recipients.map((r) => r.recipient.address)).toEqual(['r0@example.test', 'r1@example.test', 'r2@example.test']);
    expect(firstThree?.recipients[0]?.events.map((e) => e.event)).toEqual(['accepted']);
    const one = history.story(1, { onlyAddress: 'r5@example.test', maxRecipients: 3 });
    expect(one?.recipients.map((r) => r.recipient.address)).toEqual(['r5@example.test']);
    expect(one?.message.subject).toBe('Many');
    expect(history.story(99, { maxRecipients: 3 })).toBeUndefined();
  });
});

describe('endpoint URLs as shown', () => {
  it('masks the user name, the password and every query value, and keeps the rest', () => {
    expect(redactUrl('https://hook-user:s3cret@hooks.example/rebound?token=abc123&v=2#x')).toBe('https://***:***@hooks.example/rebound?token=***&v=***');
    expect(redactUrl('https://tok_abc@hooks.example/')).toBe('https://***@hooks.example/');
    expect(redactUrl('http://127.0.0.1:8080/hooks/rebound')).toBe('http://127.0.0.1:8080/hooks/rebound');
    expect(redactUrl('not a url s3cret')).toBe('(not a URL)');
  });
});
