import type { FastifyInstance } from 'fastify';
import type { Database } from '../store/database.js';
import { MessageHistory, type EventFilter, type EventRow, type OtherNodeEventFilter, type OtherNodeEventRow } from '../store/history.js';
import { queueSummary } from '../store/queue.js';
import { isStoreShared } from '../store/shared-outbox.js';
import { flushDeferred, QUEUE_ACTION_FUNCTIONS, QUEUE_ACTIONS, QueueSelectorError, UnknownQueueIdError, type QueueSelectorInput } from '../store/queue-actions.js';
import { addressOrThrow } from '../suppressions/lists.js';
import { badRequest, notFound } from './api-errors.js';
import { PAGE_PARAMS, pageOf, queryOf, textParam, wholeNumber, type PageOf } from './query-params.js';

const SELECTOR_FIELDS = ['queueIds', 'domain', 'sender'] as const;
const SELECTOR_HELP = 'send a JSON object with exactly one of { "queueIds": ["..."] }, { "domain": "example.com" }, { "sender": "app@shop.example" }';

const FLUSH_HELP = `send a JSON object: {} for every deferred recipient, or ${SELECTOR_HELP.replace('send a JSON object with ', '')}`;

/** The store's refusals as the API answers them: an unknown queue id 404, a bad selector 400. */
function apiErrorOf(error: unknown): unknown {
  if (error instanceof UnknownQueueIdError) return notFound(error.message);
  if (error instanceof QueueSelectorError) return badRequest(error.message);
  return error;
}

/**
 * The body of POST /v1/queue/{flush,hold,release,delete,bounce}, checked for shape and types only: the
 * store (queueSelector) checks the values and that exactly one selector is given.
 */
function selectorOfBody(body: unknown, help = SELECTOR_HELP): QueueSelectorInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest(help);
  const fields = body as Record<string, unknown>;
  const unknownKeys = Object.keys(fields).filter((key) => !(SELECTOR_FIELDS as readonly string[]).includes(key));
  if (unknownKeys.length > 0) throw badRequest(`unknown field ${unknownKeys.map((k) => `"${k}"`).join(', ')}; the body takes exactly one of "queueIds", "domain", "sender"`);
  const { queueIds, domain, sender } = fields;
  if (queueIds !== undefined && (!Array.isArray(queueIds) || queueIds.length === 0 || !queueIds.every((id) => typeof id === 'string'))) {
    throw badRequest('"queueIds" must be a non-empty array of queue ids (strings)');
  }
  if (domain !== undefined && typeof domain !== 'string') throw badRequest('"domain" must be a string: a recipient domain such as "example.com"');
  if (sender !== undefined && typeof sender !== 'string') throw badRequest('"sender" must be a string: an envelope sender such as "app@shop.example", or "<>" for the null sender');
  return {
    ...(queueIds !== undefined ? { queueIds: queueIds as string[] } : {}),
    ...(domain !== undefined ? { domain } : {}),
    ...(sender !== undefined ? { sender } : {}),
  };
}

/** /v1/queue (where mail is) and /v1/events (what happened to it), read from the store. */
export function queueRoutes(app: FastifyInstance, db: Database): void {
  const history = new MessageHistory(db);

  app.get('/v1/queue', (request) => {
    const query = queryOf(request, ['limit']);
    return queueSummary(db, wholeNumber(query.limit, 'limit', 1, 1000, 10));
  });

  // Deferred mail due now (postqueue -f, -s): {} for all of it, or the selector the actions take; audited as api:<token name>.
  app.post('/v1/queue/flush', (request) => {
    queryOf(request, []);
    const body: unknown = request.body ?? {};
    const all = typeof body === 'object' && body !== null && !Array.isArray(body) && Object.keys(body).length === 0;
    try {
      return { recipients: flushDeferred(db, all ? null : selectorOfBody(body, FLUSH_HELP), request.actor).recipients };
    } catch (error) {
      throw apiErrorOf(error);
    }
  });

  // Operator actions on waiting mail (postsuper -h, -H, -d, and a bounce), audited as api:<token name>.
  for (const action of QUEUE_ACTIONS) {
    app.post(`/v1/queue/${action}`, async (request) => {
      queryOf(request, []);
      const selector = selectorOfBody(request.body);
      try {
        const result = await QUEUE_ACTION_FUNCTIONS[action](db, selector, request.actor);
        return { recipients: result.recipients, skipped: result.skipped };
      } catch (error) {
        throw apiErrorOf(error);
      }
    });
  }

  app.get<{ Params: { queueId: string } }>('/v1/queue/:queueId', (request) => {
    queryOf(request, []);
    const row = history.message(request.params.queueId);
    if (!row) throw notFound(`no message with queue id "${request.params.queueId}"`);
    const { id, ...fields } = row;
    const recipients = history.recipients(id).map(({ id: recipientId, ...recipient }) => ({ ...recipient, tries: history.tries(recipientId) }));
    return { message: fields, recipients };
  });

  app.get('/v1/events', (request) => {
    const query = queryOf(request, ['recipient', 'message', ...PAGE_PARAMS]);
    const recipientParam = textParam(query.recipient);
    const queueId = textParam(query.message);
    if (recipientParam === undefined && queueId === undefined) {
      throw badRequest('give recipient=<address> or message=<queue id> (or both)');
    }
    const page = pageOf(query);
    const filter: EventFilter = {};
    const otherFilter: OtherNodeEventFilter = {};
    // What this store lacks may have happened on another node (store.shared.url): 404 only when neither has it.
    let missing: string | null = null;
    if (recipientParam !== undefined) {
      const recipient = addressOrThrow(recipientParam);
      if (!history.hasMailTo(recipient)) missing = `no mail to ${recipient} in the store`;
      filter.recipient = recipient;
      otherFilter.recipient = recipient;
    }
    if (queueId !== undefined) {
      const id = history.messageRowId(queueId);
      if (id === undefined) missing ??= `no message with queue id "${queueId}"`;
      else filter.messageId = id;
      otherFilter.queueId = queueId;
    }
    const otherNodes = isStoreShared(db) ? history.otherNodeEvents(otherFilter, page.limit, page.offset) : null;
    if (missing !== null && (otherNodes === null || otherNodes.total === 0)) throw notFound(missing);
    const { total, items } = missing === null ? history.events(filter, page.limit, page.offset) : { total: 0, items: [] };
    const body: PageOf<EventRow> & { otherNodes?: { total: number; items: OtherNodeEventRow[] } } = { items, page: page.page, limit: page.limit, total };
    if (otherNodes !== null) body.otherNodes = otherNodes;
    return body;
  });
}
