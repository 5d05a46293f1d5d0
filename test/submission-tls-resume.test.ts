import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from 'selfsigned';
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

  it('does not resume a session issued by another listener (its own ticket keys)', async () => {
    const one = await startSubmission({ submission: { tls } });
    const other = await startSubmission({ submission: { tls } });
    const first = await startTlsOnce(one.port, { version: 'TLSv1.3' });
    const elsewhere = await startTlsOnce(other.port, { version: 'TLSv1.3', session: first.session });
    expect(elsewhere.reused).toBe(false);
  });
});
