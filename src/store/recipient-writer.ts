import type { Database, Statement } from 'better-sqlite3';
import type { Classification } from '../bounces/classifier.js';

/**
 * Recipient statuses, in the order a recipient moves through them. `held` and `deleted` are an
 * operator's (src/store/queue-actions.ts): held waits until released and is never claimed by
 * delivery; deleted left the queue unsent, without a bounce, and is kept for history.
 */
export const RECIPIENT_STATUSES = ['queued', 'sending', 'deferred', 'held', 'delivered', 'bounced', 'expired', 'suppressed', 'deleted'] as const;
export type RecipientStatus = (typeof RECIPIENT_STATUSES)[number];

/** Statuses still in the queue (v_queue): waiting for delivery, in it, or held by an operator. */
export const PENDING_STATUSES: readonly RecipientStatus[] = ['queued', 'sending', 'deferred', 'held'];

/**
 * Every event the relay records (events.event). accepted: stored at submission; delivered,
 * temporary_fail, permanent_fail: a try's outcome, or the relay's own decision (suppressed,
 * expired); delayed, complained: what a delayed report said; unsubscribed: the one-click link;
 * held, released, deleted: an operator's queue action (an operator's bounce is a permanent_fail).
 */
export const EVENT_NAMES = ['accepted', 'delivered', 'temporary_fail', 'permanent_fail', 'delayed', 'complained', 'unsubscribed', 'held', 'released', 'deleted'] as const;
export type EventName = (typeof EVENT_NAMES)[number];

/** Who said it: the next hop's reply (immediate), a report that came back (delayed), an operator. */
export type EventSource = 'immediate' | 'delayed' | 'operator';

/** One row of events; what a field does not apply to is left out (NULL). */
export interface EventRecord {
  event: EventName;
  at: string;
  messageId: number;
  recipientId: number;
  /** What the event is about, in words: a reply, a reason. */
  detail?: string | null;
  source?: EventSource | null;
  /** permanent_fail: bounced | blocked | expired | suppressed; unsubscribed: the way it came. */
  reason?: string | null;
  classification?: Pick<Classification, 'severity' | 'type' | 'category' | 'code' | 'enhancedCode'> | null;
  /** The inbound report (inbound_reports.id) a delayed event comes from. */
  reportId?: number | null;
  /** The transaction the event is about: our source address and the host it went to. */
  localIp?: string | null;
  mxHost?: string | null;
  /** The dispatch the event is about, as recipients.attempts counts them. */
  attemptNo?: number | null;
  /** cli:<os user> | api:<token name>; null for the relay's own events. */
  actor?: string | null;
}

/** A recipient's state after a try, a decision or a report. */
export interface RecipientChange {
  status: RecipientStatus;
  attempts: number;
  /** When the scheduler may pick it again; null once it is done. */
  nextAttemptAt: string | null;
  lastReply: string | null;
  at: string;
}

const writers = new WeakMap<Database, RecipientWriter>();

/**
 * The one writer of the `recipients` and `events` tables: every module that changes a
 * recipient's state or records what happened to it calls this, with the typed status and event
 * names, instead of writing its own SQL (the spool, delivery, reports applied, unsubscribes,
 * operators' queue actions). Statements are prepared once per connection (`of`). It does not open
 * transactions: each caller writes a change and its event inside its own, so the status always
 * agrees with the history.
 */
export class RecipientWriter {
  private readonly insertRecipient: Statement;
  private readonly insertEvent: Statement;
  private readonly insertAccepted: Statement;
  private readonly setSending: Statement;
  private readonly setState: Statement;
  private readonly setHeld: Statement;
  private readonly setFinal: Statement;
  private readonly setByOperator: Statement;
  private readonly requeueAllSending: Statement;
  private readonly postponeOfDomain: Statement;
  private readonly flushEvery: Statement;
  private readonly flushOfMessage: Statement;
  private readonly flushOfDomain: Statement;
  private readonly flushOfSender: Statement;

  /** The writer of this connection's store. */
  static of(db: Database): RecipientWriter {
    let writer = writers.get(db);
    if (!writer) {
      writer = new RecipientWriter(db);
      writers.set(db, writer);
    }
    return writer;
  }

  private constructor(db: Database) {
    this.insertRecipient = db.prepare(`
      INSERT INTO recipients (message_id, address, domain, status, next_attempt_at, updated_at)
      VALUES (?, ?, ?, 'queued', ?, ?)`);
    this.insertEvent = db.prepare(`
      INSERT INTO events (at, event, message_id, recipient_id, detail, source, reason, severity, bounce_type, category, code, enhanced_code,
                          report_id, local_ip, mx_host, attempt_no, actor)
      VALUES (@at, @event, @messageId, @recipientId, @detail, @source, @reason, @severity, @bounceType, @category, @code, @enhancedCode,
              @reportId, @localIp, @mxHost, @attemptNo, @actor)`);
    // The spool's hot path: one per recipient of every message, bound by position.
    this.insertAccepted = db.prepare(`INSERT INTO events (at, event, message_id, recipient_id) VALUES (?, 'accepted', ?, ?)`);
    this.setSending = db.prepare(`UPDATE recipients SET status = 'sending', updated_at = ? WHERE id = ?`);
    this.setState = db.prepare(`UPDATE recipients SET status = ?, attempts = ?, next_attempt_at = ?, last_reply = ?, updated_at = ? WHERE id = ?`);
    this.setHeld = db.prepare(`UPDATE recipients SET status = ?, next_attempt_at = ?, last_reply = coalesce(last_reply, ?), updated_at = ? WHERE id = ?`);
    this.setFinal = db.prepare(`UPDATE recipients SET status = ?, next_attempt_at = NULL, last_reply = ?, updated_at = ? WHERE id = ?`);
    this.setByOperator = db.prepare(`
      UPDATE recipients SET status = ?, next_attempt_at = ?, last_reply = CASE WHEN ? THEN ? ELSE last_reply END, updated_at = ?
       WHERE id = ? AND status = ?`);
    this.requeueAllSending = db.prepare(`UPDATE recipients SET status = 'queued', next_attempt_at = ?, updated_at = ? WHERE status = 'sending'`);
    this.postponeOfDomain = db.prepare(`
      UPDATE recipients SET next_attempt_at = ?, updated_at = ?
       WHERE domain = ? AND status IN ('queued', 'deferred') AND next_attempt_at < ?`);
    // Flush's updates, by selector. Each names the partial index's own term (status IN
    // ('queued', 'deferred')) so SQLite can read recipients_due_by_domain / recipients_due, not the table.
    const deferred = `status IN ('queued', 'deferred') AND status = 'deferred' AND next_attempt_at > @at`;
    const set = 'UPDATE recipients SET next_attempt_at = @at, updated_at = @at';
    this.flushEvery = db.prepare(`${set} WHERE ${deferred}`);
    this.flushOfMessage = db.prepare(`${set} WHERE message_id = @messageId AND ${deferred}`);
    this.flushOfDomain = db.prepare(`${set} WHERE domain = @value AND ${deferred}`);
    // Recipients first (CROSS JOIN), as for the queue actions: messages has no index on mail_from.
    this.flushOfSender = db.prepare(`${set} WHERE id IN (
      SELECT r.id FROM recipients r CROSS JOIN messages m ON m.id = r.message_id
       WHERE r.status IN ('queued', 'deferred') AND r.status = 'deferred' AND r.next_attempt_at > @at AND lower(m.mail_from) = lower(@value))`);
  }

  /** A recipient of a message just stored: queued, due at once, with its `accepted` event. */
  addAccepted(messageId: number | bigint, address: string, domain: string, at: string): void {
    const { lastInsertRowid: recipientId } = this.insertRecipient.run(messageId, address, domain, at, at);
    this.insertAccepted.run(at, messageId, recipientId);
  }

  event(record: EventRecord): void {
    const c = record.classification;
    this.insertEvent.run({
      at: record.at,
      event: record.event,
      messageId: record.messageId,
      recipientId: record.recipientId,
      detail: record.detail ?? null,
      source: record.source ?? null,
      reason: record.reason ?? null,
      severity: c?.severity ?? null,
      bounceType: c?.type ?? null,
      category: c?.category ?? null,
      code: c?.code ?? null,
      enhancedCode: c?.enhancedCode ?? null,
      reportId: record.reportId ?? null,
      localIp: record.localIp ?? null,
      mxHost: record.mxHost ?? null,
      attemptNo: record.attemptNo ?? null,
      actor: record.actor ?? null,
    });
  }

  /** Claimed by delivery: not claimed again until its outcome is written (or the next start requeues it). */
  markSending(recipientId: number, at: string): void {
    this.setSending.run(at, recipientId);
  }

  /** Its state after a try or the relay's decision. */
  change(recipientId: number, change: RecipientChange): void {
    this.setState.run(change.status, change.attempts, change.nextAttemptAt, change.lastReply, change.at, recipientId);
  }

  /**
   * Held back unsent (traffic shaping, a sending limit): due later, no attempt counted. A reply
   * the recipient already has is kept (it is what a host said); one that has none gets `reason`.
   */
  holdBack(recipientId: number, status: 'queued' | 'deferred', nextAttemptAt: string, reason: string, at: string): void {
    this.setHeld.run(status, nextAttemptAt, reason, at, recipientId);
  }

  /** Done by what a delayed report said: never due again, its attempts unchanged. */
  finish(recipientId: number, status: RecipientStatus, lastReply: string | null, at: string): void {
    this.setFinal.run(status, lastReply, at, recipientId);
  }

  /**
   * An operator's queue action, only if the recipient is still `from` (delivery may have claimed
   * it meanwhile); lastReply undefined keeps the one it has. Returns 1 when it changed, else 0.
   */
  moveByOperator(recipientId: number, from: RecipientStatus, to: RecipientStatus, nextAttemptAt: string | null, lastReply: string | undefined, at: string): number {
    return this.setByOperator.run(to, nextAttemptAt, lastReply === undefined ? 0 : 1, lastReply ?? null, at, recipientId, from).changes;
  }

  /** At start: recipients left `sending` by the last run are queued again; returns how many. */
  requeueSending(at: string): number {
    return this.requeueAllSending.run(at, at).changes;
  }

  /** A paused destination's domain: its waiting recipients due no sooner than `until`; returns how many moved. */
  postponeDomain(domain: string, until: string, at: string): number {
    return this.postponeOfDomain.run(until, at, domain, until).changes;
  }

  /** Deferred recipients made due now (an operator's flush): all, of one message, domain or sender. */
  flush(scope: { all: true } | { messageId: number } | { domain: string } | { sender: string }, at: string): number {
    if ('all' in scope) return this.flushEvery.run({ at }).changes;
    if ('messageId' in scope) return this.flushOfMessage.run({ at, messageId: scope.messageId }).changes;
    if ('domain' in scope) return this.flushOfDomain.run({ at, value: scope.domain }).changes;
    return this.flushOfSender.run({ at, value: scope.sender }).changes;
  }
}
