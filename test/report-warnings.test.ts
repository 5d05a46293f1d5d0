/**
 * Warnings are not failures: a plain-text delay notice (the MTA is still trying) gives kind
 * `delay`, action `delayed` and severity `temporary` (config/ndr-patterns.json `warning`, one
 * entry per MTA family with its source). Every report is written for the test from the MTA's
 * published delay template, not copied from any corpus.
 */
import { describe, expect, it } from 'vitest';
import { parseReportSync, toParseOutput } from '../src/bounces/report/index.js';

function plain(from: string, subject: string, body: string): Buffer {
  return Buffer.from(`From: ${from}\r\nTo: rb+x@bounces.rebound.example\r\nSubject: ${subject}\r\n\r\n${body.replace(/\n/g, '\r\n')}\r\n`);
}

function summary(raw: Buffer): { kind: string; rows: Array<[string | null, string | null, string | null]> } {
  const output = toParseOutput(parseReportSync(raw));
  return { kind: output.kind, rows: output.recipients.map((r) => [r.recipient, r.action, r.severity]) };
}

describe('warnings are not failures (plain-text delay notices)', () => {
  it('Sendmail: the "THIS IS A WARNING MESSAGE ONLY" banner above the error section makes a delay notice', () => {
    const raw = plain(
      'Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>',
      'Returned mail: warning',
      [
        '    **      THIS IS A WARNING MESSAGE ONLY      **',
        '',
        '   ----- The following addresses had delivery problems -----',
        '<late@example.org>',
        '    (reason: 451 4.4.1 reply: read error from mx.example.org.)',
      ].join('\n'),
    );
    expect(summary(raw)).toEqual({ kind: 'delay', rows: [['late@example.org', 'delayed', 'temporary']] });
  });

  it('Postfix: the "Delayed Mail (still being retried)" subject of a shortened delay template (bounce(5))', () => {
    const raw = plain(
      'MAILER-DAEMON@mx.example.net (Mail Delivery System)',
      'Delayed Mail (still being retried)',
      [
        'This is the mail system at host mx.example.net.',
        '',
        'Your message could not be delivered for more than 4 hour(s).',
        '',
        '<wait@example.org>: host mx.example.org[192.0.2.9] said: 450 4.2.0 Mailbox',
        '    temporarily unavailable (in reply to RCPT TO command)',
      ].join('\n'),
    );
    expect(summary(raw)).toEqual({ kind: 'delay', rows: [['wait@example.org', 'delayed', 'temporary']] });
  });

  it('Exchange Online: "Delivery delayed:" and "The server will keep trying to deliver this message"', () => {
    const raw = plain(
      'Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@example.com>',
      'Delivery delayed:Quarterly report',
      [
        "Delivery is delayed to these recipients or groups:",
        '',
        'pending@example.org',
        '',
        "This message hasn't been delivered yet. Delivery will continue to be attempted.",
        '',
        'The server will keep trying to deliver this message for the next 1 days, 19 hours and 52 minutes.',
      ].join('\n'),
    );
    expect(summary(raw)).toEqual({ kind: 'delay', rows: [['pending@example.org', 'delayed', 'temporary']] });
  });

  it('guard: a final failure is still a failure ("retry timeout exceeded" is no warning)', () => {
    const raw = plain(
      'Mail Delivery System <Mailer-Daemon@relay.example.net>',
      'Mail delivery failed: returning message to sender',
      [
        'This message was created automatically by mail delivery software.',
        '',
        'A message that you sent could not be delivered to one or more of its',
        'recipients. This is a permanent error. The following address(es) failed:',
        '',
        '  gone@example.org',
        '    retry timeout exceeded',
      ].join('\n'),
    );
    expect(summary(raw).kind).toBe('bounce');
  });
});

describe('warnings are not failures: qmail and prose delay notices', () => {
  it('qmail-send: "I\'m going to keep trying" is a delay; "I\'m not going to try again" is a failure', () => {
    const body = (tail: string): string =>
      [
        'Hi. This is the qmail-send program at qmail.example.net.',
        "I'm afraid I wasn't able to deliver your message to the following addresses.",
        '',
        '<ann@example.org>:',
        "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)",
        tail,
        '',
        '--- Below this line is a copy of the message.',
      ].join('\n');
    const delayed = plain('MAILER-DAEMON@qmail.example.net', 'failure notice', body("I'm going to keep trying."));
    expect(summary(delayed)).toEqual({ kind: 'delay', rows: [['ann@example.org', 'delayed', 'temporary']] });
    const failed = plain('MAILER-DAEMON@qmail.example.net', 'failure notice', body("I'm not going to try again; this message has been in the queue too long."));
    expect(summary(failed).kind).toBe('bounce');
    expect(summary(failed).rows[0]?.[1]).toBe('failed');
  });

  it('a report in no known wording: "has not been delivered yet" and "will keep trying" name a delay', () => {
    const raw = plain(
      'MAILER-DAEMON@mail.example.net',
      'Message delayed',
      ['Your message to ann@example.org has not been delivered yet.', 'The mail system will keep trying for 4 more days.'].join('\n'),
    );
    expect(summary(raw)).toEqual({ kind: 'delay', rows: [['ann@example.org', 'delayed', 'temporary']] });
  });
});

describe('warnings are not failures: delay subjects', () => {
  it.each(['Mail delivery delayed', 'Delayed Mail', 'Warning: delayed mail', 'WARNING: message delayed'])('subject "%s" makes a delay notice', (subject) => {
    const raw = plain('MAILER-DAEMON@mail.example.net', subject, ['The following recipient could not be reached yet:', '', 'ann@example.org: connection timed out'].join('\n'));
    expect(summary(raw)).toEqual({ kind: 'delay', rows: [['ann@example.org', 'delayed', 'temporary']] });
  });
});

describe('guard: failures are not warnings', () => {
  it('"has not been delivered" without "yet" is a failure ("... because of a permanent error")', () => {
    const raw = plain(
      'postmaster@mx.example.net',
      'Undeliverable mail',
      ['Your message has not been delivered to the following recipient because of a permanent error:', '', 'ann@example.org: no such user'].join('\n'),
    );
    expect(summary(raw)).toEqual({ kind: 'bounce', rows: [['ann@example.org', 'failed', 'permanent']] });
  });
});
