import type { Database } from 'better-sqlite3';
import { PENDING_STATUSES, RECIPIENT_STATUSES, type RecipientStatus } from './recipient-writer.js';

// The statuses are the recipient writer's, re-exported for the queue's readers.
export { PENDING_STATUSES, RECIPIENT_STATUSES, type RecipientStatus } from './recipient-writer.js';

export interface QueueEntry {
  queueId: string;
  receivedAt: string;
  mailFrom: string;
  address: string;
  status: RecipientStatus;
  attempts: number;
  nextAttemptAt: string | null;
  lastReply: string | null;
}

/** A destination traffic shaping paused (config/shaping.json): no connection to it until pausedUntil. */
export interface PausedDestination {
  /** The shaping rule's name: gmail, outlook, yahoo, or an operator's own. */
  destination: string;
  pausedAt: string;
  pausedUntil: string;
  /** The rule's name for the reply. */
  reaction: string;
  /** The reply that paused it, as the host gave it. */
  reason: string;
}

export interface QueueSummary {
  messages: number;
  recipientsByStatus: Record<RecipientStatus, number>;
  oldest: QueueEntry[];
  /** Destinations paused now, the one that resumes first first. */
  pausedDestinations: PausedDestination[];
}

/** Destinations still paused at `now` (the delivery stage writes them; see src/delivery/shaper.ts). */
export function pausedDestinations(db: Database, now = new Date()): PausedDestination[] {
  return db
    .prepare(
      `SELECT destination, paused_at AS pausedAt, paused_until AS pausedUntil, reaction, reason
         FROM destination_pauses WHERE paused_until > ? ORDER BY paused_until, destination`,
    )
    .all(now.toISOString()) as PausedDestination[];
}

export function queueSummary(db: Database, oldestLimit = 10): QueueSummary {
  const recipientsByStatus = Object.fromEntries(RECIPIENT_STATUSES.map((status) => [status, 0])) as Record<RecipientStatus, number>;
  const counts = db.prepare('SELECT status, count(*) AS n FROM recipients GROUP BY status').all() as Array<{ status: RecipientStatus; n: number }>;
  for (const { status, n } of counts) recipientsByStatus[status] = n;
  const { n: messages } = db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number };
  const placeholders = PENDING_STATUSES.map(() => '?').join(', ');
  const oldest = db
    .prepare(
      `SELECT m.queue_id AS queueId, m.received_at AS receivedAt, m.mail_from AS mailFrom, r.address, r.status,
              r.attempts, r.next_attempt_at AS nextAttemptAt, r.last_reply AS lastReply
         FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE r.status IN (${placeholders})
        ORDER BY m.received_at, r.id
        LIMIT ?`,
    )
    .all(...PENDING_STATUSES, oldestLimit) as QueueEntry[];
  return { messages, recipientsByStatus, oldest, pausedDestinations: pausedDestinations(db) };
}

/** Deferred recipients of one recipient domain, as the panel's queue page groups them. */
export interface DeferredDomain {
  domain: string;
  recipients: number;
  /** When the oldest of their messages was received. */
  oldestReceivedAt: string;
  /** The reply of the recipient whose status changed last: what the domain's MX says now. */
  lastReply: string | null;
  /** The earliest next attempt among them. */
  nextAttemptAt: string | null;
}

/** One recipient still waiting, with its message's queue id and sender. */
export interface WaitingRecipient {
  queueId: string;
  receivedAt: string;
  mailFrom: string;
  address: string;
  attempts: number;
  lastReply: string | null;
  nextAttemptAt: string | null;
}

/** A message with recipients on hold: release it by its queue id. */
export interface HeldMessage {
  queueId: string;
  receivedAt: string;
  mailFrom: string;
  /** Its held recipients, and the first of them by address. */
  recipients: number;
  firstAddress: string;
  /** When the last of them was put on hold. */
  heldSince: string;
  /** The last reply any of them had before the hold, if one was tried. */
  lastReply: string | null;
}

export interface ListingOf<T> {
  items: T[];
  /** How many there are in all (the items are the first `limit`). */
  total: number;
}

/**
 * The queue by recipient domain and the held mail, for the panel. Every query reads the partial
 * indexes of waiting mail (recipients_due_by_domain, recipients_held), so it costs what is in the
 * queue, not the store's history. `status IN ('queued', 'deferred')` is repeated beside
 * `status = 'deferred'` because SQLite uses a partial index only for a query that names its terms.
 */
export class QueueListing {
  private readonly domains;
  private readonly domainCount;
  private readonly ofDomain;
  private readonly ofDomainCount;
  private readonly held;
  private readonly heldCount;

  constructor(db: Database) {
    const deferred = (alias: string) => `${alias}.status IN ('queued', 'deferred') AND ${alias}.status = 'deferred'`;
    this.domains = db.prepare(`
      SELECT r.domain, count(*) AS recipients, min(m.received_at) AS oldestReceivedAt, min(r.next_attempt_at) AS nextAttemptAt,
             (SELECT l.last_reply FROM recipients l WHERE l.domain = r.domain AND ${deferred('l')} ORDER BY l.updated_at DESC, l.id DESC LIMIT 1) AS lastReply
        FROM recipients r JOIN messages m ON m.id = r.message_id
       WHERE ${deferred('r')}
       GROUP BY r.domain
       ORDER BY recipients DESC, r.domain
       LIMIT ?`);
    this.domainCount = db.prepare(`SELECT count(DISTINCT r.domain) FROM recipients r WHERE ${deferred('r')}`).pluck();
    this.ofDomain = db.prepare(`
      SELECT m.queue_id AS queueId, m.received_at AS receivedAt, m.mail_from AS mailFrom, r.address, r.attempts,
             r.last_reply AS lastReply, r.next_attempt_at AS nextAttemptAt
        FROM recipients r JOIN messages m ON m.id = r.message_id
       WHERE r.domain = ? AND ${deferred('r')}
       ORDER BY r.next_attempt_at, r.id
       LIMIT ?`);
    this.ofDomainCount = db.prepare(`SELECT count(*) FROM recipients r WHERE r.domain = ? AND ${deferred('r')}`).pluck();
    this.held = db.prepare(`
      SELECT m.queue_id AS queueId, m.received_at AS receivedAt, m.mail_from AS mailFrom, count(*) AS recipients,
             min(r.address) AS firstAddress, max(r.updated_at) AS heldSince,
             (SELECT l.last_reply FROM recipients l WHERE l.message_id = r.message_id AND l.status = 'held' AND l.last_reply IS NOT NULL
               ORDER BY l.updated_at DESC, l.id DESC LIMIT 1) AS lastReply
        FROM recipients r JOIN messages m ON m.id = r.message_id
       WHERE r.status = 'held'
       GROUP BY +r.message_id
       ORDER BY m.received_at, m.id
       LIMIT ?`);
    this.heldCount = db.prepare(`SELECT count(DISTINCT +r.message_id) FROM recipients r WHERE r.status = 'held'`).pluck();
  }

  /** Deferred recipients by domain, the domains with most first. */
  deferredDomains(limit: number): ListingOf<DeferredDomain> {
    return { items: this.domains.all(limit) as DeferredDomain[], total: this.domainCount.get() as number };
  }

  /** The deferred recipients of one domain (as recipients.domain holds it), the next due first. */
  deferredAt(domain: string, limit: number): ListingOf<WaitingRecipient> {
    return { items: this.ofDomain.all(domain, limit) as WaitingRecipient[], total: this.ofDomainCount.get(domain) as number };
  }

  /** Messages with held recipients, the oldest first. */
  heldMessages(limit: number): ListingOf<HeldMessage> {
    return { items: this.held.all(limit) as HeldMessage[], total: this.heldCount.get() as number };
  }
}

/** Waiting recipients of one status and how many. */
export interface StatusCount {
  status: RecipientStatus;
  n: number;
}

/**
 * The queue's size and age, for gauges read at every scrape: each query reads a partial index of
 * waiting mail (recipients_due, recipients_held), never the store's history.
 */
export class QueueGauges {
  private readonly waiting;
  private readonly sending;
  private readonly held;
  private readonly oldestWaiting;

  constructor(db: Database) {
    // recipients_due is a partial index on exactly these statuses.
    this.waiting = db.prepare(`SELECT status, count(*) AS n FROM recipients WHERE status IN ('queued', 'deferred') GROUP BY status`);
    // Counting `sending` needs an index on recipients.status; without one it would scan the table at every scrape.
    const sending = `SELECT count(*) FROM recipients WHERE status = 'sending'`;
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sending}`).all() as Array<{ detail: string }>).map((row) => row.detail).join(' ');
    this.sending = /USING (COVERING )?INDEX/.test(plan) ? db.prepare(sending).pluck() : null;
    // recipients_held is a partial index on exactly this status.
    this.held = db.prepare(`SELECT count(*) FROM recipients WHERE status = 'held'`).pluck();
    this.oldestWaiting = db
      .prepare(`SELECT min(m.received_at) FROM recipients r JOIN messages m ON m.id = r.message_id WHERE r.status IN ('queued', 'deferred')`)
      .pluck();
  }

  /** Queued and deferred recipients by status; a status with none is missing. */
  waitingByStatus(): StatusCount[] {
    return this.waiting.all() as StatusCount[];
  }

  /** Recipients being sent now; null when no index serves the count (it is then not read at all). */
  sendingCount(): number | null {
    return this.sending ? (this.sending.get() as number) : null;
  }

  /** Recipients an operator holds. */
  heldCount(): number {
    return this.held.get() as number;
  }

  /** When the oldest message with a recipient queued or deferred was received; null when none waits. */
  oldestWaitingReceivedAt(): string | null {
    return this.oldestWaiting.get() as string | null;
  }
}
