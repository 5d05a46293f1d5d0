import type { Resolver } from 'node:dns/promises';
import { request } from 'node:https';
import { checkServerIdentity } from 'node:tls';

/** RFC 8461 3.3 asks senders to limit the size; real policies are a few hundred bytes. */
export const MAX_POLICY_BYTES = 64 * 1024;

export interface PolicyFetchSettings {
  resolver: Resolver;
  /** 443; another port only for tests (their HTTPS server listens on a free port of 127.0.0.1). */
  port: number;
  timeoutMs: number;
  /** System CAs plus delivery.tls.caFile; undefined: node's own list. */
  ca: string[] | undefined;
}

/**
 * Fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 3.3): the host is resolved
 * with delivery's resolver, its certificate must be valid for mta-sts.DOMAIN, a redirect or any
 * status but 200 is a failure, and so are a body over MAX_POLICY_BYTES and a fetch that takes
 * longer than timeoutMs in all. Resolves with the body, or rejects with the reason.
 */
export async function fetchStsPolicy(domain: string, settings: PolicyFetchSettings): Promise<string> {
  const host = `mta-sts.${domain}`;
  const deadline = AbortSignal.timeout(settings.timeoutMs);
  const addresses = await Promise.race([
    settings.resolver.resolve4(host).catch(async () => settings.resolver.resolve6(host)),
    new Promise<never>((_, reject) => deadline.addEventListener('abort', () => reject(new Error(`${host} did not resolve within ${settings.timeoutMs} ms`)))),
  ]);
  const address = addresses[0];
  if (!address) throw new Error(`${host} has no address`);
  return new Promise<string>((resolve, reject) => {
    const req = request(
      {
        host: address,
        port: settings.port,
        servername: host,
        headers: { host },
        path: '/.well-known/mta-sts.txt',
        method: 'GET',
        signal: deadline,
        ...(settings.ca ? { ca: settings.ca } : {}),
        // The certificate must name mta-sts.DOMAIN, whatever address we connected to.
        checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert),
        agent: false,
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`${host} answered HTTP ${res.statusCode ?? '?'}${res.headers.location ? ` (redirect to ${res.headers.location}, not followed: RFC 8461 3.3)` : ''}`));
          return;
        }
        const type = res.headers['content-type'] ?? '';
        if (!/^text\/plain\b/i.test(type)) {
          res.resume();
          reject(new Error(`${host} served the policy as "${type}", not text/plain`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_POLICY_BYTES) {
            req.destroy(new Error(`${host} sent a policy over ${MAX_POLICY_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.on('error', reject);
      },
    );
    req.on('error', (error) => reject(deadline.aborted ? new Error(`${host} did not answer within ${settings.timeoutMs} ms`) : error));
    req.end();
  });
}
