import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { storeHealthOf } from '../store/store-health.js';
import { CATEGORIES, HARD_CATEGORIES, typeOfCategory } from '../bounces/categories.js';
import type { Database } from '../store/database.js';
import { EventCounts } from '../store/event-counts.js';
import { QueueGauges } from '../store/queue.js';
import { ReportCounts, type ReportParseState } from '../inbound/report-counts.js';
import { WebhookDeliveryCounts } from '../webhooks/delivery-counts.js';

/** The delivery resolver's health, as the delivery stage's canary check sees it. */
export interface DnsResolverStatus {
  healthy: boolean;
  /** One line naming the resolver and the canaries while broken. */
  problem: string | null;
}

/** Live values from the other stages, for /metrics (and /healthz). */
export interface MetricsHooks {
  /** Webhook deliveries waiting; without it, read from webhook_outbox and webhook_deliveries. */
  webhookBacklog?: () => number;
  /** Webhook deliveries that gave up (failed or rejected); without it, read from webhook_deliveries. */
  webhookFailures?: () => number;
  /** The delivery resolver's health; without it (delivery off), no DNS gauge and /healthz does not ask. */
  dnsResolver?: () => DnsResolverStatus;
  /** The shared store (store.shared.url); without it (not shared), no shared-store gauges. */
  sharedStore?: () => { reachable: boolean; waiting: number; eventsWaiting: number; forwardWaiting: number };
}

/** Seconds from acceptance to delivery: from a local hop in milliseconds to a retry a day later. */
export const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 14_400, 43_200, 86_400];

const INBOUND_KINDS = ['bounce', 'delay', 'complaint', 'autoreply', 'delivered', 'unknown', 'unparsed'] as const;

/**
 * The relay's Prometheus metrics, read from the store when scraped, so nothing is counted on the
 * delivery path and the numbers agree with what the tables say. The SQL lives with the module
 * that owns each table (EventCounts, QueueGauges, ReportCounts, WebhookDeliveryCounts); this
 * class only turns what they read into gauges and counters.
 *
 * The scrape stays cheap on a large store: counters read only rows added since the previous
 * scrape (events, messages and inbound_reports are append-only and their ids only grow: a range
 * on the rowid), and gauges read partial indexes (recipients_due, webhook_outbox_pending,
 * webhook_deliveries_due). Counters therefore start at 0 when the relay starts, like any
 * process's counters; Prometheus' rate() and increase() handle the restart.
 */
export class StoreMetrics {
  readonly registry = new Registry();
  private fresh = false;
  private lastEventId: number;
  private lastMessageId: number;
  private lastReportId: number;
  /** Inbound reports seen while still pending: counted once parsed. */
  private readonly pendingReports = new Set<number>();
  private webhookFailuresSeen: number;

  private readonly events: EventCounts;
  private readonly reports: ReportCounts;
  private readonly queue: QueueGauges;
  private readonly webhooks: WebhookDeliveryCounts;

  private readonly messagesAccepted: Counter;
  private readonly recipientsAccepted: Counter;
  private readonly delivered: Counter;
  private readonly bounced: Counter<'category' | 'type' | 'source'>;
  private readonly blocked: Counter<'category' | 'source'>;
  private readonly deferred: Counter<'category'>;
  private readonly suppressed: Counter;
  private readonly complaints: Counter;
  private readonly unsubscribes: Counter;
  private readonly operatorActions: Counter<'action'>;
  private readonly inboundReports: Counter<'kind'>;
  private readonly latency: Histogram;
  private readonly depth: Gauge<'status'>;
  private readonly oldestAge: Gauge;
  private readonly webhookBacklog: Gauge;
  private readonly webhookFailures: Counter;

  constructor(
    db: Database,
    private readonly hooks: MetricsHooks = {},
    /** With no webhook endpoints, outbox rows wait for nobody and are not a backlog. */
    private readonly outboxIsBacklog = true,
  ) {
    this.events = new EventCounts(db);
    this.reports = new ReportCounts(db);
    this.queue = new QueueGauges(db);
    this.webhooks = new WebhookDeliveryCounts(db);

    this.lastEventId = this.events.newestEventId();
    this.lastMessageId = this.events.newestMessageId();
    this.lastReportId = this.reports.newestId();
    this.webhookFailuresSeen = this.webhookFailuresNow();

    const registers = [this.registry];
    const collect = () => this.refreshOncePerScrape();
    this.messagesAccepted = new Counter({ name: 'rebound_messages_accepted_total', help: 'Messages accepted (250 after DATA) since the relay started', registers, collect });
    this.recipientsAccepted = new Counter({ name: 'rebound_recipients_accepted_total', help: 'Envelope recipients of accepted messages since the relay started', registers, collect });
    this.delivered = new Counter({ name: 'rebound_delivered_total', help: 'Recipients delivered (the MX accepted) since the relay started', registers, collect });
    this.bounced = new Counter({
      name: 'rebound_bounced_total',
      help: 'Recipients that bounced (permanent_fail: bounced or expired; blocks are counted in rebound_blocked_total) since the relay started, by category, type (hard/soft) and source (immediate/delayed)',
      labelNames: ['category', 'type', 'source'] as const,
      registers,
      collect,
    });
    this.blocked = new Counter({
      name: 'rebound_blocked_total',
      help: 'Recipients whose mail was blocked (permanent_fail: blocked, a hard failure about the sender or the message, not suppressed) since the relay started, by category and source (immediate/delayed)',
      labelNames: ['category', 'source'] as const,
      registers,
      collect,
    });
    this.deferred = new Counter({
      name: 'rebound_deferred_total',
      help: 'Temporary failures that will be retried (temporary_fail events) since the relay started, by category',
      labelNames: ['category'] as const,
      registers,
      collect,
    });
    this.suppressed = new Counter({ name: 'rebound_suppressed_total', help: 'Recipients dropped unsent because the address is on a suppression list, since the relay started', registers, collect });
    this.complaints = new Counter({ name: 'rebound_complaints_total', help: 'Complaints (ARF reports) since the relay started', registers, collect });
    this.unsubscribes = new Counter({ name: 'rebound_unsubscribes_total', help: 'Unsubscribes (List-Unsubscribe) since the relay started', registers, collect });
    this.operatorActions = new Counter({
      name: 'rebound_queue_actions_total',
      help: 'Recipients an operator held, released, deleted or bounced (rebound queue hold|release|delete|bounce, POST /v1/queue/...) since the relay started, by action; operator bounces are not in rebound_bounced_total',
      labelNames: ['action'] as const,
      registers,
      collect,
    });
    this.inboundReports = new Counter({
      name: 'rebound_inbound_reports_total',
      help: 'Reports received by the inbound listener since the relay started, by kind once parsed (unparsed: the parser failed)',
      labelNames: ['kind'] as const,
      registers,
      collect,
    });
    this.latency = new Histogram({
      name: 'rebound_delivery_latency_seconds',
      help: 'Seconds from acceptance to delivery, per delivered recipient, since the relay started',
      buckets: LATENCY_BUCKETS,
      registers,
      collect,
    });
    this.depth = new Gauge({ name: 'rebound_queue_depth', help: 'Recipients in the queue, by status: queued, deferred, sending, and held by an operator', labelNames: ['status'] as const, registers, collect });
    this.oldestAge = new Gauge({ name: 'rebound_queue_oldest_age_seconds', help: 'Age of the oldest message with a recipient queued or deferred (0 when none)', registers, collect });
    this.webhookBacklog = new Gauge({ name: 'rebound_webhook_backlog', help: 'Webhook posts waiting: events not yet fanned out plus deliveries pending', registers, collect });
    this.webhookFailures = new Counter({ name: 'rebound_webhook_failures_total', help: 'Webhook deliveries that gave up (failed after every retry, or rejected with 406) since the relay started', registers, collect });
    new Gauge({
      name: 'rebound_store_healthy',
      help: 'Whether the store takes writes: 0 while its file was deleted or replaced under the relay, or commits fail (disk full, I/O errors); mail is then refused with 451',
      registers,
      collect() {
        this.set(storeHealthOf(db)?.problem() ? 0 : 1);
      },
    });
    const dnsResolver = hooks.dnsResolver;
    if (dnsResolver) {
      new Gauge({
        name: 'rebound_dns_resolver_healthy',
        help: 'Whether the delivery DNS resolver can be believed: 0 while none of delivery.dns.canaries resolves (NXDOMAIN is then deferred, not bounced)',
        registers,
        collect() {
          this.set(dnsResolver().healthy ? 1 : 0);
        },
      });
    }

    const sharedStore = hooks.sharedStore;
    if (sharedStore) {
      new Gauge({
        name: 'rebound_shared_store_up',
        help: 'Whether the shared store (store.shared.url) was reached by the last sync round: 0 while PostgreSQL is down (mail flows; list changes wait locally)',
        registers,
        collect() {
          this.set(sharedStore().reachable ? 1 : 0);
        },
      });
      new Gauge({
        name: 'rebound_shared_outbox_changes',
        help: 'Suppression list and allowlist changes made on this node and not yet in the shared store',
        registers,
        collect() {
          this.set(sharedStore().waiting);
        },
      });
      new Gauge({
        name: 'rebound_shared_events_waiting',
        help: 'Events of this node not yet in the shared store (the other nodes\' reports and overviews do not count them yet)',
        registers,
        collect() {
          this.set(sharedStore().eventsWaiting);
        },
      });
      new Gauge({
        name: 'rebound_shared_forward_outbox_reports',
        help: "Reports this node's MX took for another node's return-path token and not yet shipped to the shared store (forward_outbox)",
        registers,
        collect() {
          this.set(sharedStore().forwardWaiting);
        },
      });
    }

    // Known label sets start at 0, so rate() sees the first one.
    for (const category of CATEGORIES) {
      for (const source of ['immediate', 'delayed']) this.bounced.inc({ category, type: typeOfCategory(category), source }, 0);
      this.deferred.inc({ category }, 0);
    }
    for (const category of HARD_CATEGORIES) for (const source of ['immediate', 'delayed']) this.blocked.inc({ category, source }, 0);
    for (const kind of INBOUND_KINDS) this.inboundReports.inc({ kind }, 0);
    this.depth.set({ status: 'queued' }, 0);
    this.depth.set({ status: 'deferred' }, 0);
    this.depth.set({ status: 'held' }, 0);
    for (const action of ['hold', 'release', 'delete', 'bounce']) this.operatorActions.inc({ action }, 0);

    collectDefaultMetrics({ register: this.registry });
  }

  /** The Prometheus text exposition format. */
  async scrape(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Every metric's collect() calls this; the registry calls them all in one go, so the store is
   * read once per scrape.
   */
  private refreshOncePerScrape(): void {
    if (this.fresh) return;
    this.fresh = true;
    setImmediate(() => {
      this.fresh = false;
    });
    this.refresh();
  }

  private refresh(): void {
    const maxMessage = this.events.newestMessageId();
    if (maxMessage > this.lastMessageId) this.messagesAccepted.inc(maxMessage - this.lastMessageId);
    this.lastMessageId = Math.max(this.lastMessageId, maxMessage);

    this.countEvents();
    this.countReports();

    // A status that emptied is missing from the GROUP BY: it reads 0.
    const depth = new Map<string, number>([['queued', 0], ['deferred', 0]]);
    for (const { status, n } of this.queue.waitingByStatus()) depth.set(status, n);
    for (const [status, n] of depth) this.depth.set({ status }, n);
    const sending = this.queue.sendingCount();
    if (sending !== null) this.depth.set({ status: 'sending' }, sending);
    this.depth.set({ status: 'held' }, this.queue.heldCount());
    const oldest = this.queue.oldestWaitingReceivedAt();
    this.oldestAge.set(oldest === null ? 0 : Math.max(0, (Date.now() - Date.parse(oldest)) / 1000));

    this.webhookBacklog.set(
      this.hooks.webhookBacklog
        ? this.hooks.webhookBacklog()
        : (this.outboxIsBacklog ? this.webhooks.outboxWaiting() : 0) + this.webhooks.pendingDeliveries(),
    );
    const failures = this.webhookFailuresNow();
    if (failures > this.webhookFailuresSeen) this.webhookFailures.inc(failures - this.webhookFailuresSeen);
    this.webhookFailuresSeen = failures;
  }

  private countEvents(): void {
    const upTo = this.events.newestEventId();
    if (upTo <= this.lastEventId) return;
    for (const group of this.events.groupsBetween(this.lastEventId, upTo)) {
      switch (group.event) {
        case 'accepted':
          this.recipientsAccepted.inc(group.n);
          break;
        case 'delivered':
          this.delivered.inc(group.n);
          break;
        case 'temporary_fail':
          this.deferred.inc({ category: group.category ?? 'none' }, group.n);
          break;
        case 'permanent_fail':
          if (group.source === 'operator') this.operatorActions.inc({ action: 'bounce' }, group.n);
          else if (group.reason === 'suppressed') this.suppressed.inc(group.n);
          else if (group.reason === 'blocked') this.blocked.inc({ category: group.category ?? 'none', source: group.source ?? 'immediate' }, group.n);
          else this.bounced.inc({ category: group.category ?? 'none', type: group.bounceType ?? 'none', source: group.source ?? 'immediate' }, group.n);
          break;
        case 'complained':
          this.complaints.inc(group.n);
          break;
        case 'unsubscribed':
          this.unsubscribes.inc(group.n);
          break;
        case 'held':
          this.operatorActions.inc({ action: 'hold' }, group.n);
          break;
        case 'released':
          this.operatorActions.inc({ action: 'release' }, group.n);
          break;
        case 'deleted':
          this.operatorActions.inc({ action: 'delete' }, group.n);
          break;
      }
    }
    for (const seconds of this.events.deliveryLatenciesBetween(this.lastEventId, upTo)) this.latency.observe(Math.max(0, seconds));
    this.lastEventId = upTo;
  }

  /** A report is counted once, by kind, when the parser is done with it. */
  private countReports(): void {
    const settle = (row: ReportParseState): void => {
      if (row.status === 'pending') {
        this.pendingReports.add(row.id);
        return;
      }
      this.pendingReports.delete(row.id);
      this.inboundReports.inc({ kind: row.status === 'failed' ? 'unparsed' : (row.kind ?? 'unknown') });
    };
    for (const id of [...this.pendingReports]) {
      const row = this.reports.byId(id);
      if (row) settle(row);
      else this.pendingReports.delete(id);
    }
    for (const row of this.reports.after(this.lastReportId)) {
      settle(row);
      this.lastReportId = row.id;
    }
  }

  /** Webhook deliveries that gave up: from the hook when the webhook stage gives one, else from the store. */
  private webhookFailuresNow(): number {
    return this.hooks.webhookFailures ? this.hooks.webhookFailures() : this.webhooks.givenUp();
  }
}
