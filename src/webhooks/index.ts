import type { Database } from 'better-sqlite3';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import { buildEventData, type WebhookPayload } from './payload.js';
import { postJson, type PostResult } from './post.js';
import { redactUrl } from '../redact-url.js';
import { signWebhook } from './signature.js';
import { WebhookStore, type DueDelivery, type EndpointRoute } from './store.js';

export { forbiddenTargetReason } from './target-guard.js';
export { redactUrl } from '../redact-url.js';
export { signWebhook, verifyWebhookSignature, type WebhookSignature } from './signature.js';
export type { EventData, WebhookPayload } from './payload.js';

export interface WebhookStage {
  /** Stops polling and waits for the POSTs under way (each is bounded by webhooks.timeoutSeconds). */
  stop(): Promise<void>;
  /** Deliveries still to be POSTed (pending). */
  backlog(): number;
  /** Deliveries given up on: failed (tries ran out, or a refused target) or rejected (406). */
  failures(): number;
}

/** Outbox rows fanned out per transaction, and transactions per poll: a backlog drains over a few polls. */
const FAN_OUT_BATCH = 500;
const FAN_OUT_BATCHES_PER_POLL = 20;

const USER_AGENT = 'Rebound-Webhooks/1';

/** One endpoint's queue: its own POSTs under way, up to webhooks.concurrency of them. */
interface Lane {
  route: EndpointRoute;
  secret: string;
  inFlight: Map<number, Promise<void>>;
}

/**
 * Starts the webhook sender. It works beside delivery, never in its way: events reach it through
 * the outbox table (written by a trigger in the event's own transaction), it polls every
 * webhooks.pollIntervalMs, and each endpoint has its own queue with at most webhooks.concurrency
 * POSTs at a time on their own timers, so an endpoint that hangs or fails holds only its own
 * slots and never delays the others. Delivery to receivers is at least once: a crash between a
 * POST and its record sends it again after the restart, with the same event-data.id.
 */
export function startWebhooks(config: Config, db: Database, logger: Logger): WebhookStage {
  const log = logger.child({ stage: 'webhooks' });
  const settings = config.webhooks;
  const store = new WebhookStore(db);
  const { routes, secrets } = endpointRoutes(settings.endpoints, log);
  const lanes: Lane[] = routes.map((route) => ({ route, secret: secrets.get(route.url) as string, inFlight: new Map() }));
  const coolingDown = new Map<number, number>();
  const stopping = new AbortController();
  let stopped = false;
  let tickScheduled = false;

  // Deliveries owed to an endpoint since taken out of webhooks.endpoints can never be sent.
  try {
    const given = store.failOthers(routes.map((route) => route.url), new Date(), 'the endpoint is no longer in webhooks.endpoints');
    if (given > 0) log.warn({ deliveries: given }, 'webhooks given up: their endpoint is no longer in webhooks.endpoints');
  } catch (error) {
    log.error({ err: error }, 'could not give up the webhooks of removed endpoints; they stay pending');
  }

  const wake = (): void => {
    if (stopped || tickScheduled) return;
    tickScheduled = true;
    setImmediate(() => {
      tickScheduled = false;
      tick();
    });
  };

  const tick = (): void => {
    if (stopped) return;
    const now = new Date();
    try {
      for (let batch = 0; batch < FAN_OUT_BATCHES_PER_POLL; batch++) {
        const { events, deliveries } = store.fanOut(routes, now, FAN_OUT_BATCH);
        if (deliveries > 0) log.debug({ events, deliveries }, 'webhook events fanned out');
        if (events < FAN_OUT_BATCH) break;
      }
      for (const lane of lanes) fill(lane, now);
    } catch (error) {
      log.error({ err: error }, 'could not read the webhook outbox; trying again at the next poll');
    }
  };

  /** Starts due tries of one endpoint in its free slots. */
  const fill = (lane: Lane, now: Date): void => {
    const { inFlight } = lane;
    if (inFlight.size >= settings.concurrency) return;
    // Ask for more than the free slots: rows already in flight come back and are skipped.
    for (const due of store.due(lane.route.url, now, settings.concurrency)) {
      if (inFlight.size >= settings.concurrency) break;
      if (inFlight.has(due.id)) continue;
      const until = coolingDown.get(due.id);
      if (until !== undefined && until > now.getTime()) continue;
      coolingDown.delete(due.id);
      const job = attempt(due, lane.secret)
        .catch((error: unknown) => {
          // Not a failed POST but a fault here (the store, a bug): leave the row as it is and
          // keep it out of the way for a poll interval rather than spinning on it.
          coolingDown.set(due.id, Date.now() + settings.pollIntervalMs);
          log.error({ err: error, deliveryId: due.id }, 'a webhook try failed unexpectedly; it is tried again after the next poll');
        })
        .finally(() => {
          inFlight.delete(due.id);
          wake();
        });
      inFlight.set(due.id, job);
    }
  };

  const attempt = async (due: DueDelivery, secret: string): Promise<void> => {
    const row = store.event(due.eventId);
    if (!row) {
      // Deleted events take their deliveries with them (ON DELETE CASCADE); without foreign keys, give up here.
      store.record(due.id, null, 'failed', due.attempts, new Date(), 'the event is no longer in the store');
      return;
    }
    const eventData = buildEventData(row);
    const startedAt = new Date();
    const payload: WebhookPayload = { signature: signWebhook(secret, startedAt), 'event-data': eventData };
    const result: PostResult = await postJson(new URL(due.endpointUrl), JSON.stringify(payload), {
      timeoutMs: settings.timeoutSeconds * 1000,
      allowPrivateTargets: settings.allowPrivateTargets,
      headers: { 'user-agent': USER_AGENT },
      signal: stopping.signal,
    });
    const tries = due.attempts + 1;
    const record = { at: startedAt.toISOString(), httpStatus: result.status, error: result.error, durationMs: result.durationMs };
    const context = { deliveryId: due.id, endpoint: redactUrl(due.endpointUrl), event: row.event, eventId: eventData.id, try: tries };
    const status = result.status;
    if (status !== null && status >= 200 && status < 300) {
      store.record(due.id, record, 'delivered', tries, startedAt, null);
      log.debug({ ...context, status }, 'webhook delivered');
      return;
    }
    if (status === 406) {
      store.record(due.id, record, 'rejected', tries, startedAt, result.error);
      log.warn({ ...context, status }, 'webhook rejected with 406: not tried again');
      return;
    }
    if (result.forbidden) {
      store.record(due.id, record, 'failed', tries, startedAt, result.error);
      log.warn(context, `webhook not sent: ${result.error}`);
      return;
    }
    // The nth wait follows the nth failed try; after the last wait's try, give up.
    const waitSeconds = settings.retryScheduleSeconds[tries - 1];
    if (waitSeconds === undefined) {
      store.record(due.id, record, 'failed', tries, startedAt, result.error);
      log.warn({ ...context, error: result.error }, 'webhook failed: no tries left (webhooks.retryScheduleSeconds)');
      return;
    }
    const next = new Date(Date.now() + waitSeconds * 1000);
    store.record(due.id, record, 'pending', tries, next, result.error);
    log.info({ ...context, error: result.error, nextAttemptAt: next.toISOString() }, 'webhook try failed; will retry');
  };

  const timer = setInterval(wake, settings.pollIntervalMs);
  timer.unref();
  wake();
  log.info({ endpoints: routes.map((route) => redactUrl(route.url)), concurrencyPerEndpoint: settings.concurrency }, 'webhooks started');

  return {
    stop: async () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      // Tries under way end by themselves within webhooks.timeoutSeconds; after a short grace
      // they are cut off (recorded as failed tries, sent again later: at least once).
      const settled = Promise.allSettled(lanes.flatMap((lane) => [...lane.inFlight.values()]));
      const grace = new Promise<void>((resolve) => setTimeout(resolve, Math.min(settings.timeoutSeconds * 1000, 2_000)).unref());
      await Promise.race([settled, grace]);
      stopping.abort();
      await settled;
      log.info({ backlog: store.pendingCount() }, 'webhooks stopped');
    },
    backlog: () => store.pendingCount(),
    failures: () => store.failedCount(),
  };
}

/** One route per URL (the URL names the endpoint in webhook_deliveries); a repeated URL is ignored. */
function endpointRoutes(endpoints: Config['webhooks']['endpoints'], log: Logger): { routes: EndpointRoute[]; secrets: Map<string, string> } {
  const routes: EndpointRoute[] = [];
  const secrets = new Map<string, string>();
  for (const endpoint of endpoints) {
    if (secrets.has(endpoint.url)) {
      log.warn({ endpoint: redactUrl(endpoint.url) }, 'webhooks.endpoints lists this URL twice; the first entry is used');
      continue;
    }
    secrets.set(endpoint.url, endpoint.secret);
    routes.push({ url: endpoint.url, events: [...endpoint.events] });
  }
  return { routes, secrets };
}
