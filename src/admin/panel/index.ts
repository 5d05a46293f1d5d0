import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import fastifyFormbody from '@fastify/formbody';
import fastifyStatic from '@fastify/static';
import fastifyView from '@fastify/view';
import { Eta } from 'eta';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../config/load.js';
import type { Logger } from '../../logger.js';
import type { Database } from '../../store/database.js';
import type { BearerAuth, TokenHolder } from '../bearer-auth.js';
import type { MetricsHooks } from '../metrics.js';
import { PANEL_CONTENT_SECURITY_POLICY } from '../security-headers.js';
import { historyPage } from './history.js';
import { overviewPage } from './overview.js';
import { queuePage } from './queue.js';
import { reportPage } from './report.js';
import { PanelSessions } from './sessions.js';
import { signInRoutes } from './sign-in.js';
import { suppressionsPage } from './suppressions.js';
import { webhooksPage } from './webhooks.js';

/** The panel's templates and its own stylesheet and script, shipped beside dist/ (package root /panel). */
const PANEL_DIR = fileURLToPath(new URL('../../../panel/', import.meta.url));
const require = createRequire(import.meta.url);
/** The client libraries, served from node_modules: no CDN at run time. */
const HTMX_DIR = dirname(require.resolve('htmx.org/dist/htmx.min.js'));
const CHART_DIR = dirname(require.resolve('chart.js'));

export const SESSION_COOKIE = 'rebound_session';

/** The panel's pages, in the order of the navigation bar. */
export const PANEL_PAGES = [
  { path: '/', title: 'Overview' },
  { path: '/suppressions', title: 'Suppressions' },
  { path: '/report', title: 'Bounces report' },
  { path: '/queue', title: 'Queue' },
  { path: '/history', title: 'Recipient history' },
  { path: '/webhooks', title: 'Webhooks' },
] as const;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set on the panel's routes: the API's bearer check skips them (they have the session's). */
    /**
     * Set on the panel's routes, so the API's bearer check skips them: public (sign-in, assets),
     * page (a signed-in GET), change (a signed-in POST that changes the store: CSRF token and the
     * admin role), own-session (a signed-in POST about the session itself, sign-out: CSRF token).
     */
    panel?: 'public' | 'page' | 'change' | 'own-session';
  }
  interface FastifyRequest {
    /** The signed-in operator, on the panel's page and change routes. */
    panelHolder: TokenHolder | null;
  }
}

export interface PanelDeps {
  config: Config;
  db: Database;
  auth: BearerAuth;
  log: Logger;
  hooks: MetricsHooks;
  sessions: PanelSessions;
  /**
   * Renders a page inside the layout (navigation, the signed-in operator, the CSRF token). A page's
   * own script and stylesheet files (in panel/assets) go in data.scripts and data.styles.
   */
  render(request: FastifyRequest, reply: FastifyReply, view: string, title: string, data: Record<string, unknown>): FastifyReply;
}

/**
 * The administration panel: server-rendered pages on the admin server, signed in with an admin
 * token (sessions.ts), every change behind a CSRF token and the admin role. htmx and Chart.js are
 * served from node_modules, the rest from panel/; no inline script anywhere (the CSP in
 * security-headers.ts forbids it).
 */
export async function panelRoutes(app: FastifyInstance, deps: Omit<PanelDeps, 'render' | 'sessions'>): Promise<void> {
  await app.register(async (panel) => {
    const sessions = new PanelSessions();
    // Signs the CSRF secret's cookie; a new one each start, as sessions do not outlive a restart.
    await panel.register(fastifyCookie, { secret: randomBytes(32).toString('base64url') });
    await panel.register(fastifyCsrf, {
      sessionPlugin: '@fastify/cookie',
      cookieKey: 'rebound_csrf',
      cookieOpts: { path: '/', sameSite: 'strict', httpOnly: true, secure: deps.config.admin.secureCookies, signed: true },
    });
    await panel.register(fastifyFormbody, { bodyLimit: 64 * 1024 });
    await panel.register(fastifyView, {
      engine: { eta: new Eta({ views: `${PANEL_DIR}views`, cache: true, autoEscape: true }) },
      root: `${PANEL_DIR}views`,
      viewExt: 'eta',
      layout: 'layout',
    });
    // The static routes are public (no session needed to fetch a stylesheet), like the sign-in page.
    panel.addHook('onRoute', (route) => {
      if (route.url.startsWith('/assets/')) route.config = { ...(route.config ?? {}), panel: 'public' };
    });
    await panel.register(fastifyStatic, { root: `${PANEL_DIR}assets`, prefix: '/assets/', index: false, wildcard: false, decorateReply: false });
    await panel.register(fastifyStatic, { root: HTMX_DIR, prefix: '/assets/vendor/htmx/', allowedPath: (path) => path === '/htmx.min.js', decorateReply: false, wildcard: false });
    await panel.register(fastifyStatic, { root: CHART_DIR, prefix: '/assets/vendor/chart/', allowedPath: (path) => path === '/chart.umd.min.js', decorateReply: false, wildcard: false });

    // After the admin server's own onSend (security-headers.ts), which set the no-script policy.
    panel.addHook('onSend', async (_request, reply, payload) => {
      reply.header('content-security-policy', PANEL_CONTENT_SECURITY_POLICY);
      return payload;
    });
    panel.decorateRequest('panelHolder', null);
    panel.addHook('preHandler', async (request, reply) => {
      const kind = request.routeOptions.config.panel;
      if (kind === undefined || kind === 'public') return;
      const session = sessions.find(request.cookies[SESSION_COOKIE]);
      if (!session) {
        if (kind === 'page') return reply.redirect('/sign-in', 303);
        return reply.code(401).type('text/plain').send('Signed out: sign in again at /sign-in.');
      }
      request.panelHolder = session.holder;
      request.actor = `panel:${session.holder.name}`;
      request.role = session.holder.role;
      if (kind === 'change' || kind === 'own-session') await checkCsrf(panel, request, reply);
      if (kind === 'change') {
        if (session.holder.role !== 'admin') {
          return reply.code(403).type('text/plain').send(`The token "${session.holder.name}" is a viewer: it may look, not change anything. Sign in with an admin token.`);
        }
      }
    });

    const render: PanelDeps['render'] = (request, reply, view, title, data) =>
      reply.view(view, {
        ...data,
        title,
        pages: PANEL_PAGES,
        path: request.routeOptions.url,
        holder: request.panelHolder,
        csrf: reply.generateCsrf(),
      });
    const full: PanelDeps = { ...deps, sessions, render };
    signInRoutes(panel, full);
    overviewPage(panel, full);
    suppressionsPage(panel, full);
    reportPage(panel, full);
    historyPage(panel, full);
    webhooksPage(panel, full);
    queuePage(panel, full);
  });
}

/** @fastify/csrf-protection's check (the token from the form's _csrf field or the x-csrf-token header), awaited. */
export function checkCsrf(panel: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  return new Promise((resolve, reject) => panel.csrfProtection(request, reply, (error?: Error) => (error ? reject(error) : resolve())));
}
