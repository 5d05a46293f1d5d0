import type { Database } from 'better-sqlite3';

/**
 * Recipient statuses, in the order a recipient moves through them. `held` and `deleted` are an
 * operator's (src/store/queue-actions.ts): held waits until released and is never claimed by
 * delivery; deleted left the queue unsent, without a bounce, and is kept for history.
 */
export const RECIPIENT_STATUSES = ['queued', 'sending', 'deferred', 'held', 'delivered', 'bounced', 'expired', 'suppressed', 'deleted'] as const;
export type RecipientStatus = (typeof RECIPIENT_STATUSES)[number];

/** Statuses still in the queue (v_queue): waiting for delivery, in it, or held by an operator. */
export const PENDING_STATUSES: readonly RecipientStatus[] = ['queued', 'sending', 'deferred', 'held'];

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

export interface QueueSummary {
  messages: number;
  recipientsByStatus: Record<RecipientStatus, number>;
  oldest: QueueEntry[];
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
  return { messages, recipientsByStatus, oldest };
}
