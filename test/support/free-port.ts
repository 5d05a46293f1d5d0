import { createServer, type AddressInfo } from 'node:net';

/**
 * A port on 127.0.0.1 free a moment ago, for a server that cannot be told to bind port 0 and
 * report back (a PostgreSQL cluster, a relay whose port another program must know in advance).
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
