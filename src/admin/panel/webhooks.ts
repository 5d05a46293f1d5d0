import type { FastifyInstance } from 'fastify';
import { redactUrl } from '../../redact-url.js';
import { WebhookStatus } from '../../webhooks/status.js';
import type { PanelDeps } from './index.js';

/** Failed tries listed, and the newest tries read to find them (a bound on the read, not a period). */
const FAILURES_SHOWN = 50;
const TRIES_READ = 20_000;

/**
 * `/webhooks`: the configured endpoints (URLs redacted: a receiver's credentials never reach the
 * page) with the events each takes and its backlog, the outbox, and the last failed tries.
 * Read-only.
 */
export function webhooksPage(panel: FastifyInstance, deps: PanelDeps): void {
  const status = new WebhookStatus(deps.db);
  const settings = deps.config.webhooks;

  panel.get('/webhooks', { config: { panel: 'page' } }, (request, reply) => {
    const seen = new Set<string>();
    const endpoints = settings.endpoints.map((endpoint) => {
      // The sender uses the first entry of a URL listed twice (webhooks/index.ts).
      const repeated = seen.has(endpoint.url);
      seen.add(endpoint.url);
      return { url: redactUrl(endpoint.url), events: endpoint.events, repeated, backlog: repeated ? null : status.backlog(endpoint.url) };
    });
    const waiting = endpoints.reduce((sum, endpoint) => sum + (endpoint.backlog?.pending ?? 0), 0);
    // Pending rows for a URL no longer configured: the sender gives them up when it starts.
    const unconfigured = status.pendingTotal() - waiting;
    const failures = status.recentFailures(FAILURES_SHOWN, TRIES_READ).map((failure) => ({
      ...failure,
      endpointUrl: redactUrl(failure.endpointUrl),
      // post.ts words an HTTP failure "HTTP 500: <body excerpt>"; the status has its own column part.
      said: failure.httpStatus === null ? (failure.error ?? '') : (failure.error ?? '').replace(new RegExp(`^HTTP ${failure.httpStatus}:? ?`), ''),
    }));
    return deps.render(request, reply, 'webhooks', 'Webhooks', {
      styles: ['stacked-tables.css'],
      endpoints,
      waiting,
      unconfigured,
      outbox: status.outbox(),
      failures,
      failuresShown: FAILURES_SHOWN,
      triesRead: TRIES_READ,
      retrySchedule: settings.retryScheduleSeconds,
      timeoutSeconds: settings.timeoutSeconds,
      concurrency: settings.concurrency,
    });
  });
}
