import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import type { Database } from '../store/database.js';
import { storeHealthOf } from '../store/store-health.js';
import { ApiError, errorReplier, notFound } from './api-errors.js';
import { BearerAuth } from './bearer-auth.js';
import { parseJsonBody } from './json-body.js';
import { panelRoutes } from './panel/index.js';
import { StoreMetrics, type MetricsHooks } from './metrics.js';
import { queueRoutes } from './queue-routes.js';
import { reportRoutes } from './report-routes.js';
import { addSecurityHeaders } from './security-headers.js';
import { suppressionRoutes } from './suppression-routes.js';
import type { UnsubscribeHandling } from '../unsubscribe/forwarded.js';
import { unsubscribeRoutes } from './unsubscribe-routes.js';

export interface AdminServer {
  address: AddressInfo;
  stop(): Promise<void>;
}

/** JSON bodies (one suppression or a list of them): ~15,000 items; more go as CSV, which is read in batches. */
const JSON_BODY_LIMIT = 1024 * 1024;

/** What a viewer token may do through the API. */
const READ_METHODS = new Set(['GET', 'HEAD']);

/** Routes anyone may call: a load balancer's or service manager's health check. */
/** How long the admin server's stop waits for requests under way before it cuts their connections. */
const ADMIN_STOP_GRACE_MS = 2000;

const PUBLIC_ROUTES = new Set(['/healthz', '/unsubscribe/:token']);

/**
 * The admin HTTP API (docs/admin-api.md) on admin.host:admin.port: suppressions and the
 * allowlist, the bounces report, the queue and events, /metrics for Prometheus and /healthz; and
 * the administration panel at / (panel/). Every API route but /healthz needs a bearer token from
 * admin.tokens (a viewer token only for GET); every API error is JSON `{ "error": "..." }`. It
 * shares the relay's store connection.
 */
export async function startAdmin(
  config: Config,
  db: Database,
  logger: Logger,
  hooks: MetricsHooks = {},
  unsubscribe: UnsubscribeHandling | null = null,
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
  app.decorateRequest('role', 'viewer');
  addSecurityHeaders(app);

  // Runs before body parsing, for every route and for unknown ones: no token, no hint of what exists.
  // The panel's routes check their session cookie instead (panel/index.ts).
  app.addHook('onRequest', async (request) => {
    if (PUBLIC_ROUTES.has(request.routeOptions.url ?? '') || request.routeOptions.config.panel !== undefined) return;
    const holder = auth.holderFor(request.headers.authorization);
    request.actor = `api:${holder.name}`;
    request.role = holder.role;
    if (holder.role !== 'admin' && !READ_METHODS.has(request.method)) {
      throw new ApiError(403, `the token "${holder.name}" has the viewer role: it may read, not change anything; use a token with "role": "admin"`);
    }
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
    const storeProblem = storeHealthOf(db)?.problemNow();
    if (storeProblem) return reply.code(503).send({ ok: false, error: storeProblem.cause, since: storeProblem.since });
    const dns = hooks.dnsResolver?.();
    if (dns && !dns.healthy) return reply.code(503).send({ ok: false, error: `${dns.problem ?? 'DNS resolver looks broken'}; mail is deferred, not bounced` });
    return { ok: true };
  });
  app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.scrape()));
  suppressionRoutes(app, db);
  reportRoutes(app, db);
  // The panel at / (sign-in, pages, its assets); its own session, CSRF and role checks.
  await panelRoutes(app, { config, db, auth, log, hooks });
  queueRoutes(app, db);
  // Public: the List-Unsubscribe URL's target, behind the operator's https proxy.
  if (unsubscribe) unsubscribeRoutes(app, unsubscribe);

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
      // app.close() ends idle connections only: a request still being read or answered when it
      // starts (a browser of the panel, a slow client) would hold the stop until the socket's own
      // timeouts (72 s keep-alive, 60 s headers). Those get a short grace, then are cut.
      const cut = setTimeout(() => app.server.closeAllConnections(), ADMIN_STOP_GRACE_MS);
      try {
        await app.close();
      } finally {
        clearTimeout(cut);
      }
    },
  };
}
