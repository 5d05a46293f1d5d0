import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { smtpReply } from '../smtp-listener.js';

let patched = false;

/**
 * smtp-server adds the enhanced status code (RFC 3463) that it maps to the reply code: 451 is
 * always 4.3.0 and 552 always 5.2.2. The inbound listener's refusals mean something narrower (a
 * client over its rate is 4.7.1, a report over its size is 5.3.4), and smtp-server has no option
 * for it, so a reply text that starts with an enhanced code of the reply's own class is sent as
 * it is instead of getting a second one. test/inbound-limits.test.ts pins the replies.
 */
export function useExplicitEnhancedCodes(): void {
  if (patched) return;
  patched = true;
  const original = SMTPConnection.prototype.send;
  SMTPConnection.prototype.send = function (code: number, data?: string | string[] | null, context?: string | false): void {
    const explicit = context === undefined && typeof data === 'string' && /^([245])\.\d{1,3}\.\d{1,3} /.exec(data)?.[1] === String(code)[0];
    original.call(this, code, data, explicit ? false : context);
  };
}

/** An error smtp-server answers with exactly `code enhanced text` (once useExplicitEnhancedCodes ran). */
export function smtpReplyWithCode(code: number, enhanced: string, text: string): Error & { responseCode: number } {
  return smtpReply(code, `${enhanced} ${text}`);
}
