import { createHash, timingSafeEqual } from 'node:crypto';
import { ApiError } from './api-errors.js';

export interface AdminToken {
  name: string;
  token: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is asking, for the suppression audit: `api:<token name>`. */
    actor: string;
  }
}

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/** RFC 6750: a 401 names the scheme, and says when the token itself was the problem. */
function unauthorized(message: string, invalidToken: boolean): ApiError {
  return new ApiError(401, message, {}, { 'www-authenticate': `Bearer realm="rebound"${invalidToken ? ', error="invalid_token"' : ''}` });
}

/**
 * Checks `Authorization: Bearer <token>` against admin.tokens and returns the token's name (the
 * actor `api:<name>` in the suppression audit). Tokens are compared as SHA-256 digests with
 * timingSafeEqual, and every configured token is compared, so the time taken says nothing about
 * how much of a token was right, nor which one matched.
 */
export class BearerAuth {
  private readonly tokens: Array<{ name: string; digest: Buffer }>;

  constructor(tokens: readonly AdminToken[]) {
    this.tokens = tokens.map((t) => ({ name: t.name, digest: digest(t.token) }));
  }

  get configured(): boolean {
    return this.tokens.length > 0;
  }

  /** The name of the token the header carries; throws a 401 ApiError otherwise. */
  nameFor(header: string | undefined): string {
    if (!this.configured) {
      throw unauthorized('the admin API has no tokens: add { "name": ..., "token": ... } to admin.tokens in the configuration', false);
    }
    if (header === undefined || header.trim() === '') {
      throw unauthorized('missing bearer token: send "Authorization: Bearer <token>" with a token from admin.tokens', false);
    }
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match) throw unauthorized('the Authorization header must be "Bearer <token>"', false);
    const presented = digest(match[1] as string);
    let name: string | null = null;
    for (const token of this.tokens) {
      if (timingSafeEqual(presented, token.digest) && name === null) name = token.name;
    }
    if (name === null) throw unauthorized('invalid bearer token: it is not one of admin.tokens', true);
    return name;
  }
}
