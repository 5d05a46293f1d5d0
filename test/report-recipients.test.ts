/**
 * Which address a report names for each recipient: the one we sent to (Original-Recipient, an
 * alias's "expanded from"), X.400 O/R names read as mail addresses, every address of a
 * multi-recipient plain-text NDR, and never an empty or invisible recipient. Every report is
 * written for the test from the format's published shape (RFC 3464, RFC 1685/2156, the MTA's
 * template), not copied from any corpus.
 */
import { describe, expect, it } from 'vitest';
import { parseReportSync, toParseOutput } from '../src/bounces/report/index.js';

function dsn(blocks: string): Buffer {
  return Buffer.from(
    `From: MAILER-DAEMON@mx.example.net\r\nTo: rb+x@bounces.rebound.example\r\nSubject: Delivery Status Notification (Failure)\r\n` +
      `MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n` +
      `--b\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n\r\n` +
      `--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n${blocks.replace(/\n/g, '\r\n')}\r\n` +
      `--b--\r\n`,
  );
}

function plain(from: string, subject: string, body: string): Buffer {
  return Buffer.from(`From: ${from}\r\nTo: rb+x@bounces.rebound.example\r\nSubject: ${subject}\r\n\r\n${body.replace(/\n/g, '\r\n')}\r\n`);
}

function recipients(raw: Buffer): Array<string | null> {
  return toParseOutput(parseReportSync(raw)).recipients.map((r) => r.recipient);
}

describe('recipients: the address we sent to', () => {
  it('prefers Original-Recipient (RFC 3464 §2.3.1) over Final-Recipient after forwarding', () => {
    const raw = dsn(
      [
        'Original-Recipient: rfc822;ann@old-domain.example',
        'Final-Recipient: rfc822;ann.smith@new-host.example',
        'Action: failed',
        'Status: 5.1.1',
      ].join('\n'),
    );
    expect(recipients(raw)).toEqual(['ann@old-domain.example']);
  });

  it('guard: keeps Final-Recipient when Original-Recipient is no mail address (an Exchange IMCEAEX name)', () => {
    const raw = dsn(
      [
        'Original-Recipient: rfc822;IMCEAEX-_O=EXAMPLE_OU=SITE_CN=RECIPIENTS_CN=ANN@corp.example',
        'Final-Recipient: rfc822;ann@corp.example',
        'Action: failed',
        'Status: 5.1.1',
      ].join('\n'),
    );
    expect(recipients(raw)).toEqual(['ann@corp.example']);
  });

  it('Postfix plain text: an alias or list member is named by the address we sent to ("expanded from")', () => {
    const raw = plain(
      'MAILER-DAEMON@mx.example.net (Mail Delivery System)',
      'Undelivered Mail Returned to Sender',
      [
        'This is the mail system at host mx.example.net.',
        '',
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        '',
        '                   The mail system',
        '',
        '<bob@example.org> (expanded from <team@example.org>): cannot access mailbox',
        '    /var/mail/bob for user bob. error writing message: Disk quota exceeded',
      ].join('\n'),
    );
    expect(recipients(raw)).toEqual(['team@example.org']);
  });
});

describe('recipients: X.400 O/R names (RFC 1685 text form, RFC 2156 escapes)', () => {
  it('reads Final-Recipient "x400; /RFC-822=user(a)domain/" as the mail address', () => {
    const raw = dsn(['Final-Recipient: x400; /RFC-822=ann.lee(a)example.org/', 'Action: failed', 'Status: 5.1.1'].join('\n'));
    expect(recipients(raw)).toEqual(['ann.lee@example.org']);
  });

  it('reads O/R names in an Exchange 2000/2003 plain-text NDR: RFC-822 attribute and a personal name', () => {
    const raw = plain(
      'postmaster@mail.example.com',
      'Undeliverable: hello',
      [
        'Your message',
        '',
        '  Subject: hello',
        '',
        'did not reach the following recipient(s):',
        '',
        '/RFC-822=ann(a)example.org/ on Mon, 4 Mar 2024 10:00:05 +0000',
        '    The recipient name is not recognized',
        '/DDA:RFC822=cy(u)ng(a)example.net/ on Mon, 4 Mar 2024 10:00:05 +0000',
        '    The recipient name is not recognized',
        '/G=bob/S=lee/OU=sales/O=example/C=org/ on Mon, 4 Mar 2024 10:00:05 +0000',
        '    The recipient name is not recognized',
      ].join('\n'),
    );
    expect(recipients(raw)).toEqual(['ann@example.org', 'cy_ng@example.net', 'bob.lee@sales.example.org']);
  });
});

describe('recipients: never an empty or invisible one', () => {
  it('a Final-Recipient of only invisible characters names nobody (null), never ""', () => {
    for (const value of ['rfc822;\u200b', 'rfc822; \ufeff', 'rfc822; +00']) {
      const raw = dsn([`Final-Recipient: ${value}`, 'Action: failed', 'Status: 5.1.1'].join('\n'));
      const found = recipients(raw);
      expect(found.every((r) => r === null || (r.trim() !== '' && !/[\u0000-\u001f\u200b\ufeff]/.test(r))), value).toBe(true);
    }
    const invisible = dsn(['Final-Recipient: rfc822;\u200b', 'Action: failed', 'Status: 5.1.1'].join('\n'));
    expect(recipients(invisible)).toEqual([null]);
  });
});

describe('recipients: every address of a multi-recipient plain-text NDR', () => {
  it('Domino: the addresses listed under "was not delivered to:" share the reason under "because:"', () => {
    const raw = plain(
      'Postmaster@domino.example.com',
      'DELIVERY FAILURE: User not listed in Domino Directory',
      [
        'Your message',
        '',
        '  Subject: hello',
        '',
        'was not delivered to:',
        '',
        '  ann@example.org',
        '  bob@example.org',
        '',
        'because:',
        '',
        '  User not listed in Domino Directory',
      ].join('\n'),
    );
    const output = toParseOutput(parseReportSync(raw));
    expect(output.recipients.map((r) => [r.recipient, r.category])).toEqual([
      ['ann@example.org', 'bad-mailbox'],
      ['bob@example.org', 'bad-mailbox'],
    ]);
    expect(parseReportSync(raw).format).toBe('domino');
  });

  it('a list of "Name (address)" lines (GroupWise-style) names every address', () => {
    const raw = plain(
      'postmaster@gw.example.com',
      'Undeliverable mail',
      [
        'The message that you sent was undeliverable to the following:',
        '\tAnn Lee (ann@example.org)',
        '\tBob Ng (bob@example.org)',
        '',
        'Possible causes: user does not exist',
      ].join('\n'),
    );
    expect(recipients(raw)).toEqual(['ann@example.org', 'bob@example.org']);
  });
});

describe('recipients: old and odd plain-text formats', () => {
  it('Exchange 5.5 / 2000 / 2003: every "address on <date>" line, the reason under it, an X.400 name with ";" separators', () => {
    const raw = plain(
      'System Administrator <postmaster@mail.example.net>',
      'Undeliverable: news',
      [
        'Your message',
        '',
        '  To:      Ann Lee; Bob Ng',
        '  Subject: news',
        '',
        'did not reach the following recipient(s):',
        '',
        'ann@example.org on Thu, 29 Apr 1999 16:51:51 -0500',
        '    The recipient name is not recognized',
        '    MSEXCH:IMS:Example:Site:MAIL 0 (000C05A6) Unknown Recipient',
        'c=US;a= ;p=Example;o=Gateway;dda:RFC-822=bob.ng(a)example.org; on 4/29/99 9:19:59 AM',
        '    The recipient name is not recognized',
      ].join('\n'),
    );
    const output = toParseOutput(parseReportSync(raw));
    expect(output.recipients.map((r) => [r.recipient, r.severity])).toEqual([
      ['ann@example.org', 'permanent'],
      ['bob.ng@example.org', 'permanent'],
    ]);
    // The "on <date>" of the recipient line is no part of the reason.
    expect(output.recipients[0]?.diagnosticCode).toMatch(/^The recipient name is not recognized/);
  });

  it('Exchange SMTP service: "The following recipient(s) could not be reached:" with two recipients', () => {
    const raw = plain(
      'postmaster@smtp.example.net',
      'Delivery Status Notification (Failure)',
      [
        'Your message did not reach some or all of the intended recipients.',
        '',
        '      Subject:\tnews',
        '',
        'The following recipient(s) could not be reached:',
        '',
        '      ann@example.org on 1/6/2003 10:02 AM',
        '            The e-mail account does not exist at the organization this message was sent to.',
        '            <smtp.example.net #5.1.1>',
        '',
        '      Bob Ng (bob@example.org) on 1/6/2003 10:02 AM',
        '            The recipient\'s mailbox is full and can\'t accept messages now.',
        '            <smtp.example.net #5.2.2>',
      ].join('\n'),
    );
    const output = toParseOutput(parseReportSync(raw));
    expect(output.recipients.map((r) => [r.recipient, r.status])).toEqual([
      ['ann@example.org', '5.1.1'],
      ['bob@example.org', '5.2.2'],
    ]);
    expect(parseReportSync(raw).format).toBe('exchange2003');
  });

  it('Sun / iPlanet Messaging Server: "Recipient address:" lines, never the original From or To quoted above them', () => {
    const raw = plain(
      'Internet Mail Delivery <postmaster@ms.example.net>',
      'Delivery Notification: Delivery has failed',
      [
        'This report relates to a message you sent with the following header fields:',
        '',
        '  From: News <news@shop.example>',
        '  To: team@example.org',
        '',
        'Your message cannot be delivered to the following recipients:',
        '',
        '  Recipient address: ann@example.org',
        '  Reason: Remote SMTP server has rejected address',
        '  Diagnostic code: smtp;550 5.1.1 <ann@example.org>... User unknown',
      ].join('\n'),
    );
    const output = toParseOutput(parseReportSync(raw));
    expect(output.recipients.map((r) => [r.recipient, r.status, r.diagnosticCode])).toEqual([
      ['ann@example.org', '5.1.1', '550 5.1.1 <ann@example.org>... User unknown'],
    ]);
  });

  it('Exim: an alias or pipe is named by the address we sent to ("(generated from addr)", "generated by addr"); one recipient\'s expiry is not the other\'s', () => {
    const raw = plain(
      'Mail Delivery System <Mailer-Daemon@exim.example.net>',
      'Mail delivery failed: returning message to sender',
      [
        'This message was created automatically by mail delivery software.',
        '',
        'A message that you sent could not be delivered to one or more of its',
        'recipients. This is a permanent error. The following address(es) failed:',
        '',
        '  an undisclosed address',
        '    (generated from ann@example.org)',
        '    mailbox is full: retry timeout exceeded',
        '',
        '  pipe to |/usr/local/bin/procmail',
        '    generated by bob@example.org',
        '    local delivery failed',
      ].join('\n'),
    );
    const output = toParseOutput(parseReportSync(raw));
    expect(output.recipients.map((r) => [r.recipient, r.severity])).toEqual([
      ['ann@example.org', 'temporary'],
      ['bob@example.org', 'permanent'],
    ]);
  });

  it('Sendmail: a list member "(expanded from: <list@x>)" is named by the list we sent to, also in the transcript', () => {
    const raw = plain(
      'Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>',
      'Returned mail: User unknown',
      [
        '   ----- The following addresses had permanent fatal errors -----',
        '<member@other.example>',
        '    (expanded from: <list@example.org>)',
        '<ann@example.org>',
        '    (reason: 550 5.1.1 User unknown)',
        '',
        '   ----- Transcript of session follows -----',
        '550 5.1.1 <member@other.example>... User unknown',
        '550 5.1.1 <ann@example.org>... User unknown',
      ].join('\n'),
    );
    const output = toParseOutput(parseReportSync(raw));
    expect(output.recipients.map((r) => [r.recipient, r.category])).toEqual([
      ['list@example.org', 'bad-mailbox'],
      ['ann@example.org', 'bad-mailbox'],
    ]);
  });

  it('older Sendmail: a transcript reply without angle brackets ("554 addr... Service unavailable")', () => {
    const raw = plain(
      'Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>',
      'Returned mail: Service unavailable',
      ['   ----- Transcript of session follows -----', '554 ann@example.org... Service unavailable', '550 bob@example.org... Host unknown'].join('\n'),
    );
    expect(recipients(raw)).toEqual(['ann@example.org', 'bob@example.org']);
  });

  it('a "simple" report in no known wording: an address next to "no such user", "does not exist", "mailbox full"', () => {
    const raw = plain(
      'MAILER-DAEMON@old.example.net',
      'Returned mail',
      [
        'The following message could not be delivered.',
        '',
        'No such user (ann@example.org)',
        'user bob@example.org does not exist',
        'Your mail to the user carl@example.org was not delivered: mailbox full.',
      ].join('\n'),
    );
    const output = toParseOutput(parseReportSync(raw));
    expect(output.recipients.map((r) => [r.recipient, r.category])).toEqual([
      ['ann@example.org', 'bad-mailbox'],
      ['bob@example.org', 'bad-mailbox'],
      ['carl@example.org', 'quota-issues'],
    ]);
  });
});

describe('recipients: never the sender or the mail system', () => {
  it('the original\'s sender (quoted From, a transcript\'s MAIL From refusal) and postmaster@ are never failed recipients', () => {
    const raw = plain(
      'Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>',
      'Returned mail: see transcript for details',
      [
        '   ----- Transcript of session follows -----',
        'While talking to mx.example.org:',
        '>>> MAIL From:<news@shop.example>',
        '<<< 501 <news@shop.example>... no access from mail server [192.0.2.55] which is an open relay',
        '554 <ann@example.org>... Remote protocol error',
        '',
        'Original sender: news@shop.example',
        'Please contact postmaster@mx.example.net for help.',
        '',
        '   ----- Original message follows -----',
        'From: News <news@shop.example>',
        'To: ann@example.org',
        'Subject: news',
      ].join('\n'),
    );
    const output = toParseOutput(parseReportSync(raw));
    expect(output.recipients.map((r) => r.recipient)).toEqual(['ann@example.org']);
    // The refusal of the sender is why the recipient after it failed.
    expect(output.recipients[0]?.diagnosticCode).toMatch(/open relay/);
  });

  it('the sender of an attached original (message/rfc822 From) is never taken from the text', () => {
    const raw = Buffer.from(
      [
        'From: MAILER-DAEMON@mx.example.net',
        'To: rb+x@bounces.rebound.example',
        'Subject: Returned mail: User unknown',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="b"',
        '',
        '--b',
        'Content-Type: text/plain',
        '',
        'Original sender: news@shop.example',
        'Unknown recipient: ann@example.org',
        '',
        '--b',
        'Content-Type: message/rfc822',
        '',
        'From: News <news@shop.example>',
        'To: ann@example.org',
        'Subject: news',
        '',
        'hello',
        '--b--',
        '',
      ].join('\r\n'),
    );
    expect(recipients(raw)).toEqual(['ann@example.org']);
  });

  it('guard: without the sender named anywhere, a transcript\'s recipient lines are all read', () => {
    const raw = plain(
      'Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>',
      'Returned mail: User unknown',
      ['   ----- Transcript of session follows -----', '550 <ann@example.org>... User unknown', '550 <bob@example.org>... User unknown'].join('\n'),
    );
    expect(recipients(raw)).toEqual(['ann@example.org', 'bob@example.org']);
  });
});

describe('recipients: lists on one line, and the subject as the last clue', () => {
  it('every address of a list on one line ("a, b" or "<a>; <b>"), each with the reason the list shares', () => {
    const raw = plain(
      'MAILER-DAEMON@mx.example.net',
      'Returned mail',
      ['Failed recipients: <ann@example.org>; <bob@example.org>, carl@example.net', 'Reason: 550 5.1.1 user unknown'].join('\n'),
    );
    const output = toParseOutput(parseReportSync(raw));
    expect(output.recipients.map((r) => [r.recipient, r.status])).toEqual([
      ['ann@example.org', '5.1.1'],
      ['bob@example.org', '5.1.1'],
      ['carl@example.net', '5.1.1'],
    ]);
    expect(output.recipients[1]?.diagnosticCode).not.toContain('@');
  });

  it('Exchange 5.5 naming the recipient by display name only: the To line it quotes from the original', () => {
    const raw = plain(
      'System Administrator <postmaster@mail.example.net>',
      'Undeliverable: news',
      [
        'Your message',
        '',
        '  To:      ann@example.org',
        '  Subject: news',
        '',
        'did not reach the following recipient(s):',
        '',
        'Ann Lee on 4/29/99 4:51:51 PM',
        '    The recipient name is not recognized',
      ].join('\n'),
    );
    expect(recipients(raw)).toEqual(['ann@example.org']);
  });

  it('a report whose text names nobody: the address in its bounce subject, never the sender\'s own', () => {
    const named = plain('Postmaster@notes.example.net', 'DELIVERY FAILURE: User ann (ann@example.org) not listed in Domino Directory', 'Your message could not be delivered.');
    expect(recipients(named)).toEqual(['ann@example.org']);
    const own = plain('Postmaster@notes.example.net', 'Undeliverable mail from Postmaster@notes.example.net', 'Your message could not be delivered.');
    expect(recipients(own)).toEqual([null]);
  });
});
