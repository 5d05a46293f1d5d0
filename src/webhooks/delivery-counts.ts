import type { Database, Statement } from 'better-sqlite3';

/**
 * The webhook backlog and the deliveries that gave up, for gauges and counters read at every
 * scrape. Reads partial indexes (webhook_outbox_pending, webhook_deliveries_due) and a window of
 * webhook_deliveries by id, never the whole table. Statements are prepared once.
 */
export class WebhookDeliveryCounts {
  private readonly outboxPending: Statement;
  private readonly deliveriesPending: Statement;
  private readonly oldestPendingDelivery: Statement;
  private readonly maxDeliveryId: Statement;
  private readonly failuresBetween: Statement;
  /** Deliveries below this id are all final (none pending): their failures are already counted. */
  private settledId: number;
  private settledFailures = 0;

  constructor(db: Database) {
    this.outboxPending = db.prepare('SELECT count(*) FROM webhook_outbox WHERE fanned_out = 0').pluck();
    this.deliveriesPending = db.prepare(`SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'`).pluck();
    this.oldestPendingDelivery = db.prepare(`SELECT min(id) FROM webhook_deliveries WHERE status = 'pending'`).pluck();
    this.maxDeliveryId = db.prepare('SELECT coalesce(max(id), 0) FROM webhook_deliveries').pluck();
    this.failuresBetween = db.prepare(`SELECT count(*) FROM webhook_deliveries WHERE id >= ? AND id < ? AND status IN ('failed', 'rejected')`).pluck();
    // Deliveries that gave up before now are not counted: only the pending window is read.
    this.settledId = this.settledUpTo();
  }

  /** Events in the outbox not yet fanned out to deliveries. */
  outboxWaiting(): number {
    return this.outboxPending.get() as number;
  }

  /** Deliveries still to be POSTed, to every endpoint. */
  pendingDeliveries(): number {
    return this.deliveriesPending.get() as number;
  }

  /**
   * Deliveries that gave up (failed or rejected) among those pending when this object was made
   * and those made since, without a scan per call: rows older than the oldest pending one are
   * final and counted once; only the window from there on is read again.
   */
  givenUp(): number {
    const settledUpTo = this.settledUpTo();
    if (settledUpTo > this.settledId) {
      this.settledFailures += this.failuresBetween.get(this.settledId, settledUpTo) as number;
      this.settledId = settledUpTo;
    }
    return this.settledFailures + (this.failuresBetween.get(this.settledId, Number.MAX_SAFE_INTEGER) as number);
  }

  /** The oldest pending delivery's id, or one past the newest when none is pending. */
  private settledUpTo(): number {
    return (this.oldestPendingDelivery.get() as number | null) ?? (this.maxDeliveryId.get() as number) + 1;
  }
}
