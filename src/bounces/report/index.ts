/**
 * The report parser: the bytes of a message that came back to the return-path domain in, one
 * structured result out. Pure (no I/O besides reading the pattern and rule files once) and total:
 * any input, even garbage, gives a result; it never throws.
 *
 * Readers are tried in order, as Sisimai does, the generic standard first:
 *   1. RFC 5965 ARF (message/feedback-report) → complaint
 *   2. RFC 3464 / RFC 6533 delivery-status part (also inside a nested message) → per recipient
 *   3. Amazon SES JSON notification
 *   4. delivery-status fields written into a text part (MTAs that forget the MIME structure)
 *   5. a complaint in a provider's own format (no ARF part)
 *   6. the plain-text NDR families of config/ndr-patterns.json, when their signature matches
 *   7. RFC 3834 auto-replies
 *   8. a generic plain-text reader for bounces in no known wording
 */
import { defaultBounceRules, remoteHostName, type BounceRules } from '../classifier.js';
import { readSesNotification } from './amazon-ses.js';
import { cleanAddress, isAddress, isEncapsulated } from './fields.js';
import {
  decodeCharset,
  decodeTransfer,
  first,
  headerText,
  parseEntity,
  readableText,
  toBinaryText,
  walk,
  walkOwn,
  type Entity,
} from './mime.js';
import {
  addressesOf,
  DEFAULT_CAMPAIGN_HEADER,
  emptyOriginal,
  findReturnedMessage,
  messageIdOf,
  originalFromHeaders,
  originalFromText,
} from './original.js';
import { defaultReportPatterns, type ReportPatterns } from './patterns.js';
import {
  anyLine,
  fillFromReason,
  linesOf,
  matchFamily,
  readWithFamily,
  remoteHost,
  sectionReason,
  sectionStage,
  unquoteForwarded,
  type PlainTextInput,
  type PlainTextResult,
} from './plain-text.js';
import { classifyRecipient, kindOfRecipients, type RecipientFacts } from './recipient.js';
import { emptyFacts, readDeliveryStatus } from './rfc3464.js';
import { findStage, mentionsStage } from './stage.js';
import type { SmtpStage } from '../classifier.js';
import { isAutoReply } from './rfc3834.js';
import { readFeedbackReport } from './rfc5965.js';
import type { ParsedReport, ParseOptions, ParseOutput, ReportKind, ReportRecipient, ReturnedMessage } from './types.js';

export type {
  ParsedReport,
  ParseOptions,
  ParseOutput,
  ParseOutputRecipient,
  ReportAction,
  ReportFormat,
  ReportKind,
  ReportRecipient,
  ReturnedMessage,
} from './types.js';
export { compileReportPatterns, defaultReportPatterns, loadReportPatterns, ReportPatternsError } from './patterns.js';
export type { ReportPatterns } from './patterns.js';

export interface ParseReportOptions extends ParseOptions {
  /** Classifier rules; default config/bounce-rules.json. */
  rules?: BounceRules;
  /** Report patterns; default config/ndr-patterns.json. */
  patterns?: ReportPatterns;
}

/** Parses one report. Async for the callers' convenience (the work itself is synchronous). */
export async function parseReport(raw: Buffer, options: ParseReportOptions = {}): Promise<ParsedReport> {
  return parseReportSync(raw, options);
}

/**
 * Never throws because of the input. The pattern and rule files are read (and checked) on first
 * use, outside the guard: a broken configuration is the operator's to fix and must not turn every
 * report into `unknown` quietly.
 */
export function parseReportSync(raw: Buffer, options: ParseReportOptions = {}): ParsedReport {
  const resolved: Required<Pick<ParseReportOptions, 'rules' | 'patterns'>> & ParseReportOptions = {
    ...options,
    rules: options.rules ?? defaultBounceRules(),
    patterns: options.patterns ?? defaultReportPatterns(),
  };
  try {
    return new ReportReader(raw, resolved).read();
  } catch (error) {
    return unknownReport(`cannot read the message: ${(error as Error).message}`);
  }
}

/**
 * The public shape `rebound parse` prints for one message (docs/report-parser.md): `kind` and the
 * recipients in the order the report gives them. With `file`, the object starts with it (JSON
 * Lines output for several files).
 */
export function toParseOutput(report: ParsedReport, file?: string): ParseOutput & { file?: string } {
  const output: ParseOutput = {
    kind: report.kind,
    recipients: report.recipients.map((r) => ({
      recipient: r.recipient,
      action: r.action,
      status: r.status,
      diagnosticCode: r.diagnosticCode,
      remoteMta: r.remoteMta,
      severity: r.severity,
      type: r.type,
      category: r.category,
      stage: r.stage ?? null,
    })),
  };
  return file === undefined ? output : { file, ...output };
}

function unknownReport(error?: string): ParsedReport {
  const report: ParsedReport = { kind: 'unknown', format: 'none', recipients: [], original: emptyOriginal() };
  if (error !== undefined) report.error = error;
  return report;
}

/** The human-readable text of a report is read up to this length. */
const MAX_REPORT_TEXT = 1024 * 1024;
const FEEDBACK_TYPES = new Set(['message/feedback-report']);
const DSN_TYPES = new Set(['message/delivery-status', 'message/global-delivery-status']);
const EMBEDDED_DSN = /^(?:Final-Recipient|Original-Recipient)[ \t]*:/im;
const EMBEDDED_DSN_FIELD = /^(?:Action|Status)[ \t]*:/im;
/** A "To:" line quoted in a report's text, and how far down it is looked for. */
const QUOTED_TO = /^\s*To:\s*(.*@.*)$/i;
const QUOTED_TO_LINES = 400;
const QUOTED_TO_CHARS = 300;
/** A mail address in a subject line. */
const SUBJECT_ADDRESS = /[^\s<>"'(),;:@[\]]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+/g;
/** Mailboxes of the mail system itself, never a failed recipient named in a subject. */
const SYSTEM_MAILBOX = /^(?:postmaster|post_master|mailer-daemon|mailer_daemon|mail-daemon|maildaemon)@/i;
const EMBEDDED_DSN_START = /^(?:Reporting-MTA|Original-Recipient|Final-Recipient)[ \t]*:/im;

class ReportReader {
  private readonly root: Entity;
  private readonly campaignHeader: string;
  private readonly rules: BounceRules;
  private readonly patterns: ReportPatterns;
  private readonly from: string;
  private readonly subject: string;
  private text: string | undefined;
  private plainInput: PlainTextInput | undefined;
  private readonly empty: boolean;

  constructor(raw: Buffer, options: ParseReportOptions & Required<Pick<ParseReportOptions, 'rules' | 'patterns'>>) {
    const binary = toBinaryText(raw);
    this.empty = binary.trim() === '';
    this.root = parseEntity(binary);
    this.campaignHeader = options.campaignHeader ?? DEFAULT_CAMPAIGN_HEADER;
    this.rules = options.rules;
    this.patterns = options.patterns;
    // Signatures read the start of From and Subject; a giant header cannot make them slow.
    this.from = headerText(first(this.root.headers, 'from')).slice(0, 1000);
    this.subject = headerText(first(this.root.headers, 'subject')).slice(0, 1000);
  }

  read(): ParsedReport {
    if (this.empty) return unknownReport('empty message');
    return (
      this.readFeedbackReport() ??
      this.readDeliveryStatus() ??
      this.readSesNotification() ??
      this.readEmbeddedDeliveryStatus() ??
      this.readProviderComplaint() ??
      this.readPlainText() ??
      unknownReport()
    );
  }

  private readFeedbackReport(): ParsedReport | null {
    const part = findEntity(this.root, FEEDBACK_TYPES);
    if (part === null) return null;
    const report = readFeedbackReport(decodeCharset(decodeTransfer(part.headers, part.body), 'utf-8'));
    const original = this.returnedMessage(this.root);
    const addresses = report.recipients.length > 0 ? report.recipients : [original.to];
    // A complaint about a recipient the report does not name (To: <Undisclosed Recipients>) is
    // still a complaint; its row has no address.
    const result = this.finish('complaint', 'arf', addresses.map(complainant), original);
    if (report.feedbackType !== null) result.feedbackType = report.feedbackType;
    return result;
  }

  private readDeliveryStatus(): ParsedReport | null {
    const part = findEntity(this.root, DSN_TYPES);
    if (part === null) return null;
    const global = part.type === 'message/global-delivery-status';
    const facts = readDeliveryStatus(decodeCharset(decodeTransfer(part.headers, part.body), 'utf-8'));
    if (facts.length === 0) return null;
    const container = this.reportContaining(part);
    this.completeFromText(facts, container);
    preferOriginalRecipient(facts);
    return this.finish(null, global ? 'rfc6533' : 'rfc3464', facts, this.returnedMessage(container));
  }

  private readSesNotification(): ParsedReport | null {
    const text = this.reportText();
    if (!text.includes('"notificationType"')) return null;
    const notification = readSesNotification(text);
    if (notification === null) return null;
    const original = emptyOriginal();
    original.messageId = notification.messageId;
    const kind: ReportKind = notification.kind === 'bounce' ? (kindOfRecipients(notification.recipients) ?? 'bounce') : notification.kind;
    const result = this.finish(kind, 'amazonses', notification.recipients, original);
    if (notification.feedbackType !== null) result.feedbackType = notification.feedbackType;
    return result;
  }

  /** Some MTAs (and forwarded reports) write the delivery-status fields into the text itself. */
  private readEmbeddedDeliveryStatus(): ParsedReport | null {
    const text = this.reportText();
    if (!EMBEDDED_DSN.test(text) || !EMBEDDED_DSN_FIELD.test(text)) return null;
    const start = EMBEDDED_DSN_START.exec(text)?.index ?? 0;
    const lines = text.slice(start).split('\n', 50_000);
    const end = lines.findIndex((line) => this.patterns.original.test(line.length > 1000 ? line.slice(0, 1000) : line));
    const facts = readDeliveryStatus((end === -1 ? lines : lines.slice(0, end)).join('\n'));
    if (facts.length === 0 || facts.every((f) => f.recipient === null && f.action === null)) return null;
    this.completeFromText(facts, this.root);
    preferOriginalRecipient(facts);
    return this.finish(null, 'rfc3464', facts, this.returnedMessage(this.root));
  }

  private readProviderComplaint(): ParsedReport | null {
    const unsubscribe = this.patterns.complaint.unsubscribe.some(([name, pattern]) =>
      (this.root.headers.get(name) ?? []).some((value) => pattern.test(value)),
    );
    if (unsubscribe) {
      const address = cleanAddress(this.from);
      const result = this.finish('complaint', 'unsubscribe', [complainant(isAddress(address) ? address : null)], emptyOriginal());
      result.feedbackType = 'opt-out';
      return result;
    }
    if (!this.patterns.complaint.subject.test(this.subject)) return null;
    const returned = findReturnedMessage(this.root);
    const addresses: string[] = [];
    for (const headers of [returned?.headers, this.root.headers]) {
      if (headers === undefined) continue;
      for (const name of this.patterns.complaint.recipientHeaders) {
        for (const address of addressesOf(first(headers, name))) if (!addresses.includes(address)) addresses.push(address);
      }
      if (addresses.length > 0) break;
    }
    if (addresses.length === 0) return null;
    return this.finish('complaint', 'complaint', addresses.map(complainant), this.returnedMessage(this.root));
  }

  private readPlainText(): ParsedReport | null {
    const input = this.plainTextInput();
    const families = matchFamily(input, this.patterns);
    let fallback: PlainTextResult | null = null;
    for (const family of families) {
      const result = readWithFamily(input, family, this.patterns);
      if (result.recipients.length > 0) return this.finishPlainText(result);
      fallback ??= result;
    }
    if (fallback === null && isAutoReply(this.root.headers, this.from, this.subject, this.patterns)) {
      const address = cleanAddress(this.from);
      const recipients = isAddress(address) ? [complainant(address)] : [];
      return this.finish('autoreply', 'autoreply', recipients, this.returnedMessage(this.root));
    }
    if (fallback === null && !this.looksLikeBounce()) return null;
    const generic = readWithFamily(input, null, this.patterns);
    if (generic.recipients.length > 0) {
      return this.finishPlainText({ ...generic, family: fallback?.family ?? 'generic' });
    }
    return this.finishPlainText(this.recipientsFromElsewhere(fallback ?? generic));
  }

  /**
   * A bounce whose text names nobody in a way we can read: the recipients come from
   * X-Failed-Recipients (Exim, Google), else from the returned message's To.
   */
  private recipientsFromElsewhere(result: PlainTextResult): PlainTextResult {
    const section = result.section;
    let addresses = addressesOf(first(this.root.headers, 'x-failed-recipients'));
    // Some NDRs name the failed address only in their subject ("DELIVERY FAILURE: User ann
    // (ann@example.org) not listed", "Undeliverable mail: ann@example.org").
    if (addresses.length === 0) addresses = this.addressesInSubject();
    if (addresses.length === 0) {
      const returned = this.returnedMessage(this.root, result.originalText);
      if (returned.to !== null) addresses = [returned.to];
    }
    // Last: the original's To as the report quotes it in its text ("Your message\n  To: ann@x").
    if (addresses.length === 0) addresses = this.quotedTo();
    const reason = sectionReason(section, this.patterns);
    const sectionLines = linesOf(section);
    const temporary = result.temporary;
    const transient = anyLine(this.patterns.transient, sectionLines);
    const recipients = (addresses.length > 0 ? addresses : [null]).map((address) => {
      const facts = emptyFacts();
      facts.recipient = address;
      facts.action = temporary ? 'delayed' : 'failed';
      facts.transient = transient;
      facts.impliedStatus = result.impliedStatus;
      facts.stage = result.stage;
      fillFromReason(facts, reason, this.patterns);
      return facts;
    });
    return { ...result, recipients };
  }

  /** The first address of a "To:" line the report's text quotes from the original, never our return path or its sender. */
  private quotedTo(): string[] {
    const input = this.plainTextInput();
    const lines = input.lines;
    const end = Math.min(lines.length, QUOTED_TO_LINES);
    for (let i = 0; i < end; i += 1) {
      const line = lines[i] ?? '';
      // A quoted header line is short; a long one is no header (and would cost the address search).
      if (line.length > QUOTED_TO_CHARS) continue;
      const value = QUOTED_TO.exec(line)?.[1];
      if (value === undefined) continue;
      const address = addressesOf(value).find((a) => !input.excluded.has(a.toLowerCase()) && !(input.senders?.has(a.toLowerCase()) ?? false));
      if (address !== undefined) return [address];
    }
    return [];
  }

  /** Addresses in the subject of a bounce, never our return path, the report's sender or a mail system mailbox. */
  private addressesInSubject(): string[] {
    if (!this.subject.includes('@') || !this.patterns.bounce.subject.test(this.subject)) return [];
    const excluded = this.plainTextInput().excluded;
    const sender = cleanAddress(this.from)?.toLowerCase();
    const found: string[] = [];
    for (const match of this.subject.match(SUBJECT_ADDRESS) ?? []) {
      const address = cleanAddress(match);
      if (!isAddress(address) || SYSTEM_MAILBOX.test(address)) continue;
      const key = address.toLowerCase();
      if (!excluded.has(key) && key !== sender) found.push(address);
    }
    return found.slice(0, 1);
  }

  private finishPlainText(result: PlainTextResult): ParsedReport {
    return this.finish(null, result.family, result.recipients, this.returnedMessage(this.root, result.originalText));
  }

  private looksLikeBounce(): boolean {
    const signs = this.patterns.bounce;
    const lines = this.plainTextInput().lines;
    return (
      signs.from.test(this.from) ||
      signs.subject.test(this.subject) ||
      anyLine(signs.body, lines, 400) ||
      // A delay notice is a report too, whoever sends it (Exchange Online's "Delivery delayed:").
      this.patterns.warning.subject.test(this.subject) ||
      anyLine(this.patterns.warning.body, lines, 400)
    );
  }

  /**
   * What the delivery-status part leaves out, the human-readable part often says: a recipient
   * without an address or a diagnostic gets them from the text (matched by address, or by
   * position when both name the same number of recipients).
   */
  private completeFromText(facts: RecipientFacts[], container: Entity): void {
    const missingAddress = facts.some((f) => f.recipient === null);
    const missingReason = facts.some((f) => f.diagnosticCode === null);
    for (const f of facts) if (f.stage === undefined) f.stage = findStage(f.diagnosticCode, this.patterns);
    const missingStage = facts.some((f) => f.stage === null && f.action !== null && f.action !== 'delivered');
    if (!missingAddress && !missingReason && !missingStage) return;
    const text = readableText(container);
    if (missingAddress || missingReason) this.recipientsFromText(facts, text, container);
    // The text part is searched for a stage only when it names one (Exim's "SMTP error from remote
    // mail server after RCPT TO:<addr>:", a Sendmail transcript): most DSNs need nothing from it.
    if (missingStage && text !== '' && mentionsStage(text, this.patterns)) stagesFromText(facts, linesOf(unquoteForwarded(text)), this.patterns);
  }

  private recipientsFromText(facts: RecipientFacts[], text: string, container: Entity): void {
    let found: RecipientFacts[] = [];
    if (text !== '') {
      const input = { ...this.plainTextInput(), lines: linesOf(unquoteForwarded(text)) };
      for (const family of [...matchFamily(input, this.patterns), null]) {
        const result = readWithFamily(input, family, this.patterns);
        if (result.recipients.length > 0) {
          found = result.recipients;
          break;
        }
      }
    }
    const byAddress = new Map(found.map((f) => [f.recipient?.toLowerCase(), f]));
    facts.forEach((f, index) => {
      const match =
        (f.recipient !== null ? byAddress.get(f.recipient.toLowerCase()) : undefined) ??
        (found.length === facts.length ? found[index] : undefined);
      if (f.recipient === null) f.recipient = match?.recipient ?? this.addressFromDiagnostic(f) ?? null;
      if (f.diagnosticCode === null && match?.diagnosticCode) {
        f.diagnosticCode = match.diagnosticCode;
        f.replyCode ??= match.replyCode;
        if (f.stage === null) f.stage = findStage(f.diagnosticCode, this.patterns);
      }
    });
    if (facts.some((f) => f.recipient === null)) {
      const fallback = addressesOf(first(this.root.headers, 'x-failed-recipients'));
      const to = this.returnedMessage(container).to;
      if (fallback.length === 0 && to !== null) fallback.push(to);
      facts.forEach((f, index) => {
        if (f.recipient === null && fallback.length === facts.length) f.recipient = fallback[index] ?? null;
        else if (f.recipient === null && facts.length === 1) f.recipient = fallback[0] ?? null;
      });
    }
  }

  private addressFromDiagnostic(facts: RecipientFacts): string | null {
    if (facts.diagnosticCode === null) return null;
    const address = cleanAddress(/[^\s<>"'(),;:@[\]]+@[^\s<>"'(),;:@[\]]+\.[^\s<>"'(),;:@[\]]+/.exec(facts.diagnosticCode)?.[0]);
    return isAddress(address) && !this.plainTextInput().excluded.has(address.toLowerCase()) ? address : null;
  }

  private finish(kind: ReportKind | null, format: string, facts: RecipientFacts[], original: ReturnedMessage): ParsedReport {
    // undefined: not looked for yet (null: looked for, none found).
    for (const f of facts) if (f.stage === undefined) f.stage = findStage(f.diagnosticCode, this.patterns);
    for (const f of facts) f.remoteHost ??= replyingHost(f, this.patterns);
    const recipients: ReportRecipient[] = facts.map((f) => classifyRecipient(f, this.rules));
    const decided = kind ?? kindOfRecipients(recipients) ?? (recipients.length > 0 ? 'bounce' : 'unknown');
    return { kind: decided, format, recipients, original };
  }

  /** The multipart/report (or message) that holds `part`: the root, or a nested report. */
  private reportContaining(part: Entity): Entity {
    for (const entity of walk(this.root)) {
      if (entity.parts.includes(part)) return entity;
    }
    return this.root;
  }

  private returnedMessage(container: Entity, text: string | null = null): ReturnedMessage {
    const message = findReturnedMessage(container) ?? (container === this.root ? null : findReturnedMessage(this.root));
    let original = emptyOriginal();
    if (message !== null) original = originalFromHeaders(message.headers, this.campaignHeader);
    else if (text !== null) original = originalFromText(text, this.campaignHeader) ?? original;
    // Auto-replies (RFC 3834 §3.1.5) and many NDRs name the original in In-Reply-To.
    original.messageId ??= messageIdOf(first(this.root.headers, 'in-reply-to'));
    return original;
  }

  /** The human-readable text of the report: its first text part, or the body of a text message. */
  private reportText(): string {
    if (this.text === undefined) {
      const text = readableText(this.root);
      this.text = unquoteForwarded(text.length > MAX_REPORT_TEXT ? text.slice(0, MAX_REPORT_TEXT) : text);
    }
    return this.text;
  }


  private plainTextInput(): PlainTextInput {
    if (this.plainInput !== undefined) return this.plainInput;
    const excluded = new Set<string>();
    for (const name of ['to']) {
      for (const address of addressesOf(first(this.root.headers, name))) excluded.add(address.toLowerCase());
    }
    // The returned original's sender is never a failed recipient (plain-text.ts adds the one an
    // inline header block names).
    const senders = new Set<string>();
    const returned = findReturnedMessage(this.root);
    for (const name of ['from', 'sender', 'return-path']) {
      for (const address of addressesOf(returned === null ? undefined : first(returned.headers, name))) senders.add(address.toLowerCase());
    }
    this.plainInput = {
      senders,
      lines: linesOf(this.reportText()),
      from: this.from,
      subject: this.subject,
      messageId: first(this.root.headers, 'message-id') ?? '',
      headerNames: new Set(this.root.headers.keys()),
      excluded,
    };
    return this.plainInput;
  }
}

/** Lines after a recipient's address searched for its stage, unless another recipient comes first. */
const STAGE_BLOCK_LINES = 12;

/**
 * A DSN recipient's stage from the report's text part: the lines where its address appears (its
 * reason, a transcript line naming it), up to the next recipient's address; else the one stage the
 * whole text names (a transcript's ">>> DATA"). Only the same address counts: a position match
 * could pair the wrong recipient.
 */
function stagesFromText(facts: RecipientFacts[], lines: readonly string[], patterns: ReportPatterns): void {
  const lower = lines.map((line) => line.toLowerCase());
  const addresses = facts.flatMap((f) => (f.recipient === null ? [] : [f.recipient.toLowerCase()]));
  const textStage = sectionStage(lines, patterns);
  for (const f of facts) {
    if (f.stage !== null && f.stage !== undefined) continue;
    const own = f.recipient?.toLowerCase();
    const others = addresses.filter((address) => address !== own);
    let stage: SmtpStage | null = null;
    for (let at = own === undefined ? -1 : lower.findIndex((line) => line.includes(own)); at !== -1 && stage === null; ) {
      let end = at + 1;
      while (end < lines.length && end < at + STAGE_BLOCK_LINES && !others.some((address) => lower[end]?.includes(address))) end += 1;
      stage = findStage(lines.slice(at, end).join('\n'), patterns);
      const next = own === undefined ? -1 : lower.slice(end).findIndex((line) => line.includes(own));
      at = next === -1 ? -1 : end + next;
    }
    f.stage = stage ?? textStage;
  }
}

/**
 * Who said what the diagnostic quotes, for the provider rules (config/remote-host-rules.json):
 * the Remote-MTA; else the host the diagnostic names (Postfix "host mx.example.net[192.0.2.1]
 * said:"); else the Reporting-MTA, which then wrote the diagnostic itself (a provider bouncing
 * mail for its own mailbox). Null when the report names none.
 */
function replyingHost(facts: RecipientFacts, patterns: ReportPatterns): string | null {
  return (
    remoteHostName(facts.remoteMta) ??
    (facts.diagnosticCode === null ? null : remoteHostName(remoteHost(facts.diagnosticCode, patterns))) ??
    remoteHostName(facts.reportingMta)
  );
}

/**
 * The address we sent to is the one to act on: Original-Recipient (RFC 3464 §2.3.1, the ORCPT or
 * the RCPT TO as first given) when it is a mail address, else Final-Recipient. They differ after
 * forwarding or alias expansion (a list, a .forward, a mailbox that moved to another domain).
 */
function preferOriginalRecipient(facts: RecipientFacts[]): void {
  for (const f of facts) {
    const original = f.originalRecipient;
    if (isAddress(original) && !isEncapsulated(original)) f.recipient = original;
  }
}

/** A complaint or auto-reply names a person, not a failure: nothing to classify. */
function complainant(address: string | null): RecipientFacts {
  const facts = emptyFacts();
  facts.recipient = address;
  return facts;
}

/** The first entity of one of `types`: in the report itself first, then in embedded messages. */
function findEntity(root: Entity, types: ReadonlySet<string>): Entity | null {
  for (const entity of walkOwn(root)) if (types.has(entity.type)) return entity;
  for (const entity of walk(root)) if (types.has(entity.type)) return entity;
  return null;
}
