import type { Database, Statement } from 'better-sqlite3';
import { domainToASCII } from 'node:url';
import { normalizeAddress } from '../address.js';
import { OperatorError } from '../errors.js';
import type { RecipientStatus } from './queue.js';
import { writeTransaction } from './write-lock.js';

/** What an operator can do to mail still in the queue, as Postfix's postsuper -h, -H, -d (and a bounce). */
export const QUEUE_ACTIONS = ['hold', 'release', 'delete', 'bounce'] as const;
export type QueueAction = (typeof QUEUE_ACTIONS)[number];

/** Which mail an action is about, as a caller gives it: exactly one of the three. */
export interface QueueSelectorInput {
  /** Queue ids, from the 250 reply or `rebound queue`: every recipient of those messages. */
  queueIds?: readonly string[];
  /** A recipient domain: every recipient at exactly that domain (not its subdomains). */
  domain?: string;
  /** An envelope sender (MAIL FROM), compared without regard to case; `<>` for the null sender. */
  sender?: string;
}

/** A selector as checked and normalised: the way the store writes domains and addresses. */
export type QueueSelector =
  | { by: 'queue-ids'; queueIds: string[] }
  | { by: 'domain'; domain: string }
  /** '' is the null sender <>. */
  | { by: 'sender'; sender: string };

export interface QueueActionResult {
  action: QueueAction;
  selector: QueueSelector;
  actor: string;
  at: string;
  /** Recipients whose status the action changed (one event each). */
  recipients: number;
  /** Recipients the selection named that the action left alone, by why. */
  skipped: {
    /** Claimed by delivery and being sent now: their outcome is the MX's to decide. */
    sending: number;
  };
}

/** A selector that cannot be used as given (none, two, a malformed domain or address, too many ids). */
export class QueueSelectorError extends OperatorError {
  override name = 'QueueSelectorError';
}

/** Queue ids that name no message; nothing was changed. */
export class UnknownQueueIdError extends OperatorError {
  override name = 'UnknownQueueIdError';
  constructor(readonly queueIds: readonly string[]) {
    const shown = queueIds.slice(0, 10).map((id) => `"${id}"`).join(', ');
    const more = queueIds.length > 10 ? ` and ${queueIds.length - 10} more` : '';
    super(`no message with queue id ${shown}${more}; nothing was changed (\`rebound queue\` or GET /v1/queue lists what is waiting)`);
  }
}

/** Queue ids per action: a list past this is a mistake (or an attack), not an operator's selection. */
export const MAX_QUEUE_IDS = 10_000;
/** A queue id is 18 characters (queue-id.ts); anything much longer is not one. */
const MAX_QUEUE_ID_LENGTH = 64;

interface ActionRule {
  /** Statuses the action changes. */
  from: readonly RecipientStatus[];
  to: RecipientStatus;
  event: 'held' | 'released' | 'deleted' | 'permanent_fail';
  /** Whether recipients being sent are reported as skipped (they would have been changed otherwise). */
  skipsSending: boolean;
  /** The event's detail (and, where final, last_reply): what happened and who did it. */
  detail: (actor: string, selection: string) => string;
  /** Written to last_reply, so `GET /v1/queue/{id}` says why the recipient ended. */
  setsLastReply: boolean;
}

const RULES: Record<QueueAction, ActionRule> = {
  hold: { from: ['queued', 'deferred'], to: 'held', event: 'held', skipsSending: true, detail: (actor, selection) => `held by ${actor} (${selection})`, setsLastReply: false },
  release: { from: ['held'], to: 'queued', event: 'released', skipsSending: false, detail: (actor, selection) => `released by ${actor} (${selection}); due now`, setsLastReply: false },
  delete: {
    from: ['queued', 'deferred', 'held'],
    to: 'deleted',
    event: 'deleted',
    skipsSending: true,
    detail: (actor, selection) => `deleted by ${actor} (${selection}); not sent, no bounce`,
    setsLastReply: true,
  },
  bounce: {
    from: ['queued', 'deferred', 'held'],
    to: 'bounced',
    event: 'permanent_fail',
    skipsSending: true,
    detail: (actor, selection) => `bounced by the operator ${actor} (${selection}); not sent`,
    setsLastReply: true,
  },
};

interface CandidateRow {
  id: number;
  messageId: number;
  status: RecipientStatus;
  attempts: number;
}

/**
 * Checks and normalises what a caller (CLI, API, panel) selected: exactly one of queue ids, a
 * recipient domain or a sender. Throws QueueSelectorError naming the problem and the fix.
 */
export function queueSelector(input: QueueSelectorInput): QueueSelector {
  const given = (['queueIds', 'domain', 'sender'] as const).filter((key) => input[key] !== undefined);
  if (given.length === 0) throw new QueueSelectorError('select the mail: give queue ids, a recipient domain or a sender (exactly one)');
  if (given.length > 1) throw new QueueSelectorError(`select the mail one way only: ${given.join(' and ')} were both given; use queue ids, a domain or a sender`);
  if (input.queueIds !== undefined) return { by: 'queue-ids', queueIds: queueIdsOf(input.queueIds) };
  if (input.domain !== undefined) return { by: 'domain', domain: domainOf(input.domain) };
  return { by: 'sender', sender: senderOf(input.sender as string) };
}

function queueIdsOf(input: readonly string[]): string[] {
  if (input.length === 0) throw new QueueSelectorError('the list of queue ids is empty; give at least one');
  if (input.length > MAX_QUEUE_IDS) throw new QueueSelectorError(`${input.length} queue ids is more than ${MAX_QUEUE_IDS} in one action; split the list, or select by domain or sender`);
  const ids = new Set<string>();
  for (const raw of input) {
    const id = raw.trim();
    if (id === '') throw new QueueSelectorError('a queue id is empty; give ids as `rebound queue` prints them');
    if (id.length > MAX_QUEUE_ID_LENGTH) throw new QueueSelectorError(`"${id.slice(0, 24)}…" is not a queue id (they are 18 characters, e.g. 01M82FV3W8MQ8KC7XR)`);
    ids.add(id);
  }
  return [...ids];
}

/** A host name label: letters, digits, hyphens inside, and the underscores some names carry. */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;
/** An address literal as normalizeAddress keeps it: [192.0.2.1], [ipv6:2001:db8::1]. */
const ADDRESS_LITERAL = /^\[[a-z0-9:.]+\]$/;

/** A recipient domain as recipients.domain holds it: lower case, IDN as punycode, no final dot. */
function domainOf(input: string): string {
  const trimmed = input.trim().toLowerCase().replace(/\.$/, '');
  if (trimmed === '') throw new QueueSelectorError('the domain is empty; give a recipient domain such as example.com');
  if (trimmed.includes('@')) {
    throw new QueueSelectorError(`domain "${input}" is an address; give only the part after @ (${trimmed.slice(trimmed.lastIndexOf('@') + 1) || 'example.com'}), or select by sender`);
  }
  if (ADDRESS_LITERAL.test(trimmed)) return trimmed;
  const ascii = domainToASCII(trimmed);
  if (ascii === '' || !HOST_NAME.test(ascii)) throw new QueueSelectorError(`domain "${input}" is not a domain name; give one such as example.com`);
  return ascii;
}

/** A sender as messages.mail_from holds it (normalizeAddress), or '' for <>. */
function senderOf(input: string): string {
  const trimmed = input.trim();
  if (trimmed === '') throw new QueueSelectorError('the sender is empty; give an address such as app@shop.example, or <> for the null sender');
  const bare = trimmed.startsWith('<') && trimmed.endsWith('>') ? trimmed.slice(1, -1).trim() : trimmed;
  if (bare === '') return '';
  const normalized = normalizeAddress(bare);
  if (!normalized) throw new QueueSelectorError(`sender "${input}" is not an email address (local@domain); give one such as app@shop.example, or <> for the null sender`);
  return normalized.address;
}

/** The selector in words, for events and the audit: "domain example.com". */
function describeSelector(selector: QueueSelector): { by: QueueSelector['by']; value: string; words: string } {
  switch (selector.by) {
    case 'queue-ids': {
      const value = selector.queueIds.join(',');
      return { by: 'queue-ids', value, words: selector.queueIds.length === 1 ? `queue id ${value}` : `${selector.queueIds.length} queue ids` };
    }
    case 'domain':
      return { by: 'domain', value: selector.domain, words: `domain ${selector.domain}` };
    case 'sender': {
      const value = selector.sender === '' ? '<>' : selector.sender;
      return { by: 'sender', value, words: `sender ${value}` };
    }
  }
}

/**
 * The recipients a selector names, in the statuses asked for. Each query reads through a partial
 * index (recipients_due_by_domain / recipients_due, recipients_held, recipients_sending) or the
 * messages it names, so an action costs what is in the queue, not the store's whole history.
 * By sender, recipients are read first (CROSS JOIN fixes that order): messages has no index on
 * mail_from, and the waiting recipients are far fewer than the messages kept.
 */
class Candidates {
  private readonly byMessage: Statement;
  private readonly messageIdOf: Statement;
  private readonly grouped: Record<'domain' | 'sender', Record<'due' | 'held' | 'sending', Statement>>;

  constructor(db: Database) {
    const columns = 'r.id, r.message_id AS messageId, r.status, r.attempts';
    const groups = { due: `r.status IN ('queued', 'deferred')`, held: `r.status = 'held'`, sending: `r.status = 'sending'` };
    const of = (where: (group: string) => string) => ({
      due: db.prepare(where(groups.due)),
      held: db.prepare(where(groups.held)),
      sending: db.prepare(where(groups.sending)),
    });
    this.grouped = {
      domain: of((group) => `SELECT ${columns} FROM recipients r WHERE r.domain = ? AND ${group}`),
      sender: of((group) => `SELECT ${columns} FROM recipients r CROSS JOIN messages m ON m.id = r.message_id WHERE ${group} AND lower(m.mail_from) = lower(?)`),
    };
    this.byMessage = db.prepare(`SELECT ${columns} FROM recipients r WHERE r.message_id = ? ORDER BY r.id`);
    this.messageIdOf = db.prepare('SELECT id FROM messages WHERE queue_id = ?').pluck();
  }

  /** Rows in `statuses` (and sending ones), or throws UnknownQueueIdError before anything changed. */
  rows(selector: QueueSelector, statuses: readonly RecipientStatus[]): CandidateRow[] {
    if (selector.by === 'queue-ids') {
      const messageIds: number[] = [];
      const unknown: string[] = [];
      for (const queueId of selector.queueIds) {
        const id = this.messageIdOf.get(queueId) as number | undefined;
        if (id === undefined) unknown.push(queueId);
        else messageIds.push(id);
      }
      if (unknown.length > 0) throw new UnknownQueueIdError(unknown);
      return messageIds.flatMap((id) => this.byMessage.all(id) as CandidateRow[]);
    }
    const statements = this.grouped[selector.by];
    const value = selector.by === 'domain' ? selector.domain : selector.sender;
    const rows: CandidateRow[] = [];
    if (statuses.includes('queued') || statuses.includes('deferred')) rows.push(...(statements.due.all(value) as CandidateRow[]));
    if (statuses.includes('held')) rows.push(...(statements.held.all(value) as CandidateRow[]));
    rows.push(...(statements.sending.all(value) as CandidateRow[]));
    // No ORDER BY in the queries, which could tempt the planner into the table's rowid order.
    return rows.sort((a, b) => a.id - b.id);
  }
}

/**
 * Runs one queue action in one write transaction: every recipient it changes gets its new status
 * and an event naming the actor (source 'operator'), and the action gets one queue_audit row.
 * Recipients being sent (claimed by delivery) are never touched, only counted.
 */
function runQueueAction(db: Database, action: QueueAction, input: QueueSelectorInput, actor: string, now: Date): QueueActionResult {
  if (actor.trim() === '') throw new TypeError('a queue action needs an actor (cli:<user>, api:<token name>) for the audit');
  const selector = queueSelector(input);
  const rule = RULES[action];
  const at = now.toISOString();
  const selection = describeSelector(selector);
  const detail = rule.detail(actor, selection.words);
  const candidates = new Candidates(db);
  const update = db.prepare(`
    UPDATE recipients SET status = ?, next_attempt_at = ?, last_reply = CASE WHEN ? THEN ? ELSE last_reply END, updated_at = ?
     WHERE id = ? AND status = ?`);
  const insertEvent = db.prepare(`
    INSERT INTO events (at, event, message_id, recipient_id, detail, source, reason, actor, attempt_no)
    VALUES (?, ?, ?, ?, ?, 'operator', ?, ?, ?)`);
  const audit = db.prepare(`
    INSERT INTO queue_audit (at, action, selector, value, actor, recipients, skipped_sending) VALUES (?, ?, ?, ?, ?, ?, ?)`);
  const nextAttemptAt = action === 'release' ? at : null;
  const reason = action === 'bounce' ? 'bounced' : null;

  return writeTransaction(db, (): QueueActionResult => {
    let changed = 0;
    let sending = 0;
    for (const row of candidates.rows(selector, rule.from)) {
      if (row.status === 'sending') {
        if (rule.skipsSending) sending++;
        continue;
      }
      if (!rule.from.includes(row.status)) continue;
      update.run(rule.to, nextAttemptAt, rule.setsLastReply ? 1 : 0, detail, at, row.id, row.status);
      insertEvent.run(at, rule.event, row.messageId, row.id, detail, reason, actor, row.attempts);
      changed++;
    }
    audit.run(at, action, selection.by, selection.value, actor, changed, sending);
    return { action, selector, actor, at, recipients: changed, skipped: { sending } };
  })();
}

/**
 * Puts queued and deferred recipients on hold (postsuper -h): delivery never claims them until
 * they are released; they still age (delivery.retry.maxAgeSeconds applies once released).
 */
export function holdRecipients(db: Database, selector: QueueSelectorInput, actor: string, now = new Date()): QueueActionResult {
  return runQueueAction(db, 'hold', selector, actor, now);
}

/** Releases held recipients (postsuper -H): queued again, due now; attempts are kept. */
export function releaseRecipients(db: Database, selector: QueueSelectorInput, actor: string, now = new Date()): QueueActionResult {
  return runQueueAction(db, 'release', selector, actor, now);
}

/**
 * Deletes queued, deferred and held recipients (postsuper -d): status 'deleted', never sent, no
 * bounce and no webhook, no suppression; kept for history until store.retention purges them.
 */
export function deleteRecipients(db: Database, selector: QueueSelectorInput, actor: string, now = new Date()): QueueActionResult {
  return runQueueAction(db, 'delete', selector, actor, now);
}

/**
 * Bounces queued, deferred and held recipients now, unsent: status 'bounced', a permanent_fail
 * event (reason bounced, source operator) that webhooks carry like any bounce. Not a suppression:
 * it says nothing about the address.
 */
export function bounceRecipients(db: Database, selector: QueueSelectorInput, actor: string, now = new Date()): QueueActionResult {
  return runQueueAction(db, 'bounce', selector, actor, now);
}

/** The four actions by name, for callers that take the action as input (CLI, API, panel). */
export const QUEUE_ACTION_FUNCTIONS: Record<QueueAction, (db: Database, selector: QueueSelectorInput, actor: string, now?: Date) => QueueActionResult> = {
  hold: holdRecipients,
  release: releaseRecipients,
  delete: deleteRecipients,
  bounce: bounceRecipients,
};

export interface QueueAuditEntry {
  at: string;
  action: QueueAction;
  selector: QueueSelector['by'];
  value: string;
  actor: string;
  recipients: number;
  skippedSending: number;
}

/** The newest queue actions first, for the panel and the CLI. */
export function queueAudit(db: Database, limit = 100): QueueAuditEntry[] {
  return db
    .prepare('SELECT at, action, selector, value, actor, recipients, skipped_sending AS skippedSending FROM queue_audit ORDER BY id DESC LIMIT ?')
    .all(limit) as QueueAuditEntry[];
}
