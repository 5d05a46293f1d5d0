import type { Database, Statement } from 'better-sqlite3';

/** One endpoint's deliveries still to be POSTed. */
export interface EndpointBacklog {
  pending: number;
  /** The soonest next try. */
  nextAttemptAt: string;
  /** The oldest pending delivery: when it was made (its event fanned out), its tries so far, and why the last failed. */
  oldestCreatedAt: string;
  oldestAttempts: number;
  oldestLastError: string | null;
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
 * tries. Reads indexes (webhook_deliveries_pending_by_endpoint, webhook_deliveries_due,
 * webhook_outbox_pending) and the newest rows of webhook_attempts by row id, never a whole table.
 */
export class WebhookStatus {
  private readonly endpointPending: Statement;
  private readonly endpointNextTry: Statement;
  private readonly deliveryById: Statement;
  private readonly allPending: Statement;
  private readonly outboxStatement: Statement;
  private readonly failuresStatement: Statement;
  private readonly maxAttemptId: Statement;

  constructor(db: Database) {
    this.endpointPending = db.prepare(`SELECT count(*) AS pending, min(id) AS oldestId FROM webhook_deliveries WHERE status = 'pending' AND endpoint_url = ?`);
    this.endpointNextTry = db
      .prepare(`SELECT next_attempt_at FROM webhook_deliveries WHERE status = 'pending' AND endpoint_url = ? ORDER BY next_attempt_at LIMIT 1`)
      .pluck();
    this.deliveryById = db.prepare('SELECT created_at AS createdAt, attempts, last_error AS lastError FROM webhook_deliveries WHERE id = ?');
    this.allPending = db.prepare(`SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'`).pluck();
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

  /** One endpoint's pending deliveries (by its URL as configured), null when none waits. */
  backlog(endpointUrl: string): EndpointBacklog | null {
    const { pending, oldestId } = this.endpointPending.get(endpointUrl) as { pending: number; oldestId: number | null };
    if (pending === 0 || oldestId === null) return null;
    const oldest = this.deliveryById.get(oldestId) as { createdAt: string; attempts: number; lastError: string | null };
    return {
      pending,
      nextAttemptAt: this.endpointNextTry.get(endpointUrl) as string,
      oldestCreatedAt: oldest.createdAt,
      oldestAttempts: oldest.attempts,
      oldestLastError: oldest.lastError,
    };
  }

  /** Pending deliveries of every endpoint, configured or not. */
  pendingTotal(): number {
    return this.allPending.get() as number;
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
