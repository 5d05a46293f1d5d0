import type { Database, Statement } from 'better-sqlite3';
import { normalizeAddress } from '../address.js';
import { isQueueId, QUEUE_ID_LENGTH } from './queue-id.js';

/** What a search term is looked up as; `auto` guesses from its shape (planSearch). */
export const SEARCH_KINDS = ['auto', 'recipient', 'sender', 'message-id', 'subject', 'queue-id'] as const;
export type SearchKind = (typeof SEARCH_KINDS)[number];
export type SearchField = Exclude<SearchKind, 'auto'>;

/** Longer than any address (RFC 5321: 254) or Message-ID a person pastes; a subject is matched by a part of it. */
export const MAX_TERM_CHARS = 500;

/** A term that cannot be searched as asked; the message names the term and what would work. */
export class SearchTermError extends Error {
  override name = 'SearchTermError';
}

/** One lookup: a field and the value it is compared with (normalised for it). */
export interface SearchPart {
  field: SearchField;
  value: string;
}

export interface SearchPlan {
  /** Messages any of these finds. */
  parts: SearchPart[];
  /** True when the kind was guessed from the term (kind `auto`). */
  guessed: boolean;
  /** Searched instead of `parts` when the store has no mail to their address (a guessed address may be a sender). */
  unlessNoMailTo?: SearchPart[];
}

/**
 * How a term is searched. With `auto`: `<...@...>` is a Message-ID; 18 characters of the queue
 * id alphabet are a queue id; one address (one @, no spaces) is a recipient, or a sender when
 * the store has no mail to it; `<>` is the null sender; anything else is part of a subject. A
 * chosen kind checks the term's shape.
 */
export function planSearch(input: string, kind: SearchKind): SearchPlan {
  const term = input.trim();
  if (term === '') throw new SearchTermError('Enter an address, a sender, a Message-ID, a subject or a queue id.');
  if (term.length > MAX_TERM_CHARS) {
    throw new SearchTermError(`The search term is ${term.length.toLocaleString('en-US')} characters long; at most ${MAX_TERM_CHARS} are searched. Search a shorter part of it.`);
  }
  switch (kind) {
    case 'auto':
      return guessedPlan(term);
    case 'recipient': {
      const address = normalizeAddress(stripAngles(term));
      if (!address || /\s/.test(term)) throw new SearchTermError(`"${term}" is not an email address (local@domain).`);
      return { parts: [{ field: 'recipient', value: address.address }], guessed: false };
    }
    case 'sender':
      return { parts: [{ field: 'sender', value: senderOrThrow(term) }], guessed: false };
    case 'message-id': {
      const id = stripAngles(term);
      if (id === '' || /[\s<>]/.test(id)) throw new SearchTermError(`"${term}" is not a Message-ID: one has no spaces, as in <20261122.1234@shop.example>.`);
      return { parts: [{ field: 'message-id', value: id }], guessed: false };
    }
    case 'subject':
      return { parts: [{ field: 'subject', value: term }], guessed: false };
    case 'queue-id': {
      const queueId = term.toUpperCase();
      if (!isQueueId(queueId)) throw new SearchTermError(`"${term}" is not a queue id: ${QUEUE_ID_FORMAT}.`);
      return { parts: [{ field: 'queue-id', value: queueId }], guessed: false };
    }
  }
}

export const QUEUE_ID_FORMAT = `queue ids are ${QUEUE_ID_LENGTH} characters, digits and letters without I, L, O or U, as in "250 2.0.0 Ok: queued as 01KAPX3V2M8QZ4H7RB"`;

function guessedPlan(term: string): SearchPlan {
  const plan = (part: SearchPart): SearchPlan => ({ parts: [part], guessed: true });
  if (/^<[^\s<>@]+@[^\s<>]+>$/.test(term)) return plan({ field: 'message-id', value: stripAngles(term) });
  if (term === '<>') return plan({ field: 'sender', value: '' });
  if (isQueueId(term.toUpperCase())) return plan({ field: 'queue-id', value: term.toUpperCase() });
  const address = /\s|<|>/.test(term) || term.indexOf('@') !== term.lastIndexOf('@') ? null : normalizeAddress(term);
  if (address) {
    // Recipients have an index; senders are read message by message, so look there only when needed.
    return { ...plan({ field: 'recipient', value: address.address }), unlessNoMailTo: [{ field: 'sender', value: address.address }] };
  }
  return plan({ field: 'subject', value: term });
}

function stripAngles(term: string): string {
  return term.startsWith('<') && term.endsWith('>') ? term.slice(1, -1).trim() : term;
}

/** messages.mail_from is normalised as the submission server wrote it; '' is the null sender <>. */
function senderOrThrow(term: string): string {
  if (term === '<>') return '';
  const address = normalizeAddress(stripAngles(term));
  if (!address || /\s/.test(term)) throw new SearchTermError(`"${term}" is not an envelope sender: give an address (local@domain), or <> for the null sender.`);
  return address.address;
}

export interface MessageMatch {
  /** messages.id */
  messageRowId: number;
  /** Which lookups found it. */
  matchedBy: SearchField[];
}

export interface SearchOutcome {
  /** What was searched: the plan's parts, or its unlessNoMailTo. */
  searched: SearchPart[];
  /** Newest first. */
  matches: MessageMatch[];
  /** Where the next page of older matches starts (the `before` to pass), or null when there is none. */
  older: number | null;
  /**
   * For a plan with a field without an index: when the oldest message it read was received, and
   * `complete` when that was the oldest message in the store.
   */
  scanned: { oldestReceivedAt: string | null; complete: boolean } | null;
}

export interface SearchLimits {
  /** Messages per page. */
  pageSize: number;
  /** Messages one request reads at most for a field without an index (sender, Message-ID, subject). */
  scanWindow: number;
}

/**
 * Measured on a store of 300,000 messages of 5 KB (page cache warm): reading 50,000 messages for a
 * sender, Message-ID or subject takes about 22 ms, on the thread that also runs the SMTP dialogue.
 */
export const DEFAULT_SEARCH_LIMITS: SearchLimits = { pageSize: 20, scanWindow: 50_000 };

/** Fields found through an index, and those that read messages one by one. */
const INDEXED_FIELDS: ReadonlySet<SearchField> = new Set(['recipient', 'queue-id']);

/**
 * Finds the messages a search plan names, newest first, a page at a time. Recipients are found
 * through recipients_by_address and queue ids through messages' unique queue_id. Sender,
 * Message-ID and subject have no index (one would cost every accepted message a write), so each
 * request reads at most `scanWindow` messages below `before`, newest first; the next page starts
 * where it stopped. When a plan mixes the two, the indexed lookup keeps to the same window, so a
 * page never skips a match and never shows one twice.
 */
export class HistorySearch {
  private readonly lookups: Record<SearchField, Statement>;
  private readonly anyMailTo: Statement;
  private readonly maxRowId: Statement;
  private readonly minRowId: Statement;
  private readonly receivedAtFrom: Statement;

  constructor(
    db: Database,
    private readonly limits: SearchLimits = DEFAULT_SEARCH_LIMITS,
  ) {
    const scan = (condition: string): Statement =>
      db.prepare(`SELECT id FROM messages WHERE id >= @floor AND id < @before AND ${condition} ORDER BY id DESC LIMIT @limit`).pluck();
    this.lookups = {
      recipient: db
        .prepare(`
          SELECT DISTINCT message_id FROM recipients
           WHERE address = @value AND message_id >= @floor AND message_id < @before
           ORDER BY message_id DESC LIMIT @limit`)
        .pluck(),
      'queue-id': db.prepare('SELECT id FROM messages WHERE queue_id = @value AND id >= @floor AND id < @before LIMIT @limit').pluck(),
      sender: scan('mail_from = @value'),
      'message-id': scan('message_id_header = @value'),
      subject: scan(`subject LIKE @value ESCAPE '\\'`),
    };
    this.anyMailTo = db.prepare('SELECT 1 FROM recipients WHERE address = ? LIMIT 1').pluck();
    this.maxRowId = db.prepare('SELECT coalesce(max(id), 0) FROM messages').pluck();
    this.minRowId = db.prepare('SELECT coalesce(min(id), 0) FROM messages').pluck();
    this.receivedAtFrom = db.prepare('SELECT received_at FROM messages WHERE id >= ? ORDER BY id LIMIT 1').pluck();
  }

  /** The page of matches with row ids below `before` (the newest page when absent). */
  find(plan: SearchPlan, before?: number): SearchOutcome {
    const parts = plan.unlessNoMailTo && plan.parts.every((part) => this.anyMailTo.get(part.value) === undefined) ? plan.unlessNoMailTo : plan.parts;
    const top = before ?? (this.maxRowId.get() as number) + 1;
    const scans = parts.some((part) => !INDEXED_FIELDS.has(part.field));
    let floor = 0;
    let scanned: SearchOutcome['scanned'] = null;
    if (scans) {
      const oldest = this.minRowId.get() as number;
      const windowFloor = top - this.limits.scanWindow;
      const complete = windowFloor <= oldest;
      floor = complete ? 0 : windowFloor;
      scanned = {
        oldestReceivedAt: (this.receivedAtFrom.get(Math.max(floor, oldest)) as string | undefined) ?? null,
        complete,
      };
    }
    const found = new Map<number, SearchField[]>();
    for (const part of parts) {
      const value = part.field === 'subject' ? `%${part.value.replace(/[\\%_]/g, '\\$&')}%` : part.value;
      const ids = this.lookups[part.field].all({ value, floor, before: top, limit: this.limits.pageSize + 1 }) as number[];
      for (const id of ids) found.set(id, [...(found.get(id) ?? []), part.field]);
    }
    const all = [...found.keys()].sort((a, b) => b - a);
    const shown = all.slice(0, this.limits.pageSize);
    let older: number | null = null;
    if (all.length > shown.length) older = shown[shown.length - 1] as number;
    else if (scanned && !scanned.complete) older = floor;
    return { searched: parts, matches: shown.map((id) => ({ messageRowId: id, matchedBy: found.get(id) as SearchField[] })), older, scanned };
  }
}
