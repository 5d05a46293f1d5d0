import type { Database, Statement } from 'better-sqlite3';
import { CATEGORIES } from '../bounces/categories.js';

/** What happened to mail over a period, counted from events (the panel's overview). */
export interface ActivityCounts {
  accepted: number;
  delivered: number;
  /** temporary_fail events: tries that will be repeated. */
  deferred: number;
  /** permanent_fail events other than "suppressed": bounced, blocked or expired. */
  bounced: number;
  /** permanent_fail events with reason "suppressed": mail not sent because the address is on a list. */
  suppressed: number;
}

export interface HourlyBounces {
  /** The hours of the period, oldest first, as `YYYY-MM-DDTHH` (UTC). */
  hours: string[];
  /** Per category, one count per hour (same order as hours); categories with no bounce are left out. */
  byCategory: Record<string, number[]>;
  /**
   * Every category in one fixed order (the 17, hard first, then "unclassified" and any other):
   * a chart colours and stacks by it, so a category keeps its colour from one day to the next.
   */
  categories: string[];
}

/** A failure event the classifier did not label (none should be; counted rather than lost). */
const UNCLASSIFIED = 'unclassified';

export interface DomainBounces {
  domain: string;
  bounces: number;
}

const HOUR_MS = 60 * 60 * 1000;

/**
 * The overview's figures, read through the events' indexes on their time (events_by_at, and
 * events_failures_by_at for the failures): only the period's rows are read. With a shared
 * store they count every node's mail.
 */
export class Activity {
  private readonly counts: Statement;
  private readonly hourly: Statement;
  private readonly topDomains: Statement;

  constructor(db: Database) {
    // Every node's mail: this node's events, and the other nodes' copies when the store is shared
    // (other_node_events, src/shared/event-sync.ts; empty otherwise).
    this.counts = db.prepare(`
      SELECT event, reason, sum(n) AS n FROM (
        SELECT event, coalesce(reason, '') AS reason, count(*) AS n
          FROM events WHERE at >= @since
            AND event IN ('accepted', 'delivered', 'temporary_fail', 'permanent_fail')
         GROUP BY event, coalesce(reason, '')
        UNION ALL
        SELECT event, coalesce(reason, '') AS reason, count(*) AS n
          FROM other_node_events WHERE at >= @since
            AND event IN ('accepted', 'delivered', 'temporary_fail', 'permanent_fail')
         GROUP BY event, coalesce(reason, ''))
       GROUP BY event, reason`);
    this.hourly = db.prepare(`
      SELECT hour, category, sum(n) AS n FROM (
        SELECT substr(at, 1, 13) AS hour, coalesce(category, '${UNCLASSIFIED}') AS category, count(*) AS n
          FROM events
         WHERE event = 'permanent_fail' AND at >= @since AND coalesce(reason, '') <> 'suppressed'
         GROUP BY hour, category
        UNION ALL
        SELECT substr(at, 1, 13) AS hour, coalesce(category, '${UNCLASSIFIED}') AS category, count(*) AS n
          FROM other_node_events
         WHERE event = 'permanent_fail' AND at >= @since AND coalesce(reason, '') <> 'suppressed'
         GROUP BY hour, category)
       GROUP BY hour, category`);
    this.topDomains = db.prepare(`
      SELECT domain, sum(bounces) AS bounces FROM (
        SELECT r.domain, count(*) AS bounces
          FROM events e JOIN recipients r ON r.id = e.recipient_id
         WHERE e.event = 'permanent_fail' AND e.at >= @since AND coalesce(e.reason, '') <> 'suppressed'
         GROUP BY r.domain
        UNION ALL
        SELECT domain, count(*) AS bounces
          FROM other_node_events
         WHERE event = 'permanent_fail' AND at >= @since AND coalesce(reason, '') <> 'suppressed' AND domain IS NOT NULL
         GROUP BY domain)
       GROUP BY domain ORDER BY bounces DESC, domain LIMIT @limit`);
  }

  /** Counts of events at or after `since`. */
  countsSince(since: Date): ActivityCounts {
    const result: ActivityCounts = { accepted: 0, delivered: 0, deferred: 0, bounced: 0, suppressed: 0 };
    const rows = this.counts.all({ since: since.toISOString() }) as Array<{ event: string; reason: string; n: number }>;
    for (const { event, reason, n } of rows) {
      if (event === 'accepted') result.accepted += n;
      else if (event === 'delivered') result.delivered += n;
      else if (event === 'temporary_fail') result.deferred += n;
      else if (reason === 'suppressed') result.suppressed += n;
      else result.bounced += n;
    }
    return result;
  }

  /** Bounces per hour and category over the `hours` hours up to `now` (the current hour included). */
  bouncesPerHour(now: Date, hours: number): HourlyBounces {
    const first = new Date(Math.floor(now.getTime() / HOUR_MS) * HOUR_MS - (hours - 1) * HOUR_MS);
    const labels = Array.from({ length: hours }, (_, i) => new Date(first.getTime() + i * HOUR_MS).toISOString().slice(0, 13));
    const index = new Map(labels.map((label, i) => [label, i]));
    const byCategory: Record<string, number[]> = {};
    for (const { hour, category, n } of this.hourly.all({ since: first.toISOString() }) as Array<{ hour: string; category: string; n: number }>) {
      const i = index.get(hour);
      if (i === undefined) continue;
      (byCategory[category] ??= new Array<number>(hours).fill(0))[i] = n;
    }
    const known: string[] = [...CATEGORIES, UNCLASSIFIED];
    const categories = [...known, ...Object.keys(byCategory).filter((category) => !known.includes(category)).sort()];
    return { hours: labels, byCategory, categories };
  }

  /** The recipient domains with the most bounces since `since`. */
  topBouncingDomains(since: Date, limit: number): DomainBounces[] {
    return this.topDomains.all({ since: since.toISOString(), limit }) as DomainBounces[];
  }
}
