/** What Rebound's two SMTP listeners (submission, inbound) share: starting to listen, and replies. */
import type { AddressInfo } from 'node:net';
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

/** An RFC 3463 enhanced status code at the start of a reply text, e.g. "4.3.1 ". */
const LEADING_ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * An error that smtp-server sends as the reply to the command: `responseCode` and the text.
 * smtp-server adds the RFC 3463 enhanced code it maps to the reply code (e.g. 451 → 4.3.0);
 * `enhancedCode` replaces it where the reply means something more precise (451 4.3.1, 553 5.6.7).
 */
export function smtpReply(code: number, text: string, enhancedCode?: string): Error & { responseCode: number } {
  if (enhancedCode === undefined) return Object.assign(new Error(text), { responseCode: code });
  useExplicitEnhancedCodes();
  return Object.assign(new Error(`${enhancedCode} ${text}`), { responseCode: code });
}

let explicitCodesInstalled = false;

/**
 * smtp-server picks the enhanced code from the reply code alone and offers no option to choose
 * it, so a reply text that already starts with one is sent as it is, without a second code.
 * Installed once, by the first smtpReply that carries an enhanced code; test/smtp-session-limits
 * and test/submission-refusals pin the replies, so an smtp-server upgrade cannot change them silently.
 */
export function useExplicitEnhancedCodes(): void {
  if (explicitCodesInstalled) return;
  explicitCodesInstalled = true;
  const send = SMTPConnection.prototype.send;
  SMTPConnection.prototype.send = function (code: number, data?: string | string[] | null, context?: string | false): void {
    const explicit = typeof data === 'string' && LEADING_ENHANCED_CODE.test(data);
    send.call(this, code, data, explicit ? false : context);
  };
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
