import type { FastifyInstance } from 'fastify';
import type { Database } from '../store/database.js';
import { queueSummary } from '../store/queue.js';
import { flushDeferred, QUEUE_ACTION_FUNCTIONS, QUEUE_ACTIONS, QueueSelectorError, UnknownQueueIdError, type QueueSelectorInput } from '../store/queue-actions.js';
import { addressOrThrow } from '../suppressions/lists.js';
import { badRequest, notFound } from './api-errors.js';
import { PAGE_PARAMS, pageOf, queryOf, textParam, wholeNumber, type PageOf } from './query-params.js';

interface RecipientRow {
  id: number;
  address: string;
  domain: string;
  status: string;
  attempts: number;
  nextAttemptAt: string | null;
  lastReply: string | null;
  updatedAt: string;
}

export interface EventRow {
  id: number;
  at: string;
  event: string;
  reason: string | null;
  source: string | null;
  severity: string | null;
  bounceType: string | null;
  category: string | null;
  code: number | null;
  enhancedCode: string | null;
  detail: string | null;
  address: string | null;
  queueId: string;
  reportId: number | null;
  localIp: string | null;
  mxHost: string | null;
  /** Who caused an operator's event (held, released, deleted, an operator bounce): cli:<user>, api:<token name>. */
  actor: string | null;
}

const EVENT_COLUMNS = `
  e.id, e.at, e.event, e.reason, e.source, e.severity, e.bounce_type AS bounceType, e.category, e.code,
  e.enhanced_code AS enhancedCode, e.detail, r.address, m.queue_id AS queueId, e.report_id AS reportId,
  e.local_ip AS localIp, e.mx_host AS mxHost, e.actor`;

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
  const message = db.prepare(`
    SELECT id, queue_id AS queueId, received_at AS receivedAt, mail_from AS mailFrom, client_ip AS clientIp,
           client_helo AS clientHelo, auth_user AS authUser, protocol, size, message_id_header AS messageId,
           from_domain AS fromDomain, subject, campaign_id AS campaignId
      FROM messages WHERE queue_id = ?`);
  const recipientsOf = db.prepare(`
    SELECT id, address, domain, status, attempts, next_attempt_at AS nextAttemptAt, last_reply AS lastReply, updated_at AS updatedAt
      FROM recipients WHERE message_id = ? ORDER BY id`);
  const triesOf = db.prepare(`
    SELECT started_at AS startedAt, duration_ms AS durationMs, mx_host AS mxHost, mx_ip AS mxIp, local_ip AS localIp,
           mail_from AS mailFrom, outcome, code, enhanced_code AS enhancedCode, text, severity, bounce_type AS bounceType, category
      FROM attempts WHERE recipient_id = ? ORDER BY id`);
  const messageId = db.prepare('SELECT id FROM messages WHERE queue_id = ?').pluck();
  const anyRecipient = db.prepare('SELECT 1 FROM recipients WHERE address = ? LIMIT 1').pluck();

  // One statement per filter shape; both filters use an index (recipients_by_address, events_by_*).
  const filters = {
    recipient: 'e.recipient_id IN (SELECT id FROM recipients WHERE address = @recipient)',
    message: 'e.message_id = @messageId',
  };
  const eventStatements = (where: string) => ({
    count: db.prepare(`SELECT count(*) FROM events e WHERE ${where}`).pluck(),
    page: db.prepare(`
      SELECT ${EVENT_COLUMNS}
        FROM events e JOIN messages m ON m.id = e.message_id LEFT JOIN recipients r ON r.id = e.recipient_id
       WHERE ${where}
       ORDER BY e.at, e.id LIMIT @limit OFFSET @offset`),
  });
  const byRecipient = eventStatements(filters.recipient);
  const byMessage = eventStatements(filters.message);
  const byBoth = eventStatements(`${filters.recipient} AND ${filters.message}`);

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
    const row = message.get(request.params.queueId) as ({ id: number } & Record<string, unknown>) | undefined;
    if (!row) throw notFound(`no message with queue id "${request.params.queueId}"`);
    const { id, ...fields } = row;
    const recipients = (recipientsOf.all(id) as RecipientRow[]).map(({ id: recipientId, ...recipient }) => ({
      ...recipient,
      tries: triesOf.all(recipientId),
    }));
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
    const filter: Record<string, string | number> = {};
    if (recipientParam !== undefined) {
      const recipient = addressOrThrow(recipientParam);
      if (!anyRecipient.get(recipient)) throw notFound(`no mail to ${recipient} in the store`);
      filter.recipient = recipient;
    }
    if (queueId !== undefined) {
      const id = messageId.get(queueId) as number | undefined;
      if (id === undefined) throw notFound(`no message with queue id "${queueId}"`);
      filter.messageId = id;
    }
    const statements = recipientParam === undefined ? byMessage : queueId === undefined ? byRecipient : byBoth;
    const total = statements.count.get(filter) as number;
    const items = statements.page.all({ ...filter, limit: page.limit, offset: page.offset }) as EventRow[];
    const body: PageOf<EventRow> = { items, page: page.page, limit: page.limit, total };
    return body;
  });
}
