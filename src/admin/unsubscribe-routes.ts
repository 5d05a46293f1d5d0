import type { FastifyInstance } from 'fastify';
import type { Unsubscriber } from '../unsubscribe/index.js';

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${title}</title></head><body style="font-family:sans-serif;max-width:32em;margin:3em auto">${body}</body></html>`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The one-click endpoint of List-Unsubscribe (RFC 8058): a POST with the body
 * `List-Unsubscribe=One-Click` unsubscribes at once and needs no token of ours but the one in
 * the URL. A GET (a person clicking the link in a client that does not do one-click) only shows
 * a button that POSTs, so that link scanners which follow every URL unsubscribe nobody.
 */
export function unsubscribeRoutes(app: FastifyInstance, unsubscriber: Unsubscriber): void {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => done(null, body));

  app.get<{ Params: { token: string } }>('/unsubscribe/:token', async (request, reply) => {
    const token = escapeHtml(request.params.token);
    return reply
      .type('text/html; charset=utf-8')
      .send(page('Unsubscribe', `<h1>Unsubscribe</h1><p>Stop receiving these emails?</p><form method="post" action="${token}"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>`));
  });

  app.post<{ Params: { token: string } }>('/unsubscribe/:token', async (request, reply) => {
    const result = unsubscriber.byToken(request.params.token, 'one-click');
    if (!result.done) return reply.code(404).type('text/html; charset=utf-8').send(page('Unsubscribe', `<h1>Unsubscribe</h1><p>Sorry: ${escapeHtml(result.reason)}.</p>`));
    return reply.type('text/html; charset=utf-8').send(page('Unsubscribed', `<h1>Unsubscribed</h1><p>${escapeHtml(result.address)} will not get these emails any more.</p>`));
  });
}
