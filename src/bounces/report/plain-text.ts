/**
 * Plain-text NDRs: the bounces of qmail, Exim, old Sendmail, Exchange, Gmail, Yahoo and many more
 * that carry no message/delivery-status part. The mechanism is one reader; what each MTA family
 * writes (its signature, where its error section starts, how it names a recipient, where the
 * returned message begins) is data in config/ndr-patterns.json.
 *
 * A report's text is cut into the error section (after the family's start line, before the first
 * line where the original message begins); every line there that names a recipient opens that
 * recipient's reason, which runs to the next recipient or the end of the section.
 */
import { isAddress, normalizeAddress, rewriteX400 } from './fields.js';
import type { FamilyPatterns, ReportPatterns } from './patterns.js';
import type { RecipientFacts } from './recipient.js';
import { emptyFacts } from './rfc3464.js';
import { findStage, mentionsStage } from './stage.js';
import type { SmtpStage } from '../classifier.js';

/**
 * Only the head of a huge text is searched (NDR error sections are short), and every pattern is
 * tried on one line at a time, cut at MAX_LINE_CHARS: a pattern in the data file can then cost at
 * worst a bounded amount of backtracking, whatever the input.
 */
const MAX_TEXT_CHARS = 256 * 1024;
const MAX_LINES = 4000;
const MAX_LINE_CHARS = 1000;
/** Signature body markers are looked for near the top only. */
const SIGNATURE_LINES = 400;
const MAX_REASON_CHARS = 1500;
const MAX_REASON_PARAGRAPHS = 4;
const MAX_RECIPIENTS = 10_000;
/** Lines under a recipient searched for the remote host when its reason names none. */
const HOST_SEARCH_LINES = 8;

export interface PlainTextInput {
  /** The report's human-readable text, decoded, as lines (see `linesOf`). */
  readonly lines: readonly string[];
  readonly from: string;
  readonly subject: string;
  readonly messageId: string;
  /** Lower-case names of the report's own header fields. */
  readonly headerNames: ReadonlySet<string>;
  /** Addresses never taken for a failed recipient: the bounce's own To (our return path). */
  readonly excluded: ReadonlySet<string>;
  /** The returned original's sender (From, Sender, Return-Path of an attached message), when known. */
  readonly senders?: ReadonlySet<string>;
}

export interface PlainTextResult {
  /** The family id, or `generic`. */
  readonly family: string;
  /** The family's implied status (see patterns), for recipients found elsewhere. */
  readonly impliedStatus: string | null;
  readonly recipients: RecipientFacts[];
  /** The text after the error section: the returned original, when the NDR quotes it inline. */
  readonly originalText: string | null;
  /** The error section, for callers that need a reason when no recipient line was found. */
  readonly section: string;
  /** The one stage the whole error section names (a session transcript), for recipients without their own. */
  readonly stage: SmtpStage | null;
  /** The report is a delay notice (a warning: the MTA is still trying), not a failure. */
  readonly temporary: boolean;
}

interface Section {
  readonly lines: readonly string[];
  readonly start: number;
  readonly end: number;
}

interface Mention {
  readonly address: string;
  readonly line: number;
  readonly reason: string;
  /** More addresses the same line lists with this one ("a@x, b@y"): they share its reason. */
  readonly more?: readonly string[];
}

/** The families whose signature the report matches, in file order. */
export function matchFamily(input: PlainTextInput, patterns: ReportPatterns): FamilyPatterns[] {
  const matched: FamilyPatterns[] = [];
  for (const family of patterns.families) {
    if (signatureMatches(family, input)) matched.push(family);
  }
  return matched;
}

function signatureMatches(family: FamilyPatterns, input: PlainTextInput): boolean {
  let score = 0;
  if (family.from?.test(input.from)) score += 1;
  if (family.subject?.test(input.subject)) score += 1;
  if (family.messageId?.test(input.messageId)) score += 1;
  if (family.headers.some((name) => input.headerNames.has(name))) score += 1;
  if (score >= family.min) return true;
  if (family.body === null || score + 1 < family.min) return false;
  return anyLine(family.body, input.lines, SIGNATURE_LINES);
}

/** The lines of a text as the readers see them: the head of the text, each line cut to length. */
export function linesOf(text: string): string[] {
  const head = text.length > MAX_TEXT_CHARS ? text.slice(0, MAX_TEXT_CHARS) : text;
  const lines = head.split('\n', MAX_LINES);
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i] ?? '';
    if (line.length > MAX_LINE_CHARS) lines[i] = line.slice(0, MAX_LINE_CHARS);
  }
  return lines;
}

export function anyLine(pattern: RegExp, lines: readonly string[], limit = lines.length): boolean {
  const end = Math.min(limit, lines.length);
  for (let i = 0; i < end; i += 1) if (pattern.test(lines[i] ?? '')) return true;
  return false;
}

/** Reads a report with one family's patterns (null: the generic reader); recipients may be empty. */
export function readWithFamily(input: PlainTextInput, family: FamilyPatterns | null, patterns: ReportPatterns): PlainTextResult {
  const lines = input.lines;
  const section = findSection(lines, family, patterns);
  const sectionLines = lines.slice(section.start, section.end);
  const sectionText = sectionLines.join('\n');
  const temporary = isDelayNotice(input, sectionLines, section.end, family, patterns);
  const transient = anyLine(patterns.transient, sectionLines);
  // Stage phrases are looked for only in a section that holds one of their markers.
  const stageMarked = mentionsStage(sectionText, patterns);
  const stage = stageMarked ? sectionStage(sectionLines, patterns) : null;
  // The same address again right after (a transcript line, a quoted reply) belongs to the same reason.
  const mentions = findMentions(section, family, patterns, exclusionsOf(input, lines, section.end)).filter(
    (mention, index, all) => index === 0 || all[index - 1]?.address.toLowerCase() !== mention.address.toLowerCase(),
  );
  const originalText = section.end < lines.length ? lines.slice(originalStart(lines, section.end)).join('\n') : null;
  const impliedStatus = family?.impliedStatus ?? null;
  const result = { family: family?.id ?? 'generic', impliedStatus, originalText, section: sectionText, stage, temporary };
  if (mentions.length === 0) return { ...result, recipients: [] };
  const byAddress = new Map<string, RecipientFacts>();
  const recipients: RecipientFacts[] = [];
  mentions.forEach((mention, index) => {
    const next = mentions[index + 1]?.line ?? section.end;
    const previousEnd = index === 0 ? section.start : (mentions[index - 1]?.line ?? 0) + 1;
    // A list of addresses on consecutive lines ("was not delivered to: a, b because: ...") shares
    // the reason written after the list's last address.
    const last = family?.reasonAbove === true || mention.reason !== '' ? index : lastOfList(mentions, index);
    const reason =
      family?.reasonAbove === true
        ? reasonAbove(section, mention, previousEnd, patterns)
        : last === index
          ? reasonOf(section, mention, next, previousEnd, patterns)
          : reasonOf(section, mentions[last] ?? mention, mentions[last + 1]?.line ?? section.end, previousEnd, patterns);
    const key = mention.address.toLowerCase();
    const seen = byAddress.get(key);
    // The stage is read from the recipient's own lines (its reply, a transcript line naming it),
    // then from a session transcript that names one stage for the whole report.
    const ownStage = !stageMarked
      ? null
      : family?.reasonAbove === true
        ? findStage(blockText(section, previousEnd, mention.line + 1), patterns)
        : findStage(blockText(section, mention.line, next), patterns);
    if (seen !== undefined) {
      seen.stage ??= ownStage;
      // The same address again (a translated copy, a transcript): a reason that quotes the
      // remote reply replaces one that did not.
      const better =
        seen.diagnosticCode === null ||
        (seen.replyCode === null && findReplyCode(reason) !== null) ||
        // A reason that was only the address line itself says nothing (such a line is short).
        (seen.diagnosticCode.length <= ADDRESS_LINE_CHARS && !/\p{L}{3}/u.test(seen.diagnosticCode.replace(ADDRESS_IN_FIELD, '')));
      if (reason !== '' && better) fillFromReason(seen, reason, patterns, true);
      return;
    }
    if (recipients.length >= MAX_RECIPIENTS) return;
    const facts = emptyFacts();
    facts.recipient = mention.address;
    facts.action = temporary ? 'delayed' : 'failed';
    // One recipient's "retry timeout exceeded" says nothing of the others the report names.
    facts.transient = mentions.length === 1 ? transient : patterns.transient.test(reason);
    facts.impliedStatus = family?.impliedStatus ?? null;
    facts.stage = ownStage;
    fillFromReason(facts, reason, patterns);
    // The host may be named outside the reason, in the transcript right under the recipient
    // (Sendmail's "... while talking to host.:"); only those few lines are searched.
    facts.remoteMta ??= remoteHost(blockText(section, mention.line, Math.min(next, mention.line + HOST_SEARCH_LINES)), patterns);
    byAddress.set(key, facts);
    recipients.push(facts);
    for (const address of mention.more ?? []) {
      if (byAddress.has(address.toLowerCase()) || recipients.length >= MAX_RECIPIENTS) continue;
      const listed = { ...facts, recipient: address };
      byAddress.set(address.toLowerCase(), listed);
      recipients.push(listed);
    }
  });
  for (const facts of recipients) facts.stage ??= stage;
  return { ...result, recipients };
}

/** The index of the last mention of the run of address-only lines that starts at `index`. */
function lastOfList(mentions: readonly Mention[], index: number): number {
  let last = index;
  while (
    last + 1 < mentions.length &&
    mentions[last]?.reason === '' &&
    (mentions[last + 1]?.line ?? -1) === (mentions[last]?.line ?? -2) + 1
  ) {
    last += 1;
  }
  return last;
}

/** The lines from..to of a section, as one text (the stage phrases may wrap over lines). */
function blockText(section: Section, from: number, to: number): string {
  return section.lines.slice(Math.max(from, section.start), Math.min(to, section.end)).join('\n');
}

/**
 * The stage a whole section names when every stage phrase in it agrees, and that stage is not RCPT:
 * a refusal at RCPT is about one address, so it never speaks for the others.
 */
export function sectionStage(lines: readonly string[], patterns: ReportPatterns): SmtpStage | null {
  let found: SmtpStage | null = null;
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i] ?? '';
    if (!patterns.stageMarker.test(line)) continue;
    // A phrase may wrap onto the next lines (Postfix "in reply to RCPT TO\n command", a
    // transcript's reply on the line after its command).
    const stage = findStage(lines.slice(i, i + 3).join('\n'), patterns);
    if (stage === null) continue;
    if (found !== null && found !== stage) return null;
    found = stage;
  }
  return found === 'rcpt' ? null : found;
}

/**
 * A delay notice, not a failure: the family's own or the common "still trying" wording in the error
 * section, or a delay-notice subject or banner (config `warning`: Sendmail's "THIS IS A WARNING
 * MESSAGE ONLY", Postfix's "Delayed Mail (still being retried)", ...) before the returned message.
 */
export function isDelayNotice(
  input: PlainTextInput,
  sectionLines: readonly string[],
  end: number,
  family: FamilyPatterns | null,
  patterns: ReportPatterns,
): boolean {
  return (
    (family?.temporary != null && anyLine(family.temporary, sectionLines)) ||
    anyLine(patterns.temporary, sectionLines) ||
    patterns.warning.subject.test(input.subject) ||
    // Banners and delay sentences stand near the top, before the returned message.
    anyLine(patterns.warning.body, input.lines, Math.min(end, SIGNATURE_LINES))
  );
}

/** Sets the diagnostic and what it quotes: reply code, enhanced status code, remote host. */
export function fillFromReason(facts: RecipientFacts, reason: string, patterns: ReportPatterns, replace = false): void {
  if (reason === '') return;
  facts.diagnosticCode = remoteReply(reason, patterns) ?? reason;
  if (replace) {
    facts.status = findStatus(reason) ?? facts.status;
    facts.replyCode = findReplyCode(reason);
  }
  facts.status ??= findStatus(reason);
  facts.replyCode ??= findReplyCode(reason);
  facts.remoteMta ??= remoteHost(reason, patterns);
}

/** The remote host a reason names (Postfix `host X[ip] said:`, Exim `host X [ip]:`), by patterns `remoteMta`. */
export function remoteHost(text: string, patterns: ReportPatterns): string | null {
  for (const pattern of patterns.remoteMta) {
    const host = pattern.exec(text)?.groups?.host;
    if (host !== undefined) return host.replace(/\.$/, '');
  }
  return null;
}

/**
 * Where the returned message's text begins after the section's end line: on that line itself when
 * it is already one of the original's header fields (Return-Path, Received, ...), else after it
 * (a separator such as "----- Original message follows -----", or a Content-Type line).
 */
function originalStart(lines: readonly string[], end: number): number {
  const line = lines[end] ?? '';
  return ORIGINAL_HEADER_FIELD.test(line) && !/^Content-/i.test(line) ? end : end + 1;
}

const ORIGINAL_HEADER_FIELD = /^[A-Za-z][A-Za-z0-9-]*:[ \t]/;

/** The remote server's reply quoted in a reason, when the NDR introduces one and it has a code. */
function remoteReply(reason: string, patterns: ReportPatterns): string | null {
  const intro = patterns.replyIntroducer.exec(reason);
  if (intro === null) return null;
  let reply = reason.slice(intro.index + intro[0].length).trim();
  // An introducer that opens a parenthesis (Sendmail's "(reason: 550 ...)") closes it after the reply.
  if (intro[0].includes('(') && reply.endsWith(')')) reply = reply.slice(0, -1).trimEnd();
  return reply !== '' && (findReplyCode(reply) !== null || findStatus(reply) !== null) ? reply : null;
}

const QUOTED_HEADER = /^> ?(?:From|Subject|Date|To):/m;
const QUOTE_PREFIX = /^> ?/gm;

/** A bounce forwarded by a person ("Begin forwarded message:") arrives quoted with "> ". */
export function unquoteForwarded(text: string): string {
  return QUOTED_HEADER.test(text) ? text.replace(QUOTE_PREFIX, '') : text;
}

function findSection(lines: readonly string[], family: FamilyPatterns | null, patterns: ReportPatterns): Section {
  let start = 0;
  for (const marker of family?.start ?? []) {
    const found = lines.findIndex((line) => marker.test(line));
    if (found !== -1) {
      start = found;
      break;
    }
  }
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i += 1) {
    const line = lines[i] ?? '';
    if (patterns.original.test(line) || family?.end?.test(line) === true) {
      end = i;
      break;
    }
  }
  return { lines, start, end };
}

/** Header fields of the returned original that name its sender, never a failed recipient. */
const SENDER_FIELD = /^(?:From|Sender|Return-Path|Reply-To|Errors-To):\s*(?<value>.*)$/i;
const ADDRESS_IN_FIELD = /[^\s<>"'(),;:@[\]]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+/g;
/** Lines of the returned original's header searched for its sender, and how long such a line may be. */
const SENDER_SEARCH_LINES = 80;
const SENDER_FIELD_CHARS = 300;
/** The longest reason that can be an address line and nothing else. */
const ADDRESS_LINE_CHARS = 300;
/**
 * Mailboxes of the mail system itself: an NDR names them to be written to ("Please contact
 * postmaster@..."), never as the failed recipient, in a sentence.
 */
const SYSTEM_MAILBOX = /^(?:postmaster|post_master|mailer-daemon|mailer_daemon|mail-daemon|maildaemon)@/i;

/** Addresses a recipient line may not name, and the ones a sentence may not name either. */
interface Exclusions {
  /** The returned original's sender (its inline From, Sender, Return-Path): never a failed recipient. */
  readonly senders: ReadonlySet<string>;
  /** The senders, the report's own To (our return path) and its From. */
  readonly inProse: ReadonlySet<string>;
}

/**
 * A report that quotes "From: news@shop.example" is about mail from that address, not to it; a
 * transcript's ">>> MAIL From:<news@shop.example>" names it too. The sender is taken from the
 * header block of the returned original when the report quotes it inline.
 */
function exclusionsOf(input: PlainTextInput, lines: readonly string[], end: number): Exclusions {
  // Every family tried on a report asks again, mostly with the same end: read the header once.
  let known = exclusionsRead.get(input);
  if (known === undefined) {
    known = new Map();
    exclusionsRead.set(input, known);
  }
  const cached = known.get(end);
  if (cached !== undefined && lines === input.lines) return cached;
  const found = readExclusions(input, lines, end);
  if (lines === input.lines) known.set(end, found);
  return found;
}

const exclusionsRead = new WeakMap<PlainTextInput, Map<number, Exclusions>>();

function readExclusions(input: PlainTextInput, lines: readonly string[], end: number): Exclusions {
  const senders = new Set<string>(input.senders);
  const last = Math.min(lines.length, end + SENDER_SEARCH_LINES);
  for (let i = end; i < last; i += 1) {
    const line = lines[i] ?? '';
    // A header field naming a sender is short; a long line is none (and would cost the address search).
    if (line.length > SENDER_FIELD_CHARS) continue;
    const value = SENDER_FIELD.exec(line)?.groups?.value;
    if (value === undefined) continue;
    for (const address of value.match(ADDRESS_IN_FIELD) ?? []) senders.add(normalizeAddress(address).toLowerCase());
  }
  const inProse = new Set([...input.excluded, ...senders]);
  for (const address of input.from.slice(0, SENDER_FIELD_CHARS).match(ADDRESS_IN_FIELD) ?? []) inProse.add(normalizeAddress(address).toLowerCase());
  return { senders, inProse };
}

function findMentions(section: Section, family: FamilyPatterns | null, patterns: ReportPatterns, excluded: Exclusions): Mention[] {
  const mentions: Mention[] = [];
  const own = family?.recipient ?? [];
  const common = family === null || family.commonRecipients;
  // A transcript's refusal of the sender ("<<< 501 <sender>... no access ...") is why the
  // recipient named next failed: its reason goes before that recipient's own.
  let senderRefusal = '';
  const expandedTo = new Map<string, string>();
  for (let i = section.start; i < section.end; i += 1) {
    // Old Exchange and X.400 gateways name a recipient as an O/R name ("/RFC-822=ann(a)example.org/").
    const line = rewriteX400(section.lines[i] ?? '');
    if (!line.includes('@')) continue;
    const found =
      matchLine(line, own, i, excluded.senders, false) ??
      (common
        ? (matchLine(line, patterns.recipient, i, excluded.senders, false) ??
          matchLine(line, patterns.recipientInProse, i, excluded.inProse, true))
        : null);
    if (found === null) continue;
    if (found.excluded) {
      if (found.reason !== '' && findReplyCode(line) !== null) senderRefusal = found.reason;
      continue;
    }
    // "(expanded from: <list@x>)" (Sendmail), "(generated from list@x)" (Exim) right under a
    // recipient names the address we sent to, which the MTA expanded into that one.
    const previous = mentions[mentions.length - 1];
    if (previous !== undefined && previous.line === i - 1 && EXPANDED_FROM.test(line)) {
      mentions[mentions.length - 1] = { ...previous, address: found.address };
      expandedTo.set(previous.address.toLowerCase(), found.address);
      continue;
    }
    // The expanded address again (a transcript line): it stands for the address we sent to.
    const address = expandedTo.get(found.address.toLowerCase()) ?? found.address;
    const reason = senderRefusal === '' ? found.reason : `${senderRefusal} ${found.reason}`.trim();
    senderRefusal = '';
    const more = listedWith(line, found.address, excluded.inProse);
    // The rest of a list is no part of the reason its addresses share.
    const listed = more.length === 0 ? reason : withoutListHead(reason);
    mentions.push(more.length === 0 ? { address, line: i, reason } : { address, line: i, reason: listed, more });
  }
  return mentions;
}

/** The line under a recipient that names the address it was expanded from (an alias, a list). */
const EXPANDED_FROM = /^\s*\(?(?:expanded|generated) (?:from|by):?\s/i;

/** The pieces of a line between list separators (white space, commas, semicolons, quotes, angle brackets). */
const LIST_SEPARATORS = /[\s,;<>"']+/;
const LIST_TOKEN = /^[\s"'<>,;:]*([^\s"'<>,;:]+)/;

/**
 * The other addresses of a list on a recipient's line ("was not delivered to: ann@x, bob@y"), in
 * order: the addresses that follow it with nothing but separators between them. None when the
 * line has no comma or semicolon. Linear in the line: a split, no backtracking pattern.
 */
function listedWith(line: string, address: string, excluded: ReadonlySet<string>): string[] {
  if (!line.includes(',') && !line.includes(';')) return [];
  const tokens = line.split(LIST_SEPARATORS);
  const own = address.toLowerCase();
  let at = tokens.findIndex((token) => token.includes('@') && normalizeAddress(token).toLowerCase() === own);
  if (at === -1) return [];
  const more: string[] = [];
  for (at += 1; at < tokens.length; at += 1) {
    const candidate = normalizeAddress(tokens[at] ?? '');
    if (!isAddress(candidate) || !candidate.slice(candidate.lastIndexOf('@')).includes('.')) break;
    if (!excluded.has(candidate.toLowerCase()) && !SYSTEM_MAILBOX.test(candidate)) more.push(candidate);
  }
  return more;
}

/** A reason read after a list's first address, without the rest of the list it starts with. */
function withoutListHead(reason: string): string {
  let rest = reason;
  for (let token = LIST_TOKEN.exec(rest); token !== null && (token[1] ?? '').includes('@'); token = LIST_TOKEN.exec(rest)) {
    rest = rest.slice(token[0].length);
  }
  return rest.replace(/^[\s"'<>,;:]+/, '');
}

/**
 * The first pattern of `list` that names an address on this line: a recipient, or (`excluded`) the
 * sender a recipient line may not name. Never an empty address; in prose, never the mail system's
 * own mailbox nor the report's own To or From.
 */
function matchLine(
  line: string,
  list: readonly RegExp[],
  index: number,
  excluded: ReadonlySet<string>,
  prose: boolean,
): (Mention & { readonly excluded: boolean }) | null {
  for (const pattern of list) {
    const groups = pattern.exec(line)?.groups;
    const rcpt = groups?.rcpt;
    if (rcpt === undefined) continue;
    const address = normalizeAddress(rcpt);
    if (!isAddress(address) || (prose && SYSTEM_MAILBOX.test(address))) continue;
    const reason = groups?.reason?.trim() ?? '';
    if (excluded.has(address.toLowerCase())) {
      if (prose) continue;
      return { address, line: index, reason, excluded: true };
    }
    return { address, line: index, reason, excluded: false };
  }
  return null;
}

/**
 * A recipient's reason: what its own line says after the address, then the paragraphs that follow
 * (at most a few, up to a boilerplate line). When nothing follows — "Unknown user: a@b" or a reason
 * written above the address — the line itself and the paragraph above it are the reason.
 */
function reasonOf(section: Section, mention: Mention, next: number, previousEnd: number, patterns: ReportPatterns): string {
  const parts: string[] = [];
  if (mention.reason !== '') parts.push(mention.reason);
  let paragraphs = 0;
  // A reason on the recipient's own line is a paragraph already: a blank line right after it ends it.
  let inParagraph = mention.reason !== '';
  let length = mention.reason.length;
  // A remote reply quoted on the lines under the recipient (a transcript's "Received >>> 550 ...")
  // is the reason: its paragraph ends it, what follows is commentary.
  let quotesReply = false;
  for (let i = mention.line + 1; i < next; i += 1) {
    const line = (section.lines[i] ?? '').trim();
    if (line === '') {
      if (quotesReply) break;
      if (inParagraph) {
        paragraphs += 1;
        inParagraph = false;
        // A reason on the recipient's own line continues only to the end of its paragraph.
        if (mention.reason !== '' || paragraphs >= MAX_REASON_PARAGRAPHS) break;
      }
      continue;
    }
    // A label alone on its line before the reason ("because:", Domino) only introduces it; the
    // address the recipient was expanded from is no reason.
    if ((parts.length === 0 && REASON_LABEL.test(line)) || EXPANDED_FROM.test(line)) continue;
    // Boilerplate after the reason ends it; a rule line before any reason is only decoration.
    if (patterns.reasonStop.test(line)) {
      if (parts.length > 0) break;
      continue;
    }
    inParagraph = true;
    parts.push(line);
    quotesReply ||= findReplyCode(line) !== null;
    length += line.length;
    if (length > MAX_REASON_CHARS) break;
  }
  if (parts.length === 0) {
    const line = (section.lines[mention.line] ?? '').trim();
    const above: string[] = [];
    for (let i = mention.line - 1; i >= previousEnd && i >= section.start; i -= 1) {
      const text = (section.lines[i] ?? '').trim();
      if (text === '') {
        if (above.length > 0) break;
        continue;
      }
      if (patterns.reasonStop.test(text)) break;
      above.unshift(text);
    }
    parts.push(...above, line);
  }
  return collapse(parts.join(' ')).slice(0, MAX_REASON_CHARS);
}

/** For families that state the reason first: the paragraphs between the previous recipient and this one. */
function reasonAbove(section: Section, mention: Mention, previousEnd: number, patterns: ReportPatterns): string {
  const parts: string[] = [];
  let paragraphs = 0;
  let length = 0;
  for (let i = previousEnd; i < mention.line; i += 1) {
    const line = (section.lines[i] ?? '').trim();
    if (line === '') {
      if (parts.length > 0 && parts[parts.length - 1] !== '') {
        parts.push('');
        paragraphs += 1;
        if (paragraphs >= MAX_REASON_PARAGRAPHS) break;
      }
      continue;
    }
    // A rule or section title before any reason is decoration ("------- Failure Reasons --------").
    if (patterns.reasonStop.test(line)) {
      if (parts.length > 0) break;
      continue;
    }
    parts.push(line);
    length += line.length;
    if (length > MAX_REASON_CHARS) break;
  }
  if (mention.reason !== '') parts.push(mention.reason);
  return collapse(parts.join(' ')).slice(0, MAX_REASON_CHARS);
}

const REASON_LABEL = /^\p{L}[\p{L} ]{0,30}:$/u;

function collapse(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** RFC 3463 class.subject.detail, as a reply or qmail's "(#5.1.1)" quotes it; never a version or an IP. */
const STATUS_IN_TEXT = /(?<![\w.#-])#?([45]\.\d{1,3}\.\d{1,3})(?![\d]|\.\d)/;
/**
 * An SMTP reply code (RFC 5321 §4.2: 4yz/5yz, second digit 0-5) followed by an enhanced code, a
 * word or the end of the text: the shape of a reply quoted in prose, not of a number in passing.
 */
const REPLY_CODE_IN_TEXT = /(?<![\w.:/#=+-])([45][0-5]\d)(?:[ -]+(?=[#(]?[45]\.\d)|[ -]+(?=[A-Za-z<"'([])|$)/;

export function findStatus(text: string): string | null {
  return STATUS_IN_TEXT.exec(text)?.[1] ?? null;
}

export function findReplyCode(text: string): number | null {
  const code = REPLY_CODE_IN_TEXT.exec(text)?.[1];
  return code === undefined ? null : Number(code);
}

/**
 * The reason of a section that names no recipient line: its first paragraphs after the
 * introduction ("The following address(es) failed:"), for recipients found elsewhere.
 */
export function sectionReason(section: string, patterns: ReportPatterns): string {
  return firstParagraphs(afterIntroduction(section), patterns);
}

/** The part of an error section after its introduction ("The following address(es) failed:"). */
function afterIntroduction(section: string): string {
  const lines = section.split('\n');
  const intro = lines.findIndex((line) => line.trimEnd().endsWith(':') && INTRODUCTION.test(line));
  if (intro === -1) return section;
  const rest = lines.slice(intro + 1).join('\n');
  return rest.trim() === '' ? section : rest;
}

const INTRODUCTION = /\b(?:following|these)\b/i;

function firstParagraphs(section: string, patterns: ReportPatterns): string {
  const kept: string[] = [];
  let paragraphs = 0;
  for (const raw of section.split('\n')) {
    const line = raw.trim();
    if (line === '') {
      if (kept.length > 0 && kept[kept.length - 1] !== '') {
        paragraphs += 1;
        kept.push('');
        if (paragraphs >= 3) break;
      }
      continue;
    }
    if (patterns.reasonStop.test(line) && kept.length > 0) break;
    kept.push(line);
  }
  return kept.join(' ').replace(/\s+/g, ' ').trim().slice(0, 1500);
}
