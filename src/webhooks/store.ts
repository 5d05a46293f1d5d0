import type { Database, Statement } from 'better-sqlite3';
import { writeTransaction } from '../store/write-lock.js';

/** An event as the payload needs it: the event row, its recipient and its message. */
export interface WebhookEventRow {
  eventId: number;
  at: string;
  event: string;
  source: string | null;
  reason: string | null;
  severity: string | null;
  bounceType: string | null;
  category: string | null;
  code: number | null;
  enhancedCode: string | null;
  detail: string | null;
  localIp: string | null;
  mxHost: string | null;
  address: string | null;
  domain: string | null;
  /** The dispatch the event is about (see attemptNoSql); null without a recipient. */
  attemptNo: number | null;
  queueId: string;
  mailFrom: string;
  messageIdHeader: string | null;
  subject: string | null;
  campaignId: string | null;
  /** The message's tags as a JSON array's text ('[]' for none). */
  tags: string;
  /** The message's variables as a JSON object's text; null for none. */
  variables: string | null;
  size: number;
  authUser: string | null;
  /** The start of the stored message: enough for its header section. */
  head: Buffer;
}

export interface DueDelivery {
  id: number;
  eventId: number;
  endpointUrl: string;
  attempts: number;
}

export interface EndpointRoute {
  url: string;
  events: readonly string[];
}

export interface TryRecord {
  at: string;
  httpStatus: number | null;
  error: string | null;
  durationMs: number;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'rejected' | 'failed';

/** Header bytes read from messages.raw for To and From; the rest of a large message stays on disk. */
const HEAD_BYTES = 65_536;

/**
 * Which dispatch (recipients.attempts) an event is about: events.attempt_no, written with every
 * delivery outcome. Delayed events, and events from before that column, have none; for them
 * recipients.attempts is right for the latest outcome, and for an older one the number of
 * dispatch outcomes up to that event (which is one too many after a 452 "too many recipients").
 */
const attemptNoSql = `
  CASE
    WHEN e.attempt_no IS NOT NULL THEN e.attempt_no
    WHEN r.id IS NULL THEN NULL
    WHEN EXISTS (SELECT 1 FROM events l
                  WHERE l.recipient_id = e.recipient_id AND l.id > e.id AND l.source = 'immediate'
                    AND l.event IN ('delivered', 'temporary_fail', 'permanent_fail'))
    THEN min(r.attempts, (SELECT count(*) FROM events c
                           WHERE c.recipient_id = e.recipient_id AND c.id <= e.id AND c.source = 'immediate'
                             AND c.event IN ('delivered', 'temporary_fail', 'permanent_fail')
                             AND coalesce(c.reason, 'bounced') IN ('bounced', 'blocked')))
    ELSE r.attempts
  END`;

/** The webhook tables' reads and writes: outbox fan-out, due deliveries, tries. */
export class WebhookStore {
  private readonly selectOutbox: Statement;
  private readonly insertDelivery: Statement;
  private readonly markFannedOut: Statement;
  private readonly selectDue: Statement;
  private readonly selectEvent: Statement;
  private readonly insertAttempt: Statement;
  private readonly updateDelivery: Statement;
  private readonly failOtherEndpoints: Statement;
  private readonly countPending: Statement;
  private readonly countFailed: Statement;
  private readonly fanOutTransaction: (routes: readonly EndpointRoute[], at: string, limit: number) => { events: number; deliveries: number };
  private readonly recordTransaction: (deliveryId: number, attempt: TryRecord | null, status: DeliveryStatus, attempts: number, nextAttemptAt: string, error: string | null) => void;

  constructor(db: Database) {
    this.selectOutbox = db.prepare(`
      SELECT o.id, o.event_id AS eventId, e.event FROM webhook_outbox o JOIN events e ON e.id = o.event_id
       WHERE o.fanned_out = 0 ORDER BY o.id LIMIT ?`);
    this.insertDelivery = db.prepare(`
      INSERT INTO webhook_deliveries (event_id, endpoint_url, status, attempts, next_attempt_at, created_at, updated_at)
      VALUES (?, ?, 'pending', 0, ?, ?, ?)`);
    this.markFannedOut = db.prepare('UPDATE webhook_outbox SET fanned_out = 1 WHERE id = ?');
    this.selectDue = db.prepare(`
      SELECT id, event_id AS eventId, endpoint_url AS endpointUrl, attempts FROM webhook_deliveries
       WHERE status = 'pending' AND endpoint_url = ? AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`);
    this.failOtherEndpoints = db.prepare(`
      UPDATE webhook_deliveries SET status = 'failed', last_error = ?, updated_at = ?
       WHERE status = 'pending' AND endpoint_url NOT IN (SELECT value FROM json_each(?))`);
    this.selectEvent = db.prepare(`
      SELECT e.id AS eventId, e.at, e.event, e.source, e.reason, e.severity, e.bounce_type AS bounceType, e.category,
             e.code, e.enhanced_code AS enhancedCode, e.detail, e.local_ip AS localIp, e.mx_host AS mxHost,
             r.address, r.domain, ${attemptNoSql} AS attemptNo,
             m.queue_id AS queueId, m.mail_from AS mailFrom, m.message_id_header AS messageIdHeader, m.subject,
             m.campaign_id AS campaignId, m.variables,
             (SELECT json_group_array(t.tag) FROM message_tags t WHERE t.message_id = m.id) AS tags, m.size, m.auth_user AS authUser, substr(m.raw, 1, ${HEAD_BYTES}) AS head
        FROM events e
        JOIN messages m ON m.id = e.message_id
        LEFT JOIN recipients r ON r.id = e.recipient_id
       WHERE e.id = ?`);
    this.insertAttempt = db.prepare('INSERT INTO webhook_attempts (delivery_id, at, http_status, error, duration_ms) VALUES (?, ?, ?, ?, ?)');
    this.updateDelivery = db.prepare(`
      UPDATE webhook_deliveries
         SET status = ?, attempts = ?, next_attempt_at = ?, last_http_status = coalesce(?, last_http_status),
             last_error = ?, updated_at = ?
       WHERE id = ?`);
    this.countPending = db.prepare(`SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'`);
    this.countFailed = db.prepare(`SELECT count(*) AS n FROM webhook_deliveries WHERE status IN ('failed', 'rejected')`);

    this.fanOutTransaction = writeTransaction(db, (routes: readonly EndpointRoute[], at: string, limit: number) => {
      const rows = this.selectOutbox.all(limit) as Array<{ id: number; eventId: number; event: string }>;
      let deliveries = 0;
      for (const row of rows) {
        for (const route of routes) {
          if (!route.events.includes(row.event)) continue;
          this.insertDelivery.run(row.eventId, route.url, at, at, at);
          deliveries++;
        }
        this.markFannedOut.run(row.id);
      }
      return { events: rows.length, deliveries };
    });
    this.recordTransaction = writeTransaction(db, 
      (deliveryId: number, attempt: TryRecord | null, status: DeliveryStatus, attempts: number, nextAttemptAt: string, error: string | null) => {
        const at = attempt?.at ?? new Date().toISOString();
        if (attempt) this.insertAttempt.run(deliveryId, attempt.at, attempt.httpStatus, attempt.error, attempt.durationMs);
        this.updateDelivery.run(status, attempts, nextAttemptAt, attempt?.httpStatus ?? null, error, at, deliveryId);
      },
    );
  }

  /**
   * Turns up to `limit` outbox rows into one webhook_deliveries row per endpoint that wants the
   * event, and marks them fanned out, in one transaction. An event no endpoint wants is only marked.
   */
  fanOut(routes: readonly EndpointRoute[], now: Date, limit: number): { events: number; deliveries: number } {
    return this.fanOutTransaction(routes, now.toISOString(), limit);
  }

  /** One endpoint's pending deliveries whose next try is due, oldest first. */
  due(endpointUrl: string, now: Date, limit: number): DueDelivery[] {
    return this.selectDue.all(endpointUrl, now.toISOString(), limit) as DueDelivery[];
  }

  /** Gives up the pending deliveries to endpoints not among `urls` (taken out of the config); returns how many. */
  failOthers(urls: readonly string[], now: Date, error: string): number {
    return this.failOtherEndpoints.run(error, now.toISOString(), JSON.stringify(urls)).changes;
  }

  event(eventId: number): WebhookEventRow | undefined {
    return this.selectEvent.get(eventId) as WebhookEventRow | undefined;
  }

  /** Records a try (when one was made) and the delivery's new state, in one transaction. */
  record(deliveryId: number, attempt: TryRecord | null, status: DeliveryStatus, attempts: number, nextAttemptAt: Date, error: string | null): void {
    this.recordTransaction(deliveryId, attempt, status, attempts, nextAttemptAt.toISOString(), error);
  }

  pendingCount(): number {
    return (this.countPending.get() as { n: number }).n;
  }

  failedCount(): number {
    return (this.countFailed.get() as { n: number }).n;
  }
}
