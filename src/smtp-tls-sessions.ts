/**
 * TLS session resumption for a listener, so a client that reconnects (one connection per
 * message) skips the certificate and key exchange of a full handshake.
 *
 * - Tickets (TLS 1.3, and TLS 1.2 clients that offer one) already work: smtp-server builds one
 *   secure context per listener, whose ticket keys OpenSSL keeps for the life of the process;
 *   tickets are good for OpenSSL's default 7200 s. Nothing is stored per client.
 * - Session IDs (TLS 1.2 clients without tickets) need a cache on the server. Node keeps none of
 *   its own (OpenSSL's internal cache is off); it asks the listening server through the
 *   `newSession` / `resumeSession` events, which this module answers from a cache of bounded size.
 *
 * test/submission-tls-resume.test.ts reconnects with each kind.
 */
import type { SMTPServer } from 'smtp-server';

export interface TlsSessionCacheSettings {
  /** Sessions kept at most (each ~1 KiB); the oldest are dropped first. */
  maxSessions: number;
  /** How long a session can be resumed: OpenSSL's default session timeout, as for tickets. */
  lifetimeSeconds: number;
}

export const DEFAULT_TLS_SESSION_CACHE: TlsSessionCacheSettings = { maxSessions: 4096, lifetimeSeconds: 7200 };

interface CachedSession {
  data: Buffer;
  expiresAt: number;
}

/** Answers session-ID resumption for the TLS sockets `server` creates (STARTTLS and implicit TLS). */
export function cacheTlsSessions(
  server: SMTPServer,
  settings: TlsSessionCacheSettings = DEFAULT_TLS_SESSION_CACHE,
  now: () => number = Date.now,
): { size(): number } {
  if (!Number.isInteger(settings.maxSessions) || settings.maxSessions < 1) {
    throw new RangeError(`TLS session cache size must be a whole number >= 1, not ${settings.maxSessions}`);
  }
  const sessions = new Map<string, CachedSession>();
  const lifetimeMs = settings.lifetimeSeconds * 1000;

  server.server.on('newSession', (id: Buffer, data: Buffer, done: () => void) => {
    const key = id.toString('hex');
    sessions.delete(key);
    sessions.set(key, { data, expiresAt: now() + lifetimeMs });
    if (sessions.size > settings.maxSessions) sessions.delete(sessions.keys().next().value as string);
    done();
  });

  server.server.on('resumeSession', (id: Buffer, callback: (error: Error | null, data: Buffer | null) => void) => {
    const key = id.toString('hex');
    const cached = sessions.get(key);
    if (cached && cached.expiresAt > now()) return callback(null, cached.data);
    if (cached) sessions.delete(key);
    callback(null, null);
  });

  return { size: () => sessions.size };
}
