import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import type { TaggedTokenCheck } from '../bounces/verp.js';
import type { UnsubscribeHandling } from '../unsubscribe/forwarded.js';
import { isOneClickBody, ONE_CLICK_FIELD, ONE_CLICK_VALUE } from '../unsubscribe/one-click-body.js';
import { html, htmlPage } from './html.js';

/** A one-click body is 26 bytes; a multipart one a few hundred. */
const FORM_BODY_LIMIT = 16 * 1024;

/** A plain page with a status and one sentence; never a form. */
function refusal(reply: FastifyReply, status: number, sentence: string): FastifyReply {
  return reply.code(status).type('text/html; charset=utf-8').send(htmlPage('Unsubscribe', html`<h1>Unsubscribe</h1><p>${sentence}</p>`));
}

/** The token's problem as a status and words: a malformed one is a bad request, a forged or old one no link of ours. */
function tokenRefusal(reply: FastifyReply, reason: 'malformed' | 'forged' | 'expired'): FastifyReply {
  if (reason === 'malformed') return refusal(reply, 400, 'This is not an unsubscribe link: check that the whole link was copied.');
  if (reason === 'expired') return refusal(reply, 404, 'This unsubscribe link is too old. Use the link in a more recent email.');
  return refusal(reply, 404, 'This unsubscribe link is not valid.');
}

/**
 * The one-click endpoint of List-Unsubscribe (RFC 8058): a POST whose body says
 * `List-Unsubscribe=One-Click` (urlencoded or multipart) unsubscribes at once and needs no token
 * of ours but the one in the URL. A GET (a person clicking the link in a client that does not do
 * one-click) only shows a button whose form POSTs that same body, so link scanners that follow
 * every URL unsubscribe nobody. The token is checked before anything is shown.
 */
export function unsubscribeRoutes(app: FastifyInstance, { unsubscriber, forwarded }: UnsubscribeHandling): void {
  /**
   * Another node's link (store.shared.url, one unsubscribe.url for all nodes): this node cannot
   * check it, the node that sent the mail does once the request is passed on. Its node tag, or
   * null when the link is this node's or no link at all.
   */
  const otherNodeTag = (check: TaggedTokenCheck): string | null =>
    !check.valid && check.reason === 'other-node' && !check.expired && forwarded !== null ? check.nodeTag : null;

  // Its own scope: form bodies are read here only, and its errors are pages, not API JSON.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    // Any body is read as text (up to a small limit) and judged by isOneClickBody: a wrong one is a 400, not a 415.
    scope.addContentTypeParser('*', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT }, (_request, body, done) => done(null, body));
    scope.setErrorHandler((error: FastifyError, request, reply) => {
      if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return refusal(reply, 413, `The request body is too large: an unsubscribe request is "${ONE_CLICK_FIELD}=${ONE_CLICK_VALUE}".`);
      if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) return refusal(reply, error.statusCode, 'The request could not be read.');
      request.log.error({ err: error, reqId: request.id }, 'unsubscribe request failed');
      return refusal(reply, 500, `Something went wrong here; please try again later (reqId ${request.id}).`);
    });

    scope.get<{ Params: { token: string } }>('/unsubscribe/:token', async (request, reply) => {
      const check = unsubscriber.check(request.params.token);
      if (!check.valid && otherNodeTag(check) === null) return tokenRefusal(reply, check.reason === 'other-node' ? 'forged' : check.reason);
      // The form posts back to this page's own URL, built from the checked token alone.
      const action = `./${encodeURIComponent(request.params.token)}`;
      return reply.type('text/html; charset=utf-8').send(
        htmlPage(
          'Unsubscribe',
          html`<h1>Unsubscribe</h1><p>Stop receiving these emails?</p><form method="post" action="${action}"><input type="hidden" name="${ONE_CLICK_FIELD}" value="${ONE_CLICK_VALUE}"><button type="submit">Unsubscribe</button></form>`,
        ),
      );
    });

    scope.post<{ Params: { token: string }; Body: string | undefined }>('/unsubscribe/:token', async (request, reply) => {
      const check = unsubscriber.check(request.params.token);
      const nodeTag = otherNodeTag(check);
      if (!check.valid && nodeTag === null) return tokenRefusal(reply, check.reason === 'other-node' ? 'forged' : check.reason);
      if (!isOneClickBody(request.headers['content-type'], request.body)) {
        return refusal(reply, 400, `Nothing was changed: an unsubscribe request carries "${ONE_CLICK_FIELD}=${ONE_CLICK_VALUE}" in its body (RFC 8058).`);
      }
      if (!check.valid) {
        const outcome = forwarded?.forward(request.params.token.toLowerCase(), nodeTag as string, 'one-click', request.ip);
        if (outcome && 'refused' in outcome) {
          // A node that joined since this one last read the shared store: known within store.shared.catchUpSeconds.
          void reply.header('retry-after', '60');
          return refusal(reply, 503, 'This unsubscribe link cannot be taken here yet; please try again in a minute.');
        }
        return reply.type('text/html; charset=utf-8').send(htmlPage('Unsubscribed', html`<h1>Unsubscribed</h1><p>You will not get these emails any more.</p>`));
      }
      const result = unsubscriber.byRecipient(check.recipientId, 'one-click');
      if (!result.done) return refusal(reply, 404, `Sorry: ${result.reason}.`);
      return reply.type('text/html; charset=utf-8').send(htmlPage('Unsubscribed', html`<h1>Unsubscribed</h1><p>${result.address} will not get these emails any more.</p>`));
    });
  });
}
