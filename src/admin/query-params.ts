import type { FastifyRequest } from 'fastify';
import { badRequest } from './api-errors.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

export interface Page {
  limit: number;
  page: number;
  offset: number;
}

/** The body of every paginated answer. */
export interface PageOf<T> {
  items: T[];
  page: number;
  limit: number;
  total: number;
}

type Query = Record<string, string | string[] | undefined>;

/**
 * The query string of a request, checked against the parameters the endpoint takes: an unknown
 * one (`groupBy` for `group_by`) or one given twice is refused rather than silently ignored.
 */
export function queryOf(request: FastifyRequest, allowed: readonly string[]): Record<string, string | undefined> {
  const query = (request.query ?? {}) as Query;
  const result: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(query)) {
    if (!allowed.includes(key)) {
      throw badRequest(
        allowed.length === 0
          ? `unknown query parameter "${key}"; this endpoint takes none`
          : `unknown query parameter "${key}"; this endpoint takes ${allowed.join(', ')}`,
      );
    }
    if (Array.isArray(value)) throw badRequest(`give ${key} once, not ${value.length} times`);
    result[key] = value;
  }
  return result;
}

/** A whole number in [min, max] from a query parameter, or the fallback when it is absent. */
export function wholeNumber(value: string | undefined, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  const n = /^\d{1,9}$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `from ${min} to ${max}`;
    throw badRequest(`${name} must be a whole number ${range}; got "${value}"`);
  }
  return n;
}

/** `limit` (default 100, at most 1000) and `page` (from 1). */
export function pageOf(query: Record<string, string | undefined>): Page {
  const limit = wholeNumber(query.limit, 'limit', 1, MAX_LIMIT, DEFAULT_LIMIT);
  const page = wholeNumber(query.page, 'page', 1, Number.MAX_SAFE_INTEGER, 1);
  return { limit, page, offset: (page - 1) * limit };
}

export const PAGE_PARAMS = ['limit', 'page'] as const;

/** A free-text parameter: trimmed; empty means absent. */
export function textParam(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

/** One of a fixed set of words, or the fallback when absent. */
export function oneOf<T extends string>(value: string | undefined, name: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  const wanted = value.trim().toLowerCase();
  if (!(allowed as readonly string[]).includes(wanted)) throw badRequest(`${name} must be one of ${allowed.join(', ')}; got "${value}"`);
  return wanted as T;
}
