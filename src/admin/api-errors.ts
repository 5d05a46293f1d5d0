import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../logger.js';
import { SuppressionInputError } from '../suppressions/lists.js';

/** A refusal the client can act on: its status and a message that names the input and the fix. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly statusCode: number,
    message: string,
    /** Extra fields next to `error`, e.g. the per-item errors of a batch nothing of which landed. */
    readonly extra: Record<string, unknown> = {},
    /** Response headers that go with the refusal (WWW-Authenticate on a 401). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string, extra?: Record<string, unknown>): ApiError => new ApiError(400, message, extra);
export const notFound = (message: string): ApiError => new ApiError(404, message);

export interface BodyLimits {
  json: number;
  csv: number;
}

/** A byte limit as a person reads it: `4096 bytes`, `100 MiB`. */
export const sizeText = (bytes: number): string => (bytes >= 1024 * 1024 ? `${Number((bytes / 1024 / 1024).toFixed(2))} MiB` : `${bytes} bytes`);

/** Fastify's own refusals (body parsing, limits) reworded as `{ error }` with the fix. */
function frameworkMessage(error: FastifyError, limits: BodyLimits, request: FastifyRequest): string | null {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'unsupported Content-Type; send application/json (or text/csv to import suppressions)';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      if (/^text\/csv\b/i.test(request.headers['content-type'] ?? '')) {
        return `the CSV file is over ${sizeText(limits.csv)} (admin.maxImportBytes); split it, or raise admin.maxImportBytes`;
      }
      return `the JSON body is over ${sizeText(limits.json)}; split the list into smaller requests, or import a large list as CSV (Content-Type: text/csv)`;
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return 'the Content-Length header does not match the body';
    default:
      return null;
  }
}

/** Every error leaves as JSON `{ "error": "..." }`; anything unexpected is logged and reported as 500. */
export function errorReplier(logger: Logger, limits: BodyLimits) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (error instanceof ApiError) return reply.code(error.statusCode).headers(error.headers).send({ error: error.message, ...error.extra });
    if (error instanceof SuppressionInputError) return reply.code(400).send({ error: error.message });
    const known = frameworkMessage(error, limits, request);
    if (known !== null) return reply.code(error.statusCode ?? 400).send({ error: known });
    if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: error.message });
    }
    logger.error({ err: error, reqId: request.id, method: request.method, url: request.url }, 'admin API request failed');
    return reply.code(500).send({ error: `internal error; the relay log has it under reqId ${request.id}` });
  };
}
