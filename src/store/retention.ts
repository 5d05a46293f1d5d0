import type { Database, Statement } from 'better-sqlite3';
import { writeTransaction } from './write-lock.js';

export interface RetentionSettings {
  /** Days after which a finished message's body is dropped; 0 keeps bodies forever. */
  bodyDays: number;
  /** Days after which a finished message and everything about it is deleted; 0 keeps it forever. */
  historyDays: number;
  /**
   * Days after which an inbound report that no event names (no valid token, nothing to change, or
   * unreadable) is deleted, sooner than historyDays; 0: such reports follow historyDays.
   */
  unmatchedReportDays: number;
}

export interface PurgeCounts {
  /** Messages whose body was dropped (metadata, recipients and events kept). */
  bodiesDropped: number;
  /** Messages deleted with their recipients, events, attempts and webhook rows. */
  messagesDeleted: number;
  /** Inbound reports deleted: old, and named by no event that is kept. */
  reportsDeleted: number;
  /** Other nodes' events (store.shared.url) older than historyDays, deleted from this node's copy. */
  otherNodeEventsDeleted: number;
}

const DAY_MS = 86_400_000;

const NOTHING: Readonly<PurgeCounts> = { bodiesDropped: 0, messagesDeleted: 0, reportsDeleted: 0, otherNodeEventsDeleted: 0 };

/** A message is finished when none of its recipients can still be sent: held mail can, once released. */
const FINISHED = `NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.status IN ('queued', 'sending', 'deferred', 'held'))`;

function cutoff(now: Date, days: number): string {
  return new Date(now.getTime() - days * DAY_MS).toISOString();
}

/** A horizon of 0 keeps for ever: '' sorts before every time, so nothing is older. */
function cutoffOrNever(now: Date, days: number): string {
  return days > 0 ? cutoff(now, days) : '';
}

/** A report start-up would still process (ReportStore.unappliedIds) is never purged as unmatched. */
const PROCESSED_REPORT = `NOT (ir.applied_at IS NULL AND ir.parse_status <> 'failed')`;

/**
 * Keeps the store from growing for ever, as Postfix empties its queue after delivery and a mail
 * service keeps its logs for a while. Two horizons, both counted from when the message was
 * received and both applied to finished messages only (nothing still queued, sending, deferred
 * or held is touched; deleted recipients are finished):
 *
 * - bodyDays: the body goes (it is what takes the space); the metadata, recipients, attempts
 *   and events stay for reports, webhooks and `v_recipient_history`.
 * - historyDays: the message goes with everything about it (the foreign keys cascade to
 *   recipients, events, attempts and webhook rows), then inbound reports as old that no kept
 *   event names. Suppression lists and their audit are never purged.
 * - unmatchedReportDays: an inbound report that no event names goes sooner. Anyone can send
 *   reports to postmaster@, so what changed nothing must not stay as long as what did.
 *
 * Work is done in steps of at most `limit` messages, each its own short transaction, so a large
 * purge never holds the store for long.
 */
export class Retention {
  private readonly dropBodies: Statement;
  private readonly deleteMessages: Statement;
  private readonly deleteReports: Statement;
  private readonly countBodies: Statement;
  private readonly countMessages: Statement;
  private readonly countReports: Statement;
  private readonly deleteOtherNodeEvents: Statement;
  private readonly countOtherNodeEvents: Statement;

  constructor(
    private readonly db: Database,
    private readonly settings: RetentionSettings,
  ) {
    // @floor: the history cutoff. Messages older than it are deleted whole, not emptied first.
    const bodies = `FROM messages m WHERE m.body_dropped_at IS NULL AND m.received_at < @cutoff AND m.received_at >= @floor AND ${FINISHED}`;
    // The message holding the newest event stays, so events.max(id) never falls: SQLite would hand
    // out freed ids again, and the shared store's cursor on events.id (src/shared/event-sync.ts)
    // would skip events that reused them.
    const messages = `FROM messages m WHERE m.received_at < @cutoff AND ${FINISHED} AND m.id IS NOT (SELECT message_id FROM events WHERE id = (SELECT max(id) FROM events))`;
    this.dropBodies = db.prepare(`
      UPDATE messages SET raw = X'', body_dropped_at = @now
       WHERE id IN (SELECT m.id ${bodies} ORDER BY m.received_at LIMIT @limit)`);
    this.deleteMessages = db.prepare(`DELETE FROM messages WHERE id IN (SELECT m.id ${messages} ORDER BY m.received_at LIMIT @limit)`);
    // @unmatched: the unmatched reports' cutoff; a report no event names goes after either.
    this.deleteReports = db.prepare(`
      DELETE FROM inbound_reports WHERE id IN (
        SELECT ir.id FROM inbound_reports ir
         WHERE (ir.received_at < @cutoff OR (ir.received_at < @unmatched AND ${PROCESSED_REPORT}))
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.report_id = ir.id)
         ORDER BY ir.received_at LIMIT @limit)`);
    this.countBodies = db.prepare(`SELECT count(*) AS n ${bodies}`);
    this.countMessages = db.prepare(`SELECT count(*) AS n ${messages}`);
    // For the dry run: reports whose events all belong to messages that would go.
    this.countReports = db.prepare(`
      SELECT count(*) AS n FROM inbound_reports ir
       WHERE (ir.received_at < @cutoff
              AND NOT EXISTS (SELECT 1 FROM events e JOIN messages m ON m.id = e.message_id
                               WHERE e.report_id = ir.id AND NOT (m.received_at < @cutoff AND ${FINISHED})))
          OR (ir.received_at < @unmatched AND ${PROCESSED_REPORT} AND NOT EXISTS (SELECT 1 FROM events e WHERE e.report_id = ir.id))`);
    // The other nodes' events follow the same horizon, by the event's time: their messages are in those nodes' stores.
    this.deleteOtherNodeEvents = db.prepare(`
      DELETE FROM other_node_events WHERE version IN (SELECT version FROM other_node_events WHERE at < @cutoff ORDER BY at LIMIT @limit)`);
    this.countOtherNodeEvents = db.prepare('SELECT count(*) AS n FROM other_node_events WHERE at < @cutoff');
  }

  get enabled(): boolean {
    return this.settings.bodyDays > 0 || this.settings.historyDays > 0 || this.settings.unmatchedReportDays > 0;
  }

  /** One bounded step: up to `limit` of each kind, in one transaction. All zero means done. */
  step(now: Date, limit: number): PurgeCounts {
    return writeTransaction(this.db, (): PurgeCounts => {
      const counts: PurgeCounts = { ...NOTHING };
      const at = now.toISOString();
      if (this.settings.historyDays > 0) {
        counts.messagesDeleted = this.deleteMessages.run({ cutoff: cutoff(now, this.settings.historyDays), limit }).changes;
        counts.otherNodeEventsDeleted = this.deleteOtherNodeEvents.run({ cutoff: cutoff(now, this.settings.historyDays), limit }).changes;
      }
      if (this.settings.historyDays > 0 || this.settings.unmatchedReportDays > 0) {
        counts.reportsDeleted = this.deleteReports.run({ cutoff: cutoffOrNever(now, this.settings.historyDays), unmatched: cutoffOrNever(now, this.settings.unmatchedReportDays), limit }).changes;
      }
      if (this.settings.bodyDays > 0) {
        counts.bodiesDropped = this.dropBodies.run({ cutoff: cutoff(now, this.settings.bodyDays), floor: this.historyFloor(now), now: at, limit }).changes;
      }
      return counts;
    })();
  }

  /** Receipt times before this are the history purge's; '' sorts before every time. */
  private historyFloor(now: Date): string {
    return this.settings.historyDays > 0 ? cutoff(now, this.settings.historyDays) : '';
  }

  /** What a purge at `now` would do, without doing it. */
  pending(now: Date): PurgeCounts {
    const counts: PurgeCounts = { ...NOTHING };
    if (this.settings.historyDays > 0) {
      counts.messagesDeleted = (this.countMessages.get({ cutoff: cutoff(now, this.settings.historyDays) }) as { n: number }).n;
      counts.otherNodeEventsDeleted = (this.countOtherNodeEvents.get({ cutoff: cutoff(now, this.settings.historyDays) }) as { n: number }).n;
    }
    if (this.settings.historyDays > 0 || this.settings.unmatchedReportDays > 0) {
      counts.reportsDeleted = (this.countReports.get({ cutoff: cutoffOrNever(now, this.settings.historyDays), unmatched: cutoffOrNever(now, this.settings.unmatchedReportDays) }) as { n: number }).n;
    }
    if (this.settings.bodyDays > 0) {
      counts.bodiesDropped = (this.countBodies.get({ cutoff: cutoff(now, this.settings.bodyDays), floor: this.historyFloor(now) }) as { n: number }).n;
    }
    return counts;
  }
}

/** Adds one step's counts to a running total. */
export function addCounts(total: PurgeCounts, step: PurgeCounts): PurgeCounts {
  return {
    bodiesDropped: total.bodiesDropped + step.bodiesDropped,
    messagesDeleted: total.messagesDeleted + step.messagesDeleted,
    reportsDeleted: total.reportsDeleted + step.reportsDeleted,
    otherNodeEventsDeleted: total.otherNodeEventsDeleted + step.otherNodeEventsDeleted,
  };
}

export function isNothing(counts: PurgeCounts): boolean {
  return counts.bodiesDropped === 0 && counts.messagesDeleted === 0 && counts.reportsDeleted === 0 && counts.otherNodeEventsDeleted === 0;
}

/** Messages per step: each step is one short transaction, and the event loop runs between steps. */
export const PURGE_STEP = 500;

/** Runs steps until nothing is left, handing control back to the event loop between them. */
export async function purgeInSteps(retention: Retention, now: Date, onStep: (total: PurgeCounts) => void = () => undefined): Promise<PurgeCounts> {
  let total: PurgeCounts = { ...NOTHING };
  for (;;) {
    const step = retention.step(now, PURGE_STEP);
    if (isNothing(step)) return total;
    total = addCounts(total, step);
    onStep(total);
    await new Promise((resolve) => setImmediate(resolve));
  }
}
