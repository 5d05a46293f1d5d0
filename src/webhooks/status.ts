import type { Database, Statement } from 'better-sqlite3';

/** One endpoint's deliveries still to be POSTed. */
export interface EndpointBacklog {
  /** As stored (webhook_deliveries.endpoint_url): redact it before showing it. */
  endpointUrl: string;
  pending: number;
  /** Of those, how many have failed at least once and wait for a retry. */
  retrying: number;
  /** When the oldest pending delivery was made (its event fanned out). */
  oldestCreatedAt: string;
  /** The soonest next try. */
  nextAttemptAt: string;
}

/** Events in the outbox not yet turned into deliveries (the sender does that every poll). */
export interface OutboxWaiting {
  events: number;
  oldestCreatedAt: string | null;
}

/** One POST that did not get a 2xx (webhook_attempts), with what it was about. */
export interface WebhookFailure {
  at: string;
  /** Null when no response came (the error says why). */
  httpStatus: number | null;
  error: string | null;
  durationMs: number;
  /** As stored: redact it before showing it. */
  endpointUrl: string;
  /** The delivery's state now: pending (tried again later), delivered, rejected or failed (given up). */
  deliveryStatus: string;
  event: string;
  eventAt: string;
  address: string | null;
  queueId: string;
}

/**
 * What the webhook tables say now, for the panel: the backlog per endpoint and the last failed
 * tries. Reads partial indexes (webhook_deliveries_due, webhook_outbox_pending) and the newest
 * rows of webhook_attempts by row id, never a whole table.
 */
export class WebhookStatus {
  private readonly backlogStatement: Statement;
  private readonly outboxStatement: Statement;
  private readonly failuresStatement: Statement;
  private readonly maxAttemptId: Statement;

  constructor(db: Database) {
    this.backlogStatement = db.prepare(`
      SELECT endpoint_url AS endpointUrl, count(*) AS pending, sum(attempts > 0) AS retrying,
             min(created_at) AS oldestCreatedAt, min(next_attempt_at) AS nextAttemptAt
        FROM webhook_deliveries WHERE status = 'pending'
       GROUP BY endpoint_url ORDER BY endpoint_url`);
    this.outboxStatement = db.prepare('SELECT count(*) AS events, min(created_at) AS oldestCreatedAt FROM webhook_outbox WHERE fanned_out = 0');
    this.failuresStatement = db.prepare(`
      SELECT a.at, a.http_status AS httpStatus, a.error, a.duration_ms AS durationMs, d.endpoint_url AS endpointUrl,
             d.status AS deliveryStatus, e.event, e.at AS eventAt, r.address, m.queue_id AS queueId
        FROM webhook_attempts a
        JOIN webhook_deliveries d ON d.id = a.delivery_id
        JOIN events e ON e.id = d.event_id
        JOIN messages m ON m.id = e.message_id
        LEFT JOIN recipients r ON r.id = e.recipient_id
       WHERE a.id > @floor AND (a.http_status IS NULL OR a.http_status NOT BETWEEN 200 AND 299)
       ORDER BY a.id DESC LIMIT @limit`);
    this.maxAttemptId = db.prepare('SELECT coalesce(max(id), 0) FROM webhook_attempts').pluck();
  }

  backlog(): EndpointBacklog[] {
    return this.backlogStatement.all() as EndpointBacklog[];
  }

  outbox(): OutboxWaiting {
    return this.outboxStatement.get() as OutboxWaiting;
  }

  /** The newest `limit` failed tries among the last `window` tries (a bound on what is read). */
  recentFailures(limit: number, window: number): WebhookFailure[] {
    const floor = (this.maxAttemptId.get() as number) - window;
    return this.failuresStatement.all({ floor, limit }) as WebhookFailure[];
  }
}
