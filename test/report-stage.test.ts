/**
 * The SMTP stage a failing reply answered, read from the report (src/bounces/report/stage.ts and
 * config/ndr-patterns.json `stage`). Every report here is written for the test from the MTA's
 * published template (Postfix bounce(8) and smtp_proto.c, Exim deliver.c and transports/smtp.c,
 * Sendmail's transcript, qmail-remote.c), not copied from any corpus.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { compileReportPatterns, parseReportSync, ReportPatternsError, toParseOutput } from '../src/bounces/report/index.js';

const RETURN_PATH = 'rb+x@bounces.rebound.example';

function dsn(text: string, blocks: string, subject = 'Undelivered Mail Returned to Sender'): Buffer {
  return Buffer.from(
    `From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\nTo: ${RETURN_PATH}\r\nSubject: ${subject}\r\n` +
      `MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n` +
      `--b\r\nContent-Type: text/plain\r\n\r\n${text.replace(/\n/g, '\r\n')}\r\n\r\n` +
      `--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n${blocks.replace(/\n/g, '\r\n')}\r\n` +
      `--b--\r\n`,
  );
}

function plain(from: string, subject: string, body: string): Buffer {
  return Buffer.from(`From: ${from}\r\nTo: ${RETURN_PATH}\r\nSubject: ${subject}\r\n\r\n${body.replace(/\n/g, '\r\n')}\r\n`);
}

function stages(raw: Buffer): Array<[string | null, string | null]> {
  return toParseOutput(parseReportSync(raw)).recipients.map((r) => [r.recipient, r.stage]);
}

describe('stage: which SMTP command the failing reply answered', () => {
  it('Postfix DSN: "(in reply to ... command)" in the Diagnostic-Code, also when it wraps', () => {
    const raw = dsn(
      'This is the mail system at host mx.example.net.',
      [
        'Final-Recipient: rfc822; a@example.org',
        'Action: failed',
        'Status: 5.7.1',
        'Diagnostic-Code: smtp; 554 5.7.1 Message rejected by content filter (in reply to end',
        '    of DATA command)',
        '',
        'Final-Recipient: rfc822; b@example.org',
        'Action: failed',
        'Status: 5.1.1',
        'Diagnostic-Code: smtp; 550 5.1.1 <b@example.org>: Recipient address rejected: User unknown (in reply to RCPT TO',
        '    command)',
        '',
        'Final-Recipient: rfc822; c@example.org',
        'Action: failed',
        'Status: 5.7.1',
        'Diagnostic-Code: smtp; 553 5.7.1 Sender address rejected: not owned by user (in reply to MAIL FROM command)',
      ].join('\n'),
    );
    expect(stages(raw)).toEqual([
      ['a@example.org', 'data'],
      ['b@example.org', 'rcpt'],
      ['c@example.org', 'mail'],
    ]);
    expect(parseReportSync(raw).recipients[0]?.stage).toBe('data');
  });

  it('Postfix: a connection that never answered is the connection stage', () => {
    const raw = dsn(
      'This is the mail system at host mx.example.net.',
      [
        'Final-Recipient: rfc822; d@example.org',
        'Action: failed',
        'Status: 4.4.1',
        'Diagnostic-Code: X-Postfix; connect to mx.example.org[192.0.2.7]:25: Connection refused',
      ].join('\n'),
    );
    expect(stages(raw)).toEqual([['d@example.org', 'connection']]);
  });

  it('Exim plain text: "SMTP error from remote mail server after RCPT TO:<addr>:" and "after end of data:" per recipient', () => {
    const raw = plain(
      'Mail Delivery System <Mailer-Daemon@relay.example.net>',
      'Mail delivery failed: returning message to sender',
      [
        'This message was created automatically by mail delivery software.',
        '',
        'A message that you sent could not be delivered to one or more of its',
        'recipients. This is a permanent error. The following address(es) failed:',
        '',
        '  first@example.org',
        '    host mx.example.org [192.0.2.10]',
        '    SMTP error from remote mail server after RCPT TO:<first@example.org>:',
        '    550 5.1.1 <first@example.org>: Recipient address rejected: User unknown',
        '  second@example.com',
        '    host mx.example.com [192.0.2.20]',
        '    SMTP error from remote mail server after end of data:',
        '    550 5.7.1 Message rejected as spam',
        '  third@example.net',
        '    host mx.example.net [192.0.2.30]',
        '    SMTP error from remote mail server after MAIL FROM:<rb+x@bounces.rebound.example> SIZE=2048:',
        '    550 5.7.1 Sender rejected',
        '',
        '------ This is a copy of the message, including all the headers. ------',
        '',
        'Subject: hello',
      ].join('\n'),
    );
    expect(stages(raw)).toEqual([
      ['first@example.org', 'rcpt'],
      ['second@example.com', 'data'],
      ['third@example.net', 'mail'],
    ]);
  });

  it('Exim DSN: the stage is read from the text part when the Diagnostic-Code does not say', () => {
    const raw = dsn(
      [
        'This message was created automatically by mail delivery software.',
        '',
        'A message that you sent could not be delivered to one or more of its',
        'recipients. This is a permanent error. The following address(es) failed:',
        '',
        '  kim@example.org',
        '    host mx.example.org [192.0.2.10]',
        '    SMTP error from remote mail server after pipelined DATA:',
        '    554 5.7.1 Message refused by policy',
      ].join('\n'),
      ['Action: failed', 'Final-Recipient: rfc822;kim@example.org', 'Status: 5.0.0', 'Remote-MTA: dns; mx.example.org', 'Diagnostic-Code: smtp; 554 5.7.1 Message refused by policy'].join('\n'),
      'Mail delivery failed: returning message to sender',
    );
    expect(stages(raw)).toEqual([['kim@example.org', 'data']]);
  });

  it('Sendmail transcript: ">>> DATA" then "<<< 554" speaks for every recipient; ">>> RCPT To:<addr>" only for its own', () => {
    const atData = plain(
      'Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>',
      'Returned mail: see transcript for details',
      [
        'The original message was received at Mon, 4 Mar 2024 10:00:00 GMT',
        'from relay.rebound.example [192.0.2.1]',
        '',
        '   ----- The following addresses had permanent fatal errors -----',
        '<ann@example.org>',
        '    (reason: 554 5.7.1 Message content rejected)',
        '<bob@example.org>',
        '    (reason: 554 5.7.1 Message content rejected)',
        '',
        '   ----- Transcript of session follows -----',
        '... while talking to mx.example.org.:',
        '>>> DATA',
        '<<< 554 5.7.1 Message content rejected',
        '554 5.0.0 Service unavailable',
        '',
        '   ----- Original message follows -----',
      ].join('\n'),
    );
    expect(stages(atData)).toEqual([
      ['ann@example.org', 'data'],
      ['bob@example.org', 'data'],
    ]);
    const atRcpt = plain(
      'Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>',
      'Returned mail: see transcript for details',
      [
        '   ----- The following addresses had permanent fatal errors -----',
        '<cal@example.org>',
        '    (reason: 550 5.1.1 <cal@example.org>... User unknown)',
        '',
        '   ----- Transcript of session follows -----',
        '... while talking to mx.example.org.:',
        '>>> RCPT To:<cal@example.org>',
        '<<< 550 5.1.1 <cal@example.org>... User unknown',
        '550 5.1.1 <cal@example.org>... User unknown',
      ].join('\n'),
    );
    expect(stages(atRcpt)).toEqual([['cal@example.org', 'rcpt']]);
  });

  it('qmail: "does not like recipient." is RCPT, "failed after I sent the message." is DATA', () => {
    const raw = plain(
      'MAILER-DAEMON@mail.example.com',
      'failure notice',
      [
        'Hi. This is the qmail-send program at mail.example.com.',
        "I'm afraid I wasn't able to deliver your message to the following addresses.",
        "This is a permanent error; I've given up. Sorry it didn't work out.",
        '',
        '<dee@example.org>:',
        '192.0.2.44 does not like recipient.',
        'Remote host said: 550 5.1.1 No such user',
        'Giving up on 192.0.2.44.',
        '',
        '<eve@example.org>:',
        '192.0.2.45 failed after I sent the message.',
        'Remote host said: 554 5.7.1 Message refused',
        '',
        '--- Below this line is a copy of the message.',
      ].join('\n'),
    );
    expect(stages(raw)).toEqual([
      ['dee@example.org', 'rcpt'],
      ['eve@example.org', 'data'],
    ]);
  });

  it('no stage phrase: stage is null in the output and absent from the parsed recipient', () => {
    const raw = dsn('See below.', ['Final-Recipient: rfc822; f@example.org', 'Action: failed', 'Status: 5.1.1', 'Diagnostic-Code: smtp; 550 5.1.1 User unknown'].join('\n'));
    expect(stages(raw)).toEqual([['f@example.org', null]]);
    expect(parseReportSync(raw).recipients[0]).not.toHaveProperty('stage');
  });
});

describe('config/ndr-patterns.json `stage` and `warning` are checked at load', () => {
  const shipped = JSON.parse(readFileSync(new URL('../config/ndr-patterns.json', import.meta.url), 'utf8')) as Record<string, unknown>;

  it('a stage family without a source, or a pattern that names neither a stage nor a command, is refused', () => {
    const noSource = { ...shipped, stage: [{ markers: ['x'], patterns: ['x (?<command>DATA)'] }] };
    expect(() => compileReportPatterns(noSource)).toThrow(ReportPatternsError);
    const noCommand = { ...shipped, stage: [{ source: 'test', markers: ['after'], patterns: ['after DATA'] }] };
    expect(() => compileReportPatterns(noCommand)).toThrow(/stage\[0\]\.patterns\[0\]: needs a \(\?<command>\.\.\.\) group/);
    const noMarkers = { ...shipped, stage: [{ source: 'test', stage: 'data', patterns: ['after DATA'] }] };
    expect(() => compileReportPatterns(noMarkers)).toThrow(ReportPatternsError);
  });

  it('a warning family without a source is refused', () => {
    expect(() => compileReportPatterns({ ...shipped, warning: [{ subject: ['^Delayed'] }] })).toThrow(ReportPatternsError);
  });
});
