import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { OperatorError } from '../../errors.js';
import { QueueListing, queueSummary } from '../../store/queue.js';
import { flushDeferred, QUEUE_ACTION_FUNCTIONS, queueAudit, queueAuditEntry, queueSelector, type QueueAuditEntry } from '../../store/queue-actions.js';
import type { PanelDeps } from './index.js';
import {
  ACTION_LABELS,
  EMPTY_QUEUE_FORM,
  PANEL_QUEUE_ACTIONS,
  readQueueActionForm,
  resultWords,
  SELECTOR_KINDS,
  SELECTOR_LABELS,
  selectionWords,
  type QueueActionForm,
} from './queue-form.js';

/** Domains and held messages the page lists; the counts above them say how many there are in all. */
const SHOWN_DOMAINS = 100;
const SHOWN_HELD = 100;
/** A domain's page lists this many of its deferred recipients, the next due first. */
const SHOWN_RECIPIENTS = 500;
/** Queue actions in the page's audit table, the newest first. */
const SHOWN_AUDIT = 20;

/** What the page says above the tables: an action's result, or why the form was refused. */
interface Outcome {
  result?: QueueAuditEntry;
  error?: string;
  form?: QueueActionForm;
}

/** A time as the tables show it: UTC to the second, and how far from now in words. */
export interface TimeText {
  iso: string;
  utc: string;
  relative: string;
}

export function timeText(iso: string | null, now: Date): TimeText | null {
  if (iso === null) return null;
  const ms = Date.parse(iso) - now.getTime();
  const minutes = Math.round(Math.abs(ms) / 60_000);
  const span = minutes < 1 ? 'less than a minute' : minutes < 90 ? `${minutes} min` : minutes < 48 * 60 ? `${Math.round(minutes / 60)} h` : `${Math.round(minutes / 1440)} days`;
  const relative = Math.abs(ms) < 30_000 ? 'now' : ms > 0 ? `in ${span}` : `${span} ago`;
  return { iso, utc: iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ''), relative };
}

/**
 * `/queue`: mail waiting now — deferred recipients by domain (each with its own page), held mail,
 * the counts — and the operator's actions on it (Flush, Hold, Release, Delete, Bounce, through the
 * store's queue actions, audited as panel:<token name>) with the recent queue audit. A change is
 * posted to /queue/action and answered with a redirect to /queue?done=<audit id>, so a reload
 * shows the result again instead of repeating the action.
 */
export function queuePage(panel: FastifyInstance, deps: PanelDeps): void {
  const listing = new QueueListing(deps.db);
  const pollIntervalMs = deps.config.delivery.pollIntervalMs;
  const isAdmin = (request: FastifyRequest): boolean => request.panelHolder?.role === 'admin';

  const queueView = (request: FastifyRequest, reply: FastifyReply, outcome: Outcome) => {
    const now = new Date();
    return deps.render(request, reply, 'queue', 'Queue', {
      counts: queueSummary(deps.db, 0).recipientsByStatus,
      domains: listing.deferredDomains(SHOWN_DOMAINS),
      held: listing.heldMessages(SHOWN_HELD),
      audit: queueAudit(deps.db, SHOWN_AUDIT),
      result: outcome.result ? resultWords(outcome.result, pollIntervalMs) : null,
      error: outcome.error ?? null,
      form: outcome.form ?? EMPTY_QUEUE_FORM,
      isAdmin: isAdmin(request),
      ...vocabulary(now),
      styles: ['queue.css'],
      scripts: ['queue.js'],
    });
  };

  panel.get<{ Querystring: { done?: string } }>('/queue', { config: { panel: 'page' } }, (request, reply) => {
    const done = /^\d{1,15}$/.test(request.query.done ?? '') ? queueAuditEntry(deps.db, Number(request.query.done)) : undefined;
    return queueView(request, reply, done ? { result: done } : {});
  });

  panel.get<{ Params: { domain: string } }>('/queue/domain/:domain', { config: { panel: 'page' } }, (request, reply) => {
    let domain: string;
    try {
      const selector = queueSelector({ domain: request.params.domain });
      domain = selector.by === 'domain' ? selector.domain : '';
    } catch (error) {
      if (!(error instanceof OperatorError)) throw error;
      reply.code(400);
      return deps.render(request, reply, 'queue-domain', 'Queue', { domain: request.params.domain, error: error.message, recipients: null, isAdmin: false, ...vocabulary(new Date()), styles: ['queue.css'], scripts: ['queue.js'] });
    }
    return deps.render(request, reply, 'queue-domain', `Queue: ${domain}`, {
      domain,
      error: null,
      recipients: listing.deferredAt(domain, SHOWN_RECIPIENTS),
      isAdmin: isAdmin(request),
      ...vocabulary(new Date()),
      styles: ['queue.css'],
      scripts: ['queue.js'],
    });
  });

  panel.post<{ Body: Record<string, unknown> | undefined }>('/queue/action', { config: { panel: 'change' } }, async (request, reply) => {
    const reading = readQueueActionForm(request.body);
    if (reading.error !== null) return queueView(request, reply.code(400), { error: reading.error, form: reading.form });
    try {
      const auditId =
        reading.action === 'flush'
          ? flushDeferred(deps.db, reading.selector, request.actor).auditId
          : (await QUEUE_ACTION_FUNCTIONS[reading.action](deps.db, reading.selector, request.actor)).auditId;
      return reply.redirect(`/queue?done=${auditId}`, 303);
    } catch (error) {
      // The store's refusals (a malformed domain, an unknown queue id) changed nothing: say so on the page.
      if (!(error instanceof OperatorError)) throw error;
      return queueView(request, reply.code(400), { error: error.message, form: reading.form });
    }
  });
}

/** What both views' templates use to word the page. */
function vocabulary(now: Date) {
  return {
    when: (iso: string | null) => timeText(iso, now),
    actions: PANEL_QUEUE_ACTIONS,
    actionLabels: ACTION_LABELS,
    selectorKinds: SELECTOR_KINDS,
    selectorLabels: SELECTOR_LABELS,
    selectionWords,
  };
}
