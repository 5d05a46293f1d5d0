import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Database } from '../store/database.js';
import { suppressionsCsv } from '../suppressions/csv.js';
import { importSuppressionCsv } from '../suppressions/csv-import.js';
import {
  addressOrThrow,
  allowValueOrThrow,
  SUPPRESSION_TYPES,
  SuppressionInputError,
  SuppressionLists,
  type AllowlistEntry,
  type SuppressionEntry,
  type SuppressionSource,
  type SuppressionType,
} from '../suppressions/lists.js';
import { writeTransaction } from '../store/write-lock.js';
import { badRequest, notFound } from './api-errors.js';
import { oneOf, PAGE_PARAMS, pageOf, queryOf, textParam, type PageOf } from './query-params.js';

/** What a batch (a JSON list or a CSV file) did: how many landed, and why the others did not. */
interface BatchResult {
  added: number;
  errors: Array<{ index: number; error: string } | { line: number; error: string }>;
}

interface Item {
  address: string;
  type: SuppressionType;
  reason: string | null;
}

const LISTS = SUPPRESSION_TYPES.join(', ');

/** The list named in the path; an unknown one is a route that does not exist. */
function listOf(param: string): SuppressionType {
  if (!(SUPPRESSION_TYPES as readonly string[]).includes(param)) throw notFound(`no suppression list "${param}"; the lists are ${LISTS}`);
  return param as SuppressionType;
}

function mediaType(request: FastifyRequest): string {
  return (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** Reads one JSON item of a POST: `{ address, reason? }`, plus `type` when the path names no list. */
function itemOf(value: unknown, pathType: SuppressionType | null): Item {
  const fields = pathType === null ? ['address', 'type', 'reason'] : ['address', 'reason'];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SuppressionInputError(`not an object like { "address": "user@example.com"${pathType === null ? ', "type": "bounces"' : ''}, "reason": "..." }`);
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    // `type` may repeat the list the path names.
    if (!fields.includes(key) && !(key === 'type' && record.type === pathType)) {
      throw new SuppressionInputError(
        key === 'type' ? `"type" is "${String(record.type)}" but this is the ${pathType} list` : `unknown field "${key}"; the fields are ${fields.join(', ')}`,
      );
    }
  }
  if (record.address === undefined) throw new SuppressionInputError('"address" is required');
  if (typeof record.address !== 'string') throw new SuppressionInputError('"address" must be a string');
  let type = pathType;
  if (type === null) {
    if (record.type === undefined) throw new SuppressionInputError(`"type" is required: one of ${LISTS}`);
    if (typeof record.type !== 'string' || !(SUPPRESSION_TYPES as readonly string[]).includes(record.type)) {
      throw new SuppressionInputError(`"type" must be one of ${LISTS}; got ${JSON.stringify(record.type)}`);
    }
    type = record.type as SuppressionType;
  }
  if (record.reason !== undefined && record.reason !== null && typeof record.reason !== 'string') throw new SuppressionInputError('"reason" must be a string');
  const reason = typeof record.reason === 'string' && record.reason.trim() !== '' ? record.reason.trim() : null;
  return { address: addressOrThrow(record.address), type, reason };
}

/** The message of a refused item; anything but bad input is a real error and goes up. */
function inputError(error: unknown): string {
  if (error instanceof SuppressionInputError) return error.message;
  throw error;
}

/** A batch where nothing landed is a 400 (nothing happened); otherwise the good items landed. */
function batchReply(reply: FastifyReply, result: BatchResult): FastifyReply {
  if (result.added === 0 && result.errors.length > 0) {
    throw badRequest(`nothing added: ${result.errors.length === 1 ? 'the only item is' : `all ${result.errors.length} items are`} bad`, { added: 0, errors: result.errors });
  }
  return reply.code(200).send(result);
}

/** Reads one JSON item of an allowlist POST: `{ value, reason? }`, value an address or a domain. */
function allowItemOf(value: unknown): { value: string; reason: string | null } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SuppressionInputError('not an object like { "value": "user@example.com" or "example.com", "reason": "..." }');
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (key !== 'value' && key !== 'reason') throw new SuppressionInputError(`unknown field "${key}"; the fields are value, reason`);
  }
  if (record.value === undefined) throw new SuppressionInputError('"value" is required: an email address or a domain');
  if (typeof record.value !== 'string') throw new SuppressionInputError('"value" must be a string');
  if (record.reason !== undefined && record.reason !== null && typeof record.reason !== 'string') throw new SuppressionInputError('"reason" must be a string');
  const reason = typeof record.reason === 'string' && record.reason.trim() !== '' ? record.reason.trim() : null;
  return { value: allowValueOrThrow(record.value), reason };
}

const ONE_OR_LIST = 'send one JSON object or a JSON list of them';

/**
 * /v1/suppressions and /v1/allowlist. Every change goes through SuppressionLists, which writes the
 * audit row (actor `api:<token name>`) in the same transaction.
 */
export function suppressionRoutes(app: FastifyInstance, db: Database): void {
  const lists = new SuppressionLists(db);
  const addAll = (items: readonly Item[], source: SuppressionSource, actor: string) =>
    lists.addAll(items.map((item) => ({ address: item.address, type: item.type, source, reason: item.reason, actor })));
  const allowAll = writeTransaction(db, (items: ReadonlyArray<{ value: string; reason: string | null }>, actor: string) =>
    items.map((item) => lists.allow(item.value, actor, item.reason)),
  );

  const listing = (request: FastifyRequest, reply: FastifyReply, type: SuppressionType | undefined) => {
    const query = queryOf(request, type === undefined ? ['type', 'q', 'format', ...PAGE_PARAMS] : ['q', 'format', ...PAGE_PARAMS]);
    const listType = type ?? (query.type === undefined ? undefined : oneOf(query.type, 'type', SUPPRESSION_TYPES, 'bounces'));
    const search = textParam(query.q);
    const format = oneOf(query.format, 'format', ['json', 'csv'] as const, 'json');
    const filter = { ...(listType ? { type: listType } : {}), ...(search ? { search } : {}) };
    if (format === 'csv') {
      // The whole list (pagination does not apply): the file an import reads back.
      const { total } = lists.list({ ...filter, limit: 0 });
      const { entries } = lists.list({ ...filter, limit: total });
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="suppressions-${listType ?? 'all'}.csv"`)
        .send(suppressionsCsv(entries));
    }
    const page = pageOf(query);
    const { total, entries } = lists.list({ ...filter, limit: page.limit, offset: page.offset });
    const body: PageOf<SuppressionEntry> = { items: entries, page: page.page, limit: page.limit, total };
    return reply.send(body);
  };

  /** A CSV import file (suppressions/csv-import.ts); the reply counts what landed and lists each refused line. */
  const importing = async (request: FastifyRequest, reply: FastifyReply, pathType: SuppressionType | null) => {
    const text = typeof request.body === 'string' ? request.body : '';
    const { added, errors } = await importSuppressionCsv(lists, text, {
      list: pathType,
      actor: request.actor,
      otherList: (rowType, list) => `type "${rowType}" is not this list (${list}); import it at /v1/suppressions/${rowType} or /v1/suppressions`,
      log: request.log,
    });
    return batchReply(reply, { added, errors: errors.map((e) => ({ line: e.line, error: e.message })) });
  };

  /** JSON (one object or a list) or, with Content-Type text/csv, an import file. */
  const adding = (request: FastifyRequest, reply: FastifyReply, pathType: SuppressionType | null) => {
    queryOf(request, []);
    const actor = request.actor;
    if (mediaType(request) === 'text/csv') return importing(request, reply, pathType);
    const body: unknown = request.body;
    if (typeof body !== 'object' || body === null) throw badRequest(ONE_OR_LIST);
    if (!Array.isArray(body)) {
      const item = itemOf(body, pathType);
      addAll([item], 'manual', actor);
      const entry = lists.entriesFor(item.address).find((e) => e.type === item.type);
      return reply.code(201).send({ entry });
    }
    const good: Item[] = [];
    const errors: BatchResult['errors'] = [];
    body.forEach((value: unknown, index) => {
      try {
        good.push(itemOf(value, pathType));
      } catch (error) {
        errors.push({ index, error: inputError(error) });
      }
    });
    addAll(good, 'manual', actor);
    return batchReply(reply, { added: good.length, errors });
  };

  app.get('/v1/suppressions', (request, reply) => listing(request, reply, undefined));
  app.post('/v1/suppressions', (request, reply) => adding(request, reply, null));
  app.get<{ Params: { type: string } }>('/v1/suppressions/:type', (request, reply) => listing(request, reply, listOf(request.params.type)));
  app.post<{ Params: { type: string } }>('/v1/suppressions/:type', (request, reply) => adding(request, reply, listOf(request.params.type)));

  app.get<{ Params: { type: string; address: string } }>('/v1/suppressions/:type/:address', (request) => {
    queryOf(request, []);
    const type = listOf(request.params.type);
    const address = addressOrThrow(request.params.address);
    const entries = lists.entriesFor(address);
    const entry = entries.find((e) => e.type === type);
    if (!entry) throw notFound(`${address} is not on the ${type} list`);
    return {
      address,
      entry,
      entries,
      suppressed: lists.suppressionFor(address) !== null,
      allowlist: lists.allowlistFor(address),
      audit: lists.auditFor(address),
    };
  });

  app.delete<{ Params: { type: string; address: string } }>('/v1/suppressions/:type/:address', (request) => {
    const query = queryOf(request, ['reason']);
    const type = listOf(request.params.type);
    const address = addressOrThrow(request.params.address);
    const removed = lists.remove(address, type, request.actor, textParam(query.reason) ?? null);
    if (removed.length === 0) throw notFound(`${address} is not on the ${type} list`);
    return { address, removed };
  });

  app.get('/v1/allowlist', (request) => {
    const query = queryOf(request, ['q', ...PAGE_PARAMS]);
    const page = pageOf(query);
    const search = textParam(query.q);
    const { total, entries: items } = lists.allowlist({ ...(search ? { search } : {}), limit: page.limit, offset: page.offset });
    const body: PageOf<AllowlistEntry> = { items, page: page.page, limit: page.limit, total };
    return body;
  });

  app.get<{ Params: { value: string } }>('/v1/allowlist/:value', (request) => {
    queryOf(request, []);
    const value = allowValueOrThrow(request.params.value);
    const entry = lists.allowlistEntry(value);
    if (!entry) throw notFound(`${value} is not on the allowlist`);
    return { entry, audit: lists.auditFor(value).filter((a) => a.list === 'allowlist') };
  });

  app.post('/v1/allowlist', (request, reply) => {
    queryOf(request, []);
    const body: unknown = request.body;
    if (typeof body !== 'object' || body === null) throw badRequest(ONE_OR_LIST);
    if (!Array.isArray(body)) {
      const [entry] = allowAll([allowItemOf(body)], request.actor);
      return reply.code(201).send({ entry });
    }
    const good: Array<{ value: string; reason: string | null }> = [];
    const errors: BatchResult['errors'] = [];
    body.forEach((value: unknown, index) => {
      try {
        good.push(allowItemOf(value));
      } catch (error) {
        errors.push({ index, error: inputError(error) });
      }
    });
    allowAll(good, request.actor);
    return batchReply(reply, { added: good.length, errors });
  });

  app.delete<{ Params: { value: string } }>('/v1/allowlist/:value', (request) => {
    const query = queryOf(request, ['reason']);
    const value = allowValueOrThrow(request.params.value);
    if (!lists.disallow(value, request.actor, textParam(query.reason) ?? null)) throw notFound(`${value} is not on the allowlist`);
    return { value, removed: true };
  });
}
