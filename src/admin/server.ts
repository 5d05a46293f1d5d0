import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import type { Database } from '../store/database.js';
import { storeHealthOf } from '../store/store-health.js';
import { errorReplier, notFound } from './api-errors.js';
import { BearerAuth } from './bearer-auth.js';
import { parseJsonBody } from './json-body.js';
import { StoreMetrics, type MetricsHooks } from './metrics.js';
import { queueRoutes } from './queue-routes.js';
import { reportRoutes } from './report-routes.js';
import { addSecurityHeaders } from './security-headers.js';
import { suppressionRoutes } from './suppression-routes.js';
import type { Unsubscriber } from '../unsubscribe/index.js';
import { unsubscribeRoutes } from './unsubscribe-routes.js';

export interface AdminServer {
  address: AddressInfo;
  stop(): Promise<void>;
}

/** JSON bodies (one suppression or a list of them): ~15,000 items; more go as CSV, which is read in batches. */
const JSON_BODY_LIMIT = 1024 * 1024;

/** Routes anyone may call: a load balancer's or service manager's health check. */
const PUBLIC_ROUTES = new Set(['/healthz', '/unsubscribe/:token']);

/**
 * The admin HTTP API (docs/admin-api.md) on admin.host:admin.port: suppressions and the
 * allowlist, the bounces report, the queue and events, /metrics for Prometheus and /healthz.
 * Every route but /healthz needs a bearer token from admin.tokens; every error is JSON
 * `{ "error": "..." }`. It shares the relay's store connection.
 */
export async function startAdmin(
  config: Config,
  db: Database,
  logger: Logger,
  hooks: MetricsHooks = {},
  unsubscriber: Unsubscriber | null = null,
): Promise<AdminServer> {
  const log = logger.child({ stage: 'admin' });
  const auth = new BearerAuth(config.admin.tokens);
  const metrics = new StoreMetrics(db, hooks, config.webhooks.endpoints.length > 0);
  const healthCheck = db.prepare('SELECT 1').pluck();

  const app = Fastify({
    loggerInstance: log as unknown as FastifyBaseLogger,
    // One debug line per request (below) instead of fastify's two info lines.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    return503OnClosing: true,
  });
  app.decorateRequest('actor', '');
  addSecurityHeaders(app);

  // Runs before body parsing, for every route and for unknown ones: no token, no hint of what exists.
  app.addHook('onRequest', async (request) => {
    if (PUBLIC_ROUTES.has(request.routeOptions.url ?? '')) return;
    request.actor = `api:${auth.nameFor(request.headers.authorization)}`;
  });
  app.addHook('onResponse', async (request, reply) => {
    log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime), actor: request.actor || undefined }, 'admin request');
  });

  // JSON (with the parser's own words when it is not JSON) and CSV imports; nothing else.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  // Read as it arrives (no stall); the import stores it in batches (suppression-routes.ts).
  app.addContentTypeParser('text/csv', { parseAs: 'string', bodyLimit: config.admin.maxImportBytes }, (_request, body, done) => done(null, body));
  app.setErrorHandler(errorReplier(log, { json: JSON_BODY_LIMIT, csv: config.admin.maxImportBytes }));
  app.setNotFoundHandler((request) => {
    throw notFound(`no route ${request.method} ${request.url.split('?')[0]}; see docs/admin-api.md`);
  });

  app.get('/healthz', async (_request, reply) => {
    try {
      healthCheck.get();
    } catch (error) {
      return reply.code(503).send({ ok: false, error: `the store does not answer: ${(error as Error).message}` });
    }
    // A store that was deleted under the relay, or that fails writes, still answers reads.
    const storeProblem = storeHealthOf(db)?.problem();
    if (storeProblem) return reply.code(503).send({ ok: false, error: storeProblem.cause, since: storeProblem.since });
    const dns = hooks.dnsResolver?.();
    if (dns && !dns.healthy) return reply.code(503).send({ ok: false, error: `${dns.problem ?? 'DNS resolver looks broken'}; mail is deferred, not bounced` });
    return { ok: true };
  });
  app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.scrape()));
  suppressionRoutes(app, db);
  reportRoutes(app, db);
  queueRoutes(app, db);
  // Public: the List-Unsubscribe URL's target, behind the operator's https proxy.
  if (unsubscriber) unsubscribeRoutes(app, unsubscriber);

  try {
    await app.listen({ host: config.admin.host, port: config.admin.port });
  } catch (error) {
    await app.close();
    throw error;
  }
  const address = app.server.address() as AddressInfo;
  if (!auth.configured) log.warn('admin.tokens is empty: every admin API route but /healthz answers 401');
  log.info({ host: address.address, port: address.port }, 'admin API listening');
  return {
    address,
    stop: async () => {
      await app.close();
    },
  };
}
