/**
 * Classifier micro-benchmark: how many replies per second `classifyReply` turns into a category,
 * on a mix of realistic replies (one-line, multi-line, DSN-style, text-only). A measurement, not a
 * test: it prints figures; nothing asserts on them.
 *
 *   npx tsx bench/classify.ts [--iterations N] [--time-limit SECONDS] [--json]
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { classifyReply, loadBounceRules, type ReplyInput } from '../src/bounces/classifier.js';

const HELP = `Usage: npx tsx bench/classify.ts [options]

Classifies a mix of about 50 realistic bounce replies repeatedly and prints classifications/s.

Options:
  --iterations N        classifications to run (default 1000000)
  --time-limit SECONDS  stop after this long even if N is not reached (default 20)
  --json                print one JSON object instead of text
  --help                show this help`;

/** What providers send, in roughly the proportions a relay sees: mostly unknown users and blocks. */
const REPLIES: ReadonlyArray<ReplyInput | string> = [
  '550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in local recipient table',
  '550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550-5.1.1 double-checking the recipient\'s email address for typos or\r\n550-5.1.1 unnecessary spaces. For more information, go to\r\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si2 - gsmtp',
  '550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [AM1EUR01FT005.eop-EUR01.prod.protection.outlook.com]',
  '550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [SN1NAM02FT0123.eop-nam02.prod.protection.outlook.com]',
  "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - mta1234.mail.ne1.yahoo.com",
  '550 Requested action not taken: mailbox unavailable',
  '550 5.1.1 User Unknown',
  '550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 [AbCdEfGhIjKl.uk123]',
  '550 sorry, no mailbox here by that name. (#5.1.1)',
  '550 5.7.1 No such user!',
  '550 Message was not accepted -- invalid mailbox.  Local mailbox someone@mail.ru is unavailable: user not found',
  '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
  '550-5.2.1 The email account that you tried to reach is disabled. Learn more at\r\n550 5.2.1  https://support.google.com/mail/?p=DisabledUser a1si2 - gsmtp',
  '554 delivery error: dd Sorry your message to someone@yahoo.com cannot be delivered. This mailbox is disabled (554.30). - mta1234.mail.bf1.yahoo.com',
  '552-5.2.2 The email account that you tried to reach is over quota. Please direct\r\n552-5.2.2 the recipient to\r\n552 5.2.2  https://support.google.com/mail/?p=OverQuotaPerm a1si2 - gsmtp',
  '452 4.2.2 Mailbox full',
  '552 5.2.2 Quota exceeded (mailbox for user is full)',
  '554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.10',
  "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
  '421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes',
  '550-5.7.1 [192.0.2.10] Our system has detected that this message is\r\n550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\r\n550-5.7.1 this message has been blocked. Please visit\r\n550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError a1si2 - gsmtp',
  '554 Service unavailable; Client host [192.0.2.10] blocked using Barracuda Reputation; http://www.barracudanetworks.com/reputation/?r=1&ip=192.0.2.10',
  '550 5.7.606 Access denied, banned sending IP [192.0.2.10]. To request removal from this list please visit https://sender.office.com/ and follow the directions.',
  '554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.10',
  '550-5.7.26 This mail has been blocked because the sender is unauthenticated.\r\n550-5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM.\r\n550 5.7.26  https://support.google.com/mail/answer/81126#authentication a1si2 - gsmtp',
  '550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification and has a DMARC policy of reject.',
  '450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.10]',
  '421 4.7.0 Try again later, closing connection',
  '421-4.7.0 Try again later, closing connection. (EHLO)\r\n421-4.7.0  For more information, go to\r\n421 4.7.0  https://support.google.com/a/answer/3221692 a1si2 - gsmtp',
  '450 4.2.0 <someone@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html',
  '451 4.7.1 Try again later',
  '452 4.5.3 Error: too many recipients',
  '452 Too many recipients received this hour',
  '554 5.7.1 <someone@example.org>: Relay access denied',
  '553 sorry, that domain isn\'t in my list of allowed rcpthosts (#5.7.1)',
  '450 4.1.8 <sender@nonexistent.example>: Sender address rejected: Domain not found',
  '553 5.1.8 <sender@example.com>... Domain of sender address sender@nonexistent.example does not exist',
  '450 4.1.2 <someone@nonexistent.example>: Recipient address rejected: Domain not found',
  '554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain',
  '552 5.3.4 Message size exceeds fixed limit',
  '554 5.7.0 Reject, id=12345-01 - INFECTED: Eicar-Signature',
  '550 5.7.1 Message rejected due to content restrictions',
  '554 5.4.14 Hop count exceeded - possible mail loop ATTR34',
  '550 Administrative prohibition',
  '554-web.de (mxweb112) Nemesis ESMTP Service not available\r\n554-No SMTP service\r\n554-Reject due to policy restrictions.\r\n554 For explanation visit https://postmaster.web.de/en/case?c=r0103',
  '554 Transaction failed',
  { enhancedCode: '5.1.1', text: 'smtp; 550 5.1.1 <someone@example.com>... User unknown' },
  { enhancedCode: '4.4.7', text: 'X-Postfix; delivery temporarily suspended: connect to mx.example.com[192.0.2.20]:25: Connection timed out' },
  { enhancedCode: '5.4.4', text: 'X-Postfix; Host or domain name not found. Name service error for name=example.invalid type=A: Host not found' },
  { text: "The recipient's mailbox is full and can't accept messages now." },
];

interface Options {
  iterations: number;
  timeLimitSeconds: number;
  json: boolean;
}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      iterations: { type: 'string', default: '1000000' },
      'time-limit': { type: 'string', default: '20' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return 'help';
  return {
    iterations: positiveInteger(values.iterations, '--iterations'),
    timeLimitSeconds: positiveInteger(values['time-limit'], '--time-limit'),
    json: values.json,
  };
}

function positiveInteger(value: string, name: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(value)}`);
  return parsed;
}

interface Measurement {
  classifications: number;
  seconds: number;
  /** Keeps the results alive so the work cannot be optimised away. */
  checksum: number;
}

/** Checks the clock every 1,000 classifications so timing costs nothing measurable. */
function measure(iterations: number, timeLimitSeconds: number): Measurement {
  const rules = loadBounceRules();
  const deadline = performance.now() + timeLimitSeconds * 1000;
  const count = REPLIES.length;
  let checksum = 0;
  let done = 0;
  const start = performance.now();
  while (done < iterations) {
    const batchEnd = Math.min(iterations, done + 1000);
    for (; done < batchEnd; done++) {
      checksum += classifyReply(REPLIES[done % count] ?? '', rules).category.length;
    }
    if (performance.now() > deadline) break;
  }
  return { classifications: done, seconds: (performance.now() - start) / 1000, checksum };
}

function main(): void {
  const options = parseOptions(process.argv.slice(2));
  if (options === 'help') {
    console.log(HELP);
    return;
  }
  const loadStart = performance.now();
  const rules = loadBounceRules();
  const loadMs = performance.now() - loadStart;
  measure(Math.min(20_000, options.iterations), options.timeLimitSeconds); // warm-up: let the JIT settle
  const result = measure(options.iterations, options.timeLimitSeconds);
  const report = {
    classificationsPerSecond: Math.round(result.classifications / result.seconds),
    nsPerClassification: Math.round((result.seconds * 1e9) / result.classifications),
    classifications: result.classifications,
    seconds: Number(result.seconds.toFixed(3)),
    distinctReplies: REPLIES.length,
    rules: rules.rules.length,
    rulesLoadMs: Number(loadMs.toFixed(2)),
    node: process.version,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus().length,
    checksum: result.checksum,
  };
  if (options.json) {
    console.log(JSON.stringify(report));
    return;
  }
  console.log(`classifier benchmark: ${report.classifications.toLocaleString('en')} classifications of ${report.distinctReplies} distinct replies in ${report.seconds} s`);
  console.log(`  ${report.classificationsPerSecond.toLocaleString('en')} classifications/s, ${report.nsPerClassification.toLocaleString('en')} ns per classification`);
  console.log(`  rules: ${report.rules} (loaded and compiled in ${report.rulesLoadMs} ms)`);
  console.log(`  node ${report.node}, ${report.cpuModel} (${report.cpuCount} cpus)`);
}

main();
