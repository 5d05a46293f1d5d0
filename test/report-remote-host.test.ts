/**
 * The remote host a report names reaches the classifier, so that provider rules
 * (config/remote-host-rules.json) apply to delayed bounces too: a DSN's Remote-MTA, else the host
 * its diagnostic names, else its Reporting-MTA; a plain-text NDR's "host X[ip] said:" (Postfix) or
 * "host X [ip]" (Exim). Reports are written for the test from the MTAs' templates (RFC 3464,
 * Postfix bounce(8) and smtp_proto.c, Exim deliver.c), not copied from any corpus.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileBounceRules, DEFAULT_BOUNCE_RULES_PATH } from '../src/bounces/classifier.js';
import { parseReportSync } from '../src/bounces/report/index.js';

const RETURN_PATH = 'rb+x@bounces.rebound.example';

/** The shipped generic rules, and one provider rule that only the host can trigger. */
const rules = compileBounceRules(JSON.parse(readFileSync(DEFAULT_BOUNCE_RULES_PATH, 'utf8')), 'bounce rules', {
  remoteHostRules: {
    source: 'test',
    data: {
      rules: [{ id: 'provider-xr42', mta: 'provider', remoteHost: 'provider.example', pattern: '\\bXR-42\\b', category: 'virus-related', why: 'test' }],
    },
  },
});

function dsn(perMessage: string, recipient: string): Buffer {
  return Buffer.from(
    `From: MAILER-DAEMON@relay.example.net (Mail Delivery System)\r\nTo: ${RETURN_PATH}\r\nSubject: Undelivered Mail Returned to Sender\r\n` +
      `MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n` +
      `--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host relay.example.net.\r\n\r\n` +
      `--b\r\nContent-Type: message/delivery-status\r\n\r\n${perMessage}\r\n\r\n${recipient.replace(/\n/g, '\r\n')}\r\n` +
      `--b--\r\n`,
  );
}

function plain(from: string, subject: string, body: string): Buffer {
  return Buffer.from(`From: ${from}\r\nTo: ${RETURN_PATH}\r\nSubject: ${subject}\r\n\r\n${body.replace(/\n/g, '\r\n')}\r\n`);
}

const recipientBlock = (...fields: string[]): string =>
  ['Final-Recipient: rfc822; kim@example.org', 'Action: failed', 'Status: 5.7.1', ...fields].join('\n');

function categories(raw: Buffer): Array<string | null> {
  return parseReportSync(raw, { rules }).recipients.map((r) => r.category);
}

describe('report parser: the remote host reaches the classifier', () => {
  it('DSN: Remote-MTA names the provider', () => {
    const raw = dsn('Reporting-MTA: dns; relay.example.net', recipientBlock('Remote-MTA: dns; mx1.Provider.Example.', 'Diagnostic-Code: smtp; 550 5.7.1 refused XR-42'));
    expect(categories(raw)).toEqual(['virus-related']);
    const elsewhere = dsn('Reporting-MTA: dns; relay.example.net', recipientBlock('Remote-MTA: dns; mx1.other.example', 'Diagnostic-Code: smtp; 550 5.7.1 refused XR-42'));
    expect(categories(elsewhere)).not.toEqual(['virus-related']);
  });

  it('DSN without Remote-MTA: the host the diagnostic names (Postfix "host X[ip] said:")', () => {
    const raw = dsn(
      'Reporting-MTA: dns; relay.example.net',
      recipientBlock('Diagnostic-Code: smtp; host mx1.provider.example[192.0.2.7] said: 550 5.7.1 refused XR-42 (in reply to RCPT TO command)'),
    );
    expect(categories(raw)).toEqual(['virus-related']);
  });

  it('DSN naming no remote host: the Reporting-MTA wrote the diagnostic itself; a Remote-MTA elsewhere wins over it', () => {
    const own = dsn('Reporting-MTA: dns; mta3.provider.example', recipientBlock('Diagnostic-Code: smtp; 550 5.7.1 refused XR-42'));
    expect(categories(own)).toEqual(['virus-related']);
    const relayed = dsn('Reporting-MTA: dns; mta3.provider.example', recipientBlock('Remote-MTA: dns; mx.other.example', 'Diagnostic-Code: smtp; 550 5.7.1 refused XR-42'));
    expect(categories(relayed)).not.toEqual(['virus-related']);
  });

  it('an IP literal as Remote-MTA matches no provider rule', () => {
    const raw = dsn('Reporting-MTA: dns; relay.example.net', recipientBlock('Remote-MTA: dns; [192.0.2.7]', 'Diagnostic-Code: smtp; 550 5.7.1 refused XR-42'));
    expect(categories(raw)).not.toEqual(['virus-related']);
  });

  it('Postfix plain-text NDR: "<addr>: host X[ip] said:"', () => {
    const body = [
      'This is the mail system at host relay.example.net.',
      '',
      "I'm sorry to have to inform you that your message could not",
      'be delivered to one or more recipients. It\'s attached below.',
      '',
      '                   The mail system',
      '',
      '<kim@example.org>: host mx1.provider.example[192.0.2.7] said: 550 5.7.1 refused',
      '    XR-42 (in reply to RCPT TO command)',
    ].join('\n');
    const raw = plain('MAILER-DAEMON@relay.example.net (Mail Delivery System)', 'Undelivered Mail Returned to Sender', body);
    expect(parseReportSync(raw, { rules }).recipients.map((r) => [r.recipient, r.remoteMta, r.category])).toEqual([
      ['kim@example.org', 'mx1.provider.example', 'virus-related'],
    ]);
    const elsewhere = plain('MAILER-DAEMON@relay.example.net (Mail Delivery System)', 'Undelivered Mail Returned to Sender', body.replace('mx1.provider.example', 'mx1.other.example'));
    expect(categories(elsewhere)).not.toEqual(['virus-related']);
  });

  it('Exim plain-text NDR: "host X [ip]" under the address', () => {
    const body = [
      'This message was created automatically by mail delivery software.',
      '',
      'A message that you sent could not be delivered to one or more of its',
      'recipients. This is a permanent error. The following address(es) failed:',
      '',
      '  kim@example.org',
      '    host mx1.provider.example [192.0.2.7]',
      '    SMTP error from remote mail server after RCPT TO:<kim@example.org>:',
      '    550 5.7.1 refused XR-42',
    ].join('\n');
    const raw = plain('Mail Delivery System <Mailer-Daemon@relay.example.net>', 'Mail delivery failed: returning message to sender', body);
    expect(parseReportSync(raw, { rules }).recipients.map((r) => [r.recipient, r.remoteMta, r.category])).toEqual([
      ['kim@example.org', 'mx1.provider.example', 'virus-related'],
    ]);
  });
});
