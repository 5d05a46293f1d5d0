import type { Database, Statement } from 'better-sqlite3';

/** Events of one kind and outcome, counted together. */
export interface EventGroup {
  event: string;
  reason: string | null;
  source: string | null;
  bounceType: string | null;
  category: string | null;
  n: number;
}

/**
 * What was added to events and messages after a given row id, for counters read at every scrape.
 * Both tables are append-only and their ids only grow, so a range on the rowid reads only the new
 * rows however large the store is. Statements are prepared once: metrics are scraped often.
 */
export class EventCounts {
  private readonly maxEventId: Statement;
  private readonly eventGroups: Statement;
  private readonly deliveredLatencies: Statement;
  private readonly maxMessageId: Statement;

  constructor(db: Database) {
    this.maxEventId = db.prepare('SELECT coalesce(max(id), 0) FROM events').pluck();
    this.eventGroups = db.prepare(`
      SELECT event, reason, source, bounce_type AS bounceType, category, count(*) AS n
        FROM events WHERE id > ? AND id <= ? GROUP BY 1, 2, 3, 4, 5`);
    this.deliveredLatencies = db
      .prepare(`
        SELECT (julianday(e.at) - julianday(m.received_at)) * 86400.0
          FROM events e JOIN messages m ON m.id = e.message_id
         WHERE e.id > ? AND e.id <= ? AND e.event = 'delivered'`)
      .pluck();
    this.maxMessageId = db.prepare('SELECT coalesce(max(id), 0) FROM messages').pluck();
  }

  /** The newest event's id; 0 with none. */
  newestEventId(): number {
    return this.maxEventId.get() as number;
  }

  /** Events with afterId < id <= upToId, grouped by event, reason, source, type and category. */
  groupsBetween(afterId: number, upToId: number): EventGroup[] {
    return this.eventGroups.all(afterId, upToId) as EventGroup[];
  }

  /** Seconds from the message's acceptance to each `delivered` event with afterId < id <= upToId (negative if a clock stepped back). */
  deliveryLatenciesBetween(afterId: number, upToId: number): number[] {
    return this.deliveredLatencies.all(afterId, upToId) as number[];
  }

  /** The newest accepted message's id; 0 with none. */
  newestMessageId(): number {
    return this.maxMessageId.get() as number;
  }
}
