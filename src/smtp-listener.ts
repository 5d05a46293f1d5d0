/** What Rebound's two SMTP listeners (submission, inbound) share: starting to listen, and replies. */
import type { AddressInfo } from 'node:net';
import type { SMTPServer } from 'smtp-server';

/**
 * An error that smtp-server sends as the reply to the command: `responseCode` and the text;
 * smtp-server adds the RFC 3463 enhanced code that goes with the code.
 */
export function smtpReply(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}

/** Starts an smtp-server listening; resolves with the bound address, rejects with the listen error. */
export function listenSmtp(server: SMTPServer, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, host, () => {
      server.server.off('error', reject);
      resolve(server.server.address() as AddressInfo);
    });
  });
}
