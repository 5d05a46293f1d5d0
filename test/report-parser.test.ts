import { readdirSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  compileReportPatterns,
  parseReport,
  parseReportSync,
  ReportPatternsError,
  toParseOutput,
  type ParsedReport,
} from '../src/bounces/report/index.js';
import { corpusExists, DEFAULT_CORPUS_DIR, percent, scoreCorpus, type CorpusScore } from '../bench/dsn-corpus.js';

const FIXTURES = new URL('../fixtures/dsn/', import.meta.url);
const fixtureNames = readdirSync(FIXTURES)
  .filter((name) => name.endsWith('.eml'))
  .sort();

function fixture(name: string): Buffer {
  return readFileSync(new URL(name, FIXTURES));
}

function expected(name: string): ParsedReport {
  return JSON.parse(readFileSync(new URL(name.replace(/\.eml$/, '.json'), FIXTURES), 'utf8')) as ParsedReport;
}

function dsn(blocks: string, extraHeaders = ''): Buffer {
  return Buffer.from(
    `From: MAILER-DAEMON@mx.example.net\r\nTo: rb+x@bounces.rebound.example\r\nSubject: Delivery Status Notification\r\n${extraHeaders}` +
      `MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n` +
      `--b\r\nContent-Type: text/plain\r\n\r\nSee the report.\r\n\r\n` +
      `--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n${blocks.replace(/\n/g, '\r\n')}\r\n` +
      `--b--\r\n`,
  );
}

/**
 * Fixtures whose .json is the right reading but which the parser gets wrong today (written for
 * issue 10, one per NDR family of config/ndr-patterns.json). `it.fails` keeps them run: when the
 * parser learns one, its test fails, and the name comes off this list.
 */
const KNOWN_FAILURES: Record<string, string> = {};

describe('fixtures/dsn: each report gives exactly the result written beside it', () => {
  it('every fixture has its expected .json', () => {
    expect(fixtureNames.length).toBeGreaterThanOrEqual(17);
    for (const name of fixtureNames) expect(() => expected(name), name).not.toThrow();
    for (const name of Object.keys(KNOWN_FAILURES)) expect(fixtureNames).toContain(name);
  });

  it.each(fixtureNames.filter((name) => !(name in KNOWN_FAILURES)))('%s', async (name) => {
    expect(await parseReport(fixture(name))).toEqual(expected(name));
  });

  it.fails.each(Object.keys(KNOWN_FAILURES))('%s (known failure, see KNOWN_FAILURES)', async (name) => {
    expect(await parseReport(fixture(name))).toEqual(expected(name));
  });

  it('has a fixture for every NDR family of config/ndr-patterns.json', () => {
    const families = (JSON.parse(readFileSync(new URL('../config/ndr-patterns.json', import.meta.url), 'utf8')) as { families: Array<{ id: string }> }).families.map((f) => f.id);
    const formats = new Set(fixtureNames.map((name) => expected(name).format));
    expect(families.filter((id) => !formats.has(id as ParsedReport['format']))).toEqual([]);
  });

  it('reads each MTA family, kind and format as documented', async () => {
    const seen: Record<string, string> = {};
    for (const name of fixtureNames.filter((name) => !(name in KNOWN_FAILURES))) {
      const report = await parseReport(fixture(name));
      seen[name] = `${report.kind}/${report.format}`;
    }
    expect(seen).toEqual({
      'aol-plain.eml': 'bounce/sendmail',
      'arf-complaint.eml': 'complaint/arf',
      'autoreply-out-of-office.eml': 'autoreply/autoreply',
      'broken-mime.eml': 'unknown/none',
      'compuserve-plain.eml': 'bounce/notes',
      'delivered-relayed.eml': 'delivered/rfc3464',
      'domino-two-recipients.eml': 'bounce/domino',
      'domino.eml': 'bounce/domino',
      'dragonfly-dma.eml': 'bounce/dragonfly',
      'empty.eml': 'unknown/none',
      'exchange-rfc3464.eml': 'bounce/rfc3464',
      'exchange-smtpsvc.eml': 'bounce/exchange2003',
      'exchange2000-x400.eml': 'bounce/exchange2003',
      'exchange2003.eml': 'bounce/exchange2003',
      'exchange2007-plain.eml': 'bounce/exchange2007',
      'exchange55-imc.eml': 'bounce/exchange2003',
      'exim-delay-warning.eml': 'delay/exim',
      'exim-plain.eml': 'bounce/exim',
      'exim-retry-time.eml': 'bounce/exim',
      'exim-rfc3464.eml': 'bounce/rfc3464',
      'fml-not-member.eml': 'bounce/fml',
      'gmail-plain.eml': 'bounce/gmail',
      'googlegroups.eml': 'bounce/googlegroups',
      'groupwise.eml': 'bounce/groupwise',
      'imail-smtp32.eml': 'bounce/sendmail',
      'imailserver.eml': 'bounce/imailserver',
      'iplanet-messaging-server.eml': 'bounce/messagingserver',
      'kddi.eml': 'bounce/kddi',
      'mailmarshal.eml': 'bounce/mailmarshal',
      'malformed-boundary.eml': 'bounce/rfc3464',
      'mfilter.eml': 'bounce/mfilter',
      'nested-forwarded-report.eml': 'bounce/rfc3464',
      'netscape-messaging-server.eml': 'bounce/messagingserver',
      'no-known-recipient.eml': 'bounce/rfc3464',
      'notes-plain.eml': 'bounce/notes',
      'opensmtpd-plain.eml': 'bounce/opensmtpd',
      'postfix-delayed.eml': 'delay/rfc3464',
      'postfix-old-program.eml': 'bounce/postfix',
      'postfix-plain.eml': 'bounce/postfix',
      'postfix-rfc3464.eml': 'bounce/rfc3464',
      'qmail-keep-trying.eml': 'delay/qmail',
      'qmail-plain.eml': 'bounce/qmail',
      'qmail-queue-too-long.eml': 'bounce/qmail',
      'rfc6533-global.eml': 'bounce/rfc6533',
      'sendmail-old-transcript.eml': 'bounce/sendmail',
      'sendmail-plain.eml': 'bounce/sendmail',
      'sendmail-two-recipients.eml': 'bounce/sendmail',
      'sendmail-warning.eml': 'delay/sendmail',
      'simple-delay-warning.eml': 'delay/generic',
      'simple-mailbox-full.eml': 'bounce/generic',
      'simple-no-such-user.eml': 'bounce/generic',
      'simple-user-list.eml': 'bounce/sendmail',
      'smtpsvc-dsn-text.eml': 'bounce/gmail',
      'thousand-recipients.eml': 'bounce/rfc3464',
      'trendmicro-imss.eml': 'bounce/trendmicro',
      'verizon-vtext.eml': 'bounce/verizon',
      'x6.eml': 'bounce/x6',
      'yahoo-old.eml': 'bounce/qmail',
      'zoho.eml': 'bounce/zoho',
    });
  });

  it('keeps the 1,000 recipients of one report, in order', async () => {
    const report = await parseReport(fixture('thousand-recipients.eml'));
    expect(report.recipients).toHaveLength(1000);
    expect(report.recipients[0]?.recipient).toBe('member0001@lists.example.org');
    expect(report.recipients[999]?.recipient).toBe('member1000@lists.example.org');
  });

  it('ties the report to the original: Message-ID and campaign header', async () => {
    const report = await parseReport(fixture('postfix-rfc3464.eml'));
    expect(report.original).toEqual({
      messageId: 'spring-2024.8812@shop.example',
      campaignId: 'spring-sale-2024',
      returnPath: 'rb+2kq-1bz9-k3jf8x2mq9w7a@bounces.rebound.example',
      to: 'ana.lopez@example.net',
    });
    const custom = await parseReport(fixture('postfix-rfc3464.eml'), { campaignHeader: 'Subject' });
    expect(custom.original.campaignId).toBe('Spring sale');
  });
});

describe('plain-text NDRs: a reason ends where the next part of the report begins', () => {
  const ndr = (body: string): Buffer =>
    Buffer.from(`From: MAILER-DAEMON@mx.example.net\nTo: rb+x@bounces.rebound.example\nSubject: Undeliverable mail\n\n${body}`);

  it('a returned header written without a space after its colon ("Received:from") starts the original', async () => {
    const report = await parseReport(
      ndr('Your message could not be delivered.\n\nana@example.net Invalid Address, 550 5.1.1 User unknown\nReceived:from relay.rebound.example by mx.example.net\nReturn-Path:<rb+x@bounces.rebound.example>\n'),
    );
    expect(report.recipients[0]).toMatchObject({ recipient: 'ana@example.net', diagnosticCode: 'Invalid Address, 550 5.1.1 User unknown' });
  });

  it('a transcript reply under the recipient is its reason; the paragraph after it is not', async () => {
    const report = await parseReport(
      ndr('Sent <<< RCPT TO:<ana@example.net>\nReceived >>> 550 5.1.1 <ana@example.net>... User unknown\n\nThe remote server refused the message.\n'),
    );
    expect(report.recipients[0]?.diagnosticCode).toBe('550 5.1.1 <ana@example.net>... User unknown');
  });
});

describe('the public `rebound parse` shape', () => {
  it('has kind and recipients with exactly nine fields each, in this order', async () => {
    const output = toParseOutput(await parseReport(fixture('postfix-rfc3464.eml')));
    expect(Object.keys(output)).toEqual(['kind', 'recipients']);
    expect(Object.keys(output.recipients[0] ?? {})).toEqual([
      'recipient',
      'action',
      'status',
      'diagnosticCode',
      'remoteMta',
      'severity',
      'type',
      'category',
      'stage',
    ]);
    expect(output.recipients[1]).toEqual({
      recipient: 'B.Ng@example.net', // Original-Recipient: the address as we sent it
      action: 'failed',
      status: '5.2.2',
      diagnosticCode: 'smtp; 552 5.2.2 <b.ng@example.net>: Mailbox full',
      remoteMta: 'mail.example.net',
      severity: 'permanent',
      type: 'soft',
      category: 'quota-issues',
      stage: 'rcpt',
    });
  });

  it('puts "file" first when given (JSON Lines for several files)', async () => {
    const output = toParseOutput(await parseReport(fixture('qmail-plain.eml')), 'qmail-plain.eml');
    expect(Object.keys(output)).toEqual(['file', 'kind', 'recipients']);
    expect(JSON.stringify(output)).not.toContain('\n');
  });
});

describe('kinds: what is a bounce and what is not', () => {
  it('Action: failed makes a bounce even when other recipients are only delayed', async () => {
    const report = await parseReport(
      dsn(
        'Final-Recipient: rfc822; a@example.com\nAction: delayed\nStatus: 4.4.1\n\n' +
          'Final-Recipient: rfc822; b@example.com\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\n',
      ),
    );
    expect(report.kind).toBe('bounce');
    expect(report.recipients.map((r) => [r.recipient, r.action, r.severity])).toEqual([
      ['a@example.com', 'delayed', 'temporary'],
      ['b@example.com', 'failed', 'permanent'],
    ]);
  });

  it('delivered, relayed and expanded are not failures: no severity, no category', async () => {
    const report = await parseReport(
      dsn('Final-Recipient: rfc822; a@example.com\nAction: delivered\nStatus: 2.0.0\n\nFinal-Recipient: rfc822; b@example.com\nAction: relayed\nStatus: 2.0.0\n'),
    );
    expect(report.kind).toBe('delivered');
    expect(report.recipients.every((r) => r.severity === null && r.category === null && r.type === null)).toBe(true);
  });

  it('a missing Action is read from the Status class (RFC 3464 §2.3.3 makes it required)', async () => {
    const report = await parseReport(dsn('Final-Recipient: rfc822; a@example.com\nStatus: 4.2.2\n'));
    expect(report.recipients[0]?.action).toBe('delayed');
    expect(report.kind).toBe('delay');
  });

  it("the Status field decides severity when the quoted reply's code says otherwise", async () => {
    const report = await parseReport(
      dsn('Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 4.4.7\nDiagnostic-Code: smtp; 554 4.4.7 Message expired: unable to deliver in 840 minutes\n'),
    );
    expect(report.recipients[0]).toMatchObject({ severity: 'temporary', category: 'message-expired' });
  });

  it('a failure that states no status at all is permanent: the MTA gave up', async () => {
    const report = await parseReport(dsn('Final-Recipient: rfc822; a@example.com\nAction: failed\n'));
    expect(report.recipients[0]).toMatchObject({ status: null, severity: 'permanent' });
  });

  it('reads recipient blocks that forget the blank line between them', async () => {
    const report = await parseReport(
      dsn(
        'Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.1.1\n' +
          'Final-Recipient: rfc822; b@example.com\nAction: failed\nStatus: 5.2.2\n',
      ),
    );
    expect(report.recipients.map((r) => [r.recipient, r.status])).toEqual([
      ['a@example.com', '5.1.1'],
      ['b@example.com', '5.2.2'],
    ]);
  });

  it('an Exim bounce says Auto-Submitted: auto-replied and is still a bounce, not an auto-reply', async () => {
    const report = await parseReport(fixture('exim-plain.eml'));
    expect(report.kind).toBe('bounce');
  });

  it('an ordinary message is unknown, with no recipients', async () => {
    const report = await parseReport(
      Buffer.from('From: Ana <ana@example.net>\nTo: bob@example.org\nSubject: Lunch?\n\nAre you free at noon? Write to ana@example.net.\n'),
    );
    expect(report).toMatchObject({ kind: 'unknown', recipients: [] });
  });

  it('a complaint names the complaining recipient and its feedback type', async () => {
    const report = await parseReport(fixture('arf-complaint.eml'));
    expect(report.feedbackType).toBe('abuse');
    expect(report.recipients.map((r) => r.recipient)).toEqual(['carla.mendes@mailbox.example']);
  });
});

describe('robustness: any input gives a result, never an exception, in bounded time', () => {
  it('a 0-byte input is unknown with an error', async () => {
    await expect(parseReport(Buffer.alloc(0))).resolves.toMatchObject({ kind: 'unknown', recipients: [], error: 'empty message' });
  });

  it('every prefix of every fixture parses without throwing', () => {
    for (const name of fixtureNames.filter((n) => !n.startsWith('thousand'))) {
      const raw = fixture(name);
      for (let cut = 0; cut < raw.length; cut += 37) {
        const report = parseReportSync(raw.subarray(0, cut));
        expect(['bounce', 'delay', 'complaint', 'autoreply', 'delivered', 'unknown']).toContain(report.kind);
      }
    }
  });

  it('random bytes parse without throwing', () => {
    let seed = 20240304;
    const next = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 200; i += 1) {
      const bytes = Buffer.alloc(next() % 4096);
      for (let j = 0; j < bytes.length; j += 1) bytes[j] = next() & 0xff;
      expect(() => parseReportSync(bytes)).not.toThrow();
    }
  });

  const head = 'From: MAILER-DAEMON@example.org\nSubject: Undelivered Mail Returned to Sender\nTo: a@example.com\n\n';
  const hostile: Record<string, () => Buffer> = {
    'long lines of spaces': () => Buffer.from(head + `${' '.repeat(1000)}\n`.repeat(4000)),
    'long address-like lines': () => Buffer.from(head + `  a@${'b.'.repeat(490)} x\n`.repeat(4000)),
    'unclosed HTML tags': () => Buffer.from(`Content-Type: text/html\n\n${'<script'.repeat(500_000)}`),
    '100,000 parts': () =>
      Buffer.from(
        'Content-Type: multipart/report; report-type=delivery-status; boundary="x"\n\n' +
          '--x\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b.example\nAction: failed\n\n'.repeat(100_000),
      ),
    'nesting 2,000 deep': () =>
      Buffer.from(
        'Content-Type: multipart/mixed; boundary="b0"\n\n' +
          Array.from({ length: 2000 }, (_, i) => `--b${i}\nContent-Type: multipart/mixed; boundary="b${i + 1}"\n\n`).join(''),
      ),
    '5 million newlines': () => Buffer.from(head + '\n'.repeat(5_000_000)),
    'long lines of prose without a recipient': () => Buffer.from(head + `${'the following these '.repeat(50)}\n`.repeat(4000)),
    // One 1 MB line each: failure phrases next to "@", "message to" runs, X.400 attributes, address-like runs.
    '1 MB line of failure phrases and @': () => Buffer.from(head + 'no such user a@'.repeat(70_000)),
    '1 MB line of "message to"': () => Buffer.from(head + 'message to the user '.repeat(52_000)),
    '1 MB line of X.400 attributes': () => Buffer.from(head + 'c=US;a= ;p=x;dda:RFC-822=a(a)b;'.repeat(32_000)),
    '1 MB line of address-like runs': () => Buffer.from(head + `${'a'.repeat(999)}@`.repeat(1_050)),
    // Many long lines each: an address with a long dotted domain (a list test), a long quoted To line, an alias line.
    'lines of long dotted addresses': () => Buffer.from(head + `${'a'.repeat(900)}@${'b.'.repeat(40)}\n`.repeat(4000)),
    'lines of long quoted To fields': () => Buffer.from(head + `To: ${'a'.repeat(990)}@\n`.repeat(4000)),
    'lines of long lists': () => Buffer.from(head + `${'a@b.cc, '.repeat(124)}\n`.repeat(4000)),
  };

  it.each(Object.keys(hostile))('%s: under 2 seconds', (name) => {
    const raw = hostile[name]?.() ?? Buffer.alloc(0);
    const started = performance.now();
    const report = parseReportSync(raw);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(report.recipients.length).toBeLessThanOrEqual(10_000);
  });
});

describe('config/ndr-patterns.json is checked at load', () => {
  const valid = JSON.parse(readFileSync(new URL('../config/ndr-patterns.json', import.meta.url), 'utf8')) as Record<string, unknown>;

  it('the shipped file compiles', () => {
    expect(() => compileReportPatterns(valid)).not.toThrow();
  });

  it('a broken pattern is refused with the family and the field named', () => {
    const families = structuredClone(valid.families) as Array<Record<string, unknown>>;
    const qmail = families.findIndex((family) => family.id === 'qmail');
    families[qmail] = { ...families[qmail], recipient: ['^(?<rcpt>unclosed'] };
    expect(() => compileReportPatterns({ ...valid, families }, 'test.json')).toThrow(ReportPatternsError);
    expect(() => compileReportPatterns({ ...valid, families }, 'test.json')).toThrow(
      new RegExp(`families\\[${qmail}\\] \\(qmail\\)\\.recipient\\[0\\]: not a valid regular expression`),
    );
  });

  it('a recipient pattern without its rcpt group, an unknown key and a family without "why" are refused', () => {
    const families = structuredClone(valid.families) as Array<Record<string, unknown>>;
    families[0] = { ...families[0], colour: 'blue' };
    delete families[2]?.why;
    families[3] = { ...families[3], recipient: ['^(.+@.+)$'] };
    let message = '';
    try {
      compileReportPatterns({ ...valid, families }, 'test.json');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/families\[0\]: unknown key\(s\) "colour"/);
    expect(message).toMatch(/families\[2\]: why/);
    expect(message).toMatch(/families\[3\] \([a-z0-9-]+\)\.recipient\[0\]: needs a \(\?<rcpt>\.\.\.\) group/);
  });
});

// The labelled corpus lives next to the project and is never copied into it; without it these
// tests are skipped.
describe.skipIf(!corpusExists())(`DSN corpus (${DEFAULT_CORPUS_DIR})`, () => {
  let score: CorpusScore;
  beforeAll(async () => {
    score = await scoreCorpus();
  }, 60_000);

  it('parses every file without error', () => {
    expect(score.parsed).toBe(score.files);
  });

  it('finds at least 98% of the expected recipients', () => {
    expect(percent(score.foundRecipients, score.expectedRecipients)).toBeGreaterThanOrEqual(98);
  });

  it('agrees on severity (from the Status class) for at least 97% of them', () => {
    expect(percent(score.severityAgree, score.expectedRecipients)).toBeGreaterThanOrEqual(97);
  });

  it('never calls a recipient of a message that is not a bounce a hard bounce', () => {
    expect(score.hardOnNotBounce).toEqual([]);
  });

  // The category comes from the classifier (config/bounce-rules.json, not this parser); the
  // remaining disagreements with the corpus labels are listed in docs/bounce-classification.md.
  it('agrees on category for at least 92% of them', () => {
    expect(percent(score.categoryAgree, score.expectedRecipients)).toBeGreaterThanOrEqual(92);
  });
});
