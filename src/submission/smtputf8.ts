import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

/**
 * RFC 6531 3.7.4: a MAIL FROM or RCPT TO address with non-ASCII characters is allowed only when
 * the MAIL command carried SMTPUTF8; without it the transaction cannot be relayed as sent.
 *
 * smtp-server hands the application the address with its domain already decoded from punycode
 * (`xn--bcher-kva.example` becomes `bücher.example`), so the address alone cannot tell whether
 * the client sent non-ASCII bytes. The command line can: its parser is wrapped, once, to
 * remember the parsed addresses that came from a line with a non-ASCII byte.
 */
const sentNonAscii = new WeakSet<SMTPServerAddress>();
let installed = false;

export function watchNonAsciiAddresses(): void {
  if (installed) return;
  installed = true;
  const parse = SMTPConnection.prototype._parseAddressCommand;
  SMTPConnection.prototype._parseAddressCommand = function (rawName: string, rawCommand: Buffer | string) {
    const parsed = parse.call(this, rawName, rawCommand);
    if (parsed && /[^\x00-\x7f]/.test(rawCommand.toString())) sentNonAscii.add(parsed);
    return parsed;
  };
}

/** True when the client sent this address with non-ASCII characters outside a SMTPUTF8 transaction. */
export function needsSmtpUtf8(address: SMTPServerAddress, session: SMTPServerSession): boolean {
  return sentNonAscii.has(address) && !session.envelope.smtpUtf8;
}

export const SMTPUTF8_REQUIRED = 'Non-ASCII address requires SMTPUTF8 (RFC 6531): add SMTPUTF8 to MAIL FROM';
