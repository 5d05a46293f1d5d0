import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkCsrf, SESSION_COOKIE, type PanelDeps } from './index.js';
import { SESSION_MAX_MS } from './sessions.js';
import { SignInThrottle } from './sign-in-throttle.js';

/** The panel's first page: one field for an admin token, and sign-out. */
export function signInRoutes(panel: FastifyInstance, deps: PanelDeps): void {
  const throttle = new SignInThrottle();
  const cookieOptions = {
    path: '/',
    httpOnly: true,
    sameSite: 'strict' as const,
    secure: deps.config.admin.secureCookies,
    maxAge: SESSION_MAX_MS / 1000,
  };

  const signInPage = (request: FastifyRequest, reply: FastifyReply, error: string | null) =>
    reply.view('sign-in', { title: 'Sign in', error, csrf: reply.generateCsrf(), pages: [], holder: null, path: request.routeOptions.url, noTokens: !deps.auth.configured });

  panel.get('/sign-in', { config: { panel: 'public' } }, (request, reply) => {
    if (deps.sessions.find(request.cookies[SESSION_COOKIE])) return reply.redirect('/', 303);
    return signInPage(request, reply, null);
  });

  panel.post<{ Body: { token?: unknown } }>('/sign-in', { config: { panel: 'public' } }, async (request, reply) => {
    await checkCsrf(panel, request, reply);
    const lockedMs = throttle.lockedFor(request.ip);
    if (lockedMs > 0) {
      reply.code(429).header('retry-after', String(Math.ceil(lockedMs / 1000)));
      return signInPage(request, reply, `Too many failed sign-ins from ${request.ip}: try again in ${Math.ceil(lockedMs / 60_000)} minute(s).`);
    }
    const token = typeof request.body?.token === 'string' ? request.body.token.trim() : '';
    const holder = token === '' ? null : deps.auth.holderOf(token);
    if (!holder) {
      // The answer waits longer after each failure from this address (sign-in-throttle.ts).
      await sleep(throttle.failed(request.ip));
      deps.log.warn({ client: request.ip }, 'panel sign-in failed: the token is not one of admin.tokens');
      reply.code(401);
      return signInPage(request, reply, token === '' ? 'Enter an admin token.' : 'That token is not one of admin.tokens.');
    }
    throttle.succeeded(request.ip);
    deps.log.info({ actor: `panel:${holder.name}`, role: holder.role, client: request.ip }, 'panel sign-in');
    reply.setCookie(SESSION_COOKIE, deps.sessions.open(holder), cookieOptions);
    return reply.redirect('/', 303);
  });

  panel.post('/sign-out', { config: { panel: 'own-session' } }, (request, reply) => {
    deps.sessions.close(request.cookies[SESSION_COOKIE]);
    deps.log.info({ actor: request.actor }, 'panel sign-out');
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.redirect('/sign-in', 303);
  });
}
