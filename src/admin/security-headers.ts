import type { FastifyInstance } from 'fastify';
import { PAGE_STYLE_SOURCE } from './html.js';

/**
 * The headers every admin response carries, HTML or not: the unsubscribe page and the panel share
 * this origin with the API, so nothing served here may run script, load anything from elsewhere,
 * be framed, post a form to another origin, or be sniffed into another type. One place, so a new
 * route cannot forget them.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': ["default-src 'none'", `style-src ${PAGE_STYLE_SOURCE}`, "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
};

/**
 * The panel's pages (panel/index.ts) run script, but only files from this server (the panel's own,
 * htmx, Chart.js): no inline script, no eval, no inline style. Everything else served here (the
 * API, the public unsubscribe page) keeps the policy above, which allows no script at all.
 */
export const PANEL_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export function addSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.headers(SECURITY_HEADERS);
    return payload;
  });
}
