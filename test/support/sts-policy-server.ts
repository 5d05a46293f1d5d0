import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';

/** What the server does for one Host: serve a body, or never answer (a fetch that hangs). */
export type PolicyAnswer = { body: string | Buffer; contentType?: string; status?: number; location?: string } | 'hang';

export interface StsPolicyServer {
  port: number;
  /** Requests seen, by Host header (e.g. "mta-sts.example.test"). */
  fetches: string[];
  /** The answer for https://HOST/.well-known/mta-sts.txt from now on. */
  set(host: string, answer: PolicyAnswer): void;
  close(): Promise<void>;
}

/** A real HTTPS server on 127.0.0.1 that serves MTA-STS policies, with the certificate it is given. */
export async function startStsPolicyServer(tls: { key: string; cert: string }): Promise<StsPolicyServer> {
  const answers = new Map<string, PolicyAnswer>();
  const fetches: string[] = [];
  const server: Server = createServer(tls, (req, res) => {
    const host = (req.headers.host ?? '').toLowerCase();
    fetches.push(host);
    const answer = answers.get(host);
    if (answer === 'hang') return;
    if (!answer || req.url !== '/.well-known/mta-sts.txt') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(answer.status ?? 200, { 'content-type': answer.contentType ?? 'text/plain', ...(answer.location ? { location: answer.location } : {}) });
    res.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    fetches,
    set: (host, answer) => answers.set(host.toLowerCase(), answer),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
