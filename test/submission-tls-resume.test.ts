import { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import type { SMTPServer } from 'smtp-server';
import { cacheTlsSessions } from '../src/smtp-tls-sessions.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTlsOnce } from './support/starttls-client.js';
import { submissionServersStoppedAfterEachTest } from './support/submission-server.js';
import { makeTempDir } from './support/temp-dir.js';

/**
 * An app that opens one connection per message pays a full TLS handshake (certificate, key
 * exchange) each time unless the server resumes its session. smtp-server builds one secure
 * context per listener, whose ticket keys live as long as the process, so a client that offers
 * its ticket gets an abbreviated handshake. This pins that: an smtp-server upgrade that built a
 * context per connection would fail here.
 */
describe('submission TLS session resumption (STARTTLS)', () => {
  const startSubmission = submissionServersStoppedAfterEachTest();
  let certDir: ReturnType<typeof makeTempDir>;
  let tls: { key: string; cert: string };

  beforeAll(async () => {
    certDir = makeTempDir('rebound-cert-');
    const pems = await generate([{ name: 'commonName', value: 'relay.test' }], {
      notAfterDate: new Date(Date.now() + 86_400_000),
      keySize: 2048,
      algorithm: 'sha256',
    });
    tls = { key: join(certDir.dir, 'key.pem'), cert: join(certDir.dir, 'cert.pem') };
    writeFileSync(tls.key, pems.private);
    writeFileSync(tls.cert, pems.cert);
  });

  afterAll(() => certDir?.remove());

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`resumes a reconnecting client's session over ${version}`, async () => {
      const { port } = await startSubmission({ submission: { tls } });
      const first = await startTlsOnce(port, { version });
      expect(first.reused).toBe(false);
      expect(first.session).toBeInstanceOf(Buffer);
      const second = await startTlsOnce(port, { version, session: first.session });
      expect(second.reused).toBe(true);
      // A client that offers nothing still gets a full handshake.
      const fresh = await startTlsOnce(port, { version });
      expect(fresh.reused).toBe(false);
    });
  }

  it('resumes a TLS 1.2 client that offers a session ID instead of a ticket (server-side session cache)', async () => {
    const { port } = await startSubmission({ submission: { tls } });
    const first = await startTlsOnce(port, { version: 'TLSv1.2', noTicket: true });
    expect(first.reused).toBe(false);
    const second = await startTlsOnce(port, { version: 'TLSv1.2', noTicket: true, session: first.session });
    expect(second.reused).toBe(true);
  });

  it('does not resume a session issued by another listener (its own ticket keys)', async () => {
    const one = await startSubmission({ submission: { tls } });
    const other = await startSubmission({ submission: { tls } });
    const first = await startTlsOnce(one.port, { version: 'TLSv1.3' });
    const elsewhere = await startTlsOnce(other.port, { version: 'TLSv1.3', session: first.session });
    expect(elsewhere.reused).toBe(false);
  });
});

describe('TLS session cache (session IDs)', () => {
  /** What the cache sees of a listener: its net.Server, where Node asks for sessions. */
  function fakeListener(): { server: EventEmitter; store(id: string): void; lookup(id: string): Buffer | null } {
    const server = new EventEmitter();
    return {
      server,
      store: (id) => server.emit('newSession', Buffer.from(id), Buffer.from(`session ${id}`), () => undefined),
      lookup: (id) => {
        let found: Buffer | null = null;
        server.emit('resumeSession', Buffer.from(id), (_error: Error | null, data: Buffer | null) => (found = data));
        return found;
      },
    };
  }

  it('keeps at most maxSessions, dropping the oldest, and forgets a session after its lifetime', () => {
    const listener = fakeListener();
    let now = 0;
    const cache = cacheTlsSessions(listener as unknown as SMTPServer, { maxSessions: 3, lifetimeSeconds: 60 }, () => now);
    for (const id of ['a', 'b', 'c', 'd']) listener.store(id);
    expect(cache.size()).toBe(3);
    expect(listener.lookup('a')).toBeNull();
    expect(listener.lookup('d')?.toString()).toBe('session d');
    now = 60_000;
    expect(listener.lookup('d')).toBeNull();
    expect(cache.size()).toBe(2);
  });

  it('refuses a size that cannot hold a session', () => {
    expect(() => cacheTlsSessions(fakeListener() as unknown as SMTPServer, { maxSessions: 0, lifetimeSeconds: 60 })).toThrow(/whole number >= 1/);
  });
});
