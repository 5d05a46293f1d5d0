import { createHash, timingSafeEqual } from 'node:crypto';
import { ApiError } from './api-errors.js';

/** admin may change things; viewer may only look (the API's GETs, the panel's pages). */
export type AdminRole = 'admin' | 'viewer';

export interface AdminToken {
  name: string;
  token: string;
  role: AdminRole;
}

/** Whom a token names: its name (the actor in the audits) and its role. */
export interface TokenHolder {
  name: string;
  role: AdminRole;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is asking, for the audits: `api:<token name>`, or `panel:<token name>` when signed in to the panel. */
    actor: string;
    /** The asking token's role; viewer requests that would change something get a 403. */
    role: AdminRole;
  }
}

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/** RFC 6750: a 401 names the scheme, and says when the token itself was the problem. */
function unauthorized(message: string, invalidToken: boolean): ApiError {
  return new ApiError(401, message, {}, { 'www-authenticate': `Bearer realm="rebound"${invalidToken ? ', error="invalid_token"' : ''}` });
}

/**
 * Checks `Authorization: Bearer <token>` (or a token typed into the panel's sign-in) against
 * admin.tokens and returns the token's holder (the actor `api:<name>` in the audits, and its role). Tokens are compared as SHA-256 digests with
 * timingSafeEqual, and every configured token is compared, so the time taken says nothing about
 * how much of a token was right, nor which one matched.
 */
export class BearerAuth {
  private readonly tokens: Array<TokenHolder & { digest: Buffer }>;

  constructor(tokens: readonly AdminToken[]) {
    // A token without a role (configs written before roles, or built by hand) is an admin, as all were.
    this.tokens = tokens.map((t) => ({ name: t.name, role: t.role ?? 'admin', digest: digest(t.token) }));
  }

  /** The holder of this token, or null; the panel's sign-in asks this. */
  holderOf(token: string): TokenHolder | null {
    const presented = digest(token);
    let holder: TokenHolder | null = null;
    for (const known of this.tokens) {
      if (timingSafeEqual(presented, known.digest) && holder === null) holder = { name: known.name, role: known.role };
    }
    return holder;
  }

  get configured(): boolean {
    return this.tokens.length > 0;
  }

  /** The holder of the token the header carries; throws a 401 ApiError otherwise. */
  holderFor(header: string | undefined): TokenHolder {
    if (!this.configured) {
      throw unauthorized('the admin API has no tokens: add { "name": ..., "token": ... } to admin.tokens in the configuration', false);
    }
    if (header === undefined || header.trim() === '') {
      throw unauthorized('missing bearer token: send "Authorization: Bearer <token>" with a token from admin.tokens', false);
    }
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match) throw unauthorized('the Authorization header must be "Bearer <token>"', false);
    const holder = this.holderOf(match[1] as string);
    if (holder === null) throw unauthorized('invalid bearer token: it is not one of admin.tokens', true);
    return holder;
  }
}
