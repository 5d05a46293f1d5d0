import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

let patched = false;

/**
 * smtp-server answers an accepted DATA with enhanced code 2.6.0, which RFC 3463 defines as a media
 * error; Rebound answers "250 2.0.0 Ok: queued as <id>" as Postfix does, and clients, log parsers
 * and our tests expect. smtp-server offers no option for it, so the one context is remapped here;
 * test/submission.test.ts pins the reply so an smtp-server upgrade cannot change it silently.
 */
export function useQueuedReplyCode(): void {
  if (patched) return;
  patched = true;
  const original = SMTPConnection.prototype._getEnhancedStatusCode;
  SMTPConnection.prototype._getEnhancedStatusCode = function (code: number, context?: string | false): string {
    const enhanced = original.call(this, code, context);
    return context === 'DATA_OK' && enhanced !== '' ? '2.0.0' : enhanced;
  };
}
