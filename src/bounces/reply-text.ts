/**
 * Splits what a remote MTA said into reply code, enhanced status code and human text.
 *
 * Inputs come in three shapes: an SMTP reply as nodemailer hands it over (`550-5.7.26 ...\n550
 * 5.7.26 ...`, RFC 5321 §4.2.1: every line of a multi-line reply repeats the code), the same reply
 * flattened onto one line by a log or an NDR, and a DSN Diagnostic-Code (RFC 3464 §2.3.6:
 * `smtp; 550 5.1.1 ...`, or `X-Postfix; ...`). Codes may also sit inside the text, as qmail and
 * MessageLabs put them (`... (#5.7.1)`) or Exchange NDRs quote them (`Remote Server returned '550
 * 5.1.1 ...'`).
 */

import type { SmtpStage } from './rules.js';

export interface ParsedReply {
  code: number | null;
  enhancedCode: string | null;
  text: string;
  /** The SMTP command the text says the reply answered (Postfix, Exim, Sendmail wording), else null. */
  stage: SmtpStage | null;
}

/** RFC 3464 §2.3.6 diagnostic-type: `smtp` or an `X-` extension such as `X-Postfix`. */
const DIAGNOSTIC_TYPE = /^\s*(?:smtp|x-[\w.-]+)\s*;\s*/i;
const LINE_BREAK = /\r\n|\r|\n/;
/** A line's leading reply code (RFC 5321 §4.2: 3 digits, then SP or "-" on continuation lines). */
const LEADING_CODE = /^\s*#?([2-5]\d\d)(?:[ \t-]+|$)/;
/** RFC 3463 §2: class.subject.detail, subject and detail of 1-3 digits; `#` as Cisco and qmail write it. */
const LEADING_ENHANCED = /^\(?#?([245]\.\d{1,3}\.\d{1,3})\)?(?=[\s:;,]|$)/;
/** A reply code and enhanced code quoted inside the text (NDRs, logs). */
const EMBEDDED_PAIR = /(?<![\w.])#?([45]\d\d)[ -]#?([45]\.\d{1,3}\.\d{1,3})(?!\w|\.\d)/;
/** An enhanced code alone inside the text; the look-arounds keep IP addresses and versions out. */
const EMBEDDED_ENHANCED = /(?<![\w.])#?([45]\.\d{1,3}\.\d{1,3})(?![\w]|\.\d)/;
/**
 * Code prefixes left in the middle of a multi-line reply flattened onto one line: `550-5.1.1 `,
 * `554-` (dash: a continuation, whatever follows) and `550 5.1.1 ` (the last line).
 */
const DASH_CONTINUATION = /\s([2-5]\d\d)-(?:#?[245]\.\d{1,3}\.\d{1,3}(?=\s|$))?/g;
const LAST_LINE_PREFIX = /\s([2-5]\d\d) #?([245]\.\d{1,3}\.\d{1,3})(?=\s|$)/g;
const CALLER_ENHANCED = /(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])/;
/** Runs of whitespace and lone tabs or line breaks; single spaces are left alone (cheaper). */
const WHITESPACE_RUN = /\s{2,}|[^\S ]/g;
const LEADING_PUNCTUATION = /^[\s:;,-]+/;

/**
 * Where MTAs say which command a reply answered: Postfix `(in reply to RCPT TO command)` /
 * `(in reply to end of DATA command)` (src/smtp/smtp_proto.c), Exim `SMTP error from remote mail
 * server after RCPT TO:<x>` / `after end of data` / `after initial connection` (deliver.c,
 * transports/smtp.c), Sendmail's transcript `>>> DATA` / `<<< 554 ...`, and Exchange/other NDRs'
 * `... while talking to ...` is not specific, so not read.
 */
const STAGE_WORDING =
  /\b(?:in reply to (?:the )?(end of data|data|rcpt to|rcpt|mail from|mail|ehlo|helo|starttls|quit)\b|after (end of data|data|rcpt to|mail from|initial connection|(?:sending )?(?:ehlo|helo|starttls|greeting))\b|>>> (data|rcpt to|mail from)\b)/i;
const STAGE_OF: Readonly<Record<string, SmtpStage>> = {
  'end of data': 'data',
  data: 'data',
  'rcpt to': 'rcpt',
  rcpt: 'rcpt',
  'mail from': 'mail',
  mail: 'mail',
  ehlo: 'connection',
  helo: 'connection',
  starttls: 'connection',
  quit: 'connection',
  'initial connection': 'connection',
  greeting: 'connection',
};

/** The stage an MTA's wording names; cheap checks first, this runs once per failed recipient. */
export function stageInText(text: string): SmtpStage | null {
  if (!/after |reply to|>>> /i.test(text)) return null;
  const match = STAGE_WORDING.exec(text);
  const named = (match?.[1] ?? match?.[2] ?? match?.[3])?.toLowerCase().replace(/^sending /, '');
  return named === undefined ? null : (STAGE_OF[named] ?? null);
}

interface LineStart {
  code: number | null;
  enhancedCode: string | null;
  rest: string;
}

/**
 * Amazon SES quotes the remote reply inside its own wording: `5.1.0 - Unknown address error
 * 550-'5.7.1 <x@y>... Access denied' (delivery attempts: 0)`. The prefix is SES's name for its
 * status, not what the remote host said; the quoted reply is.
 */
const SES_QUOTED_REPLY = /^\s*([245]\.\d{1,3}\.\d{1,3}) - [^']*?\b([2-5]\d\d)[ -]'([\s\S]*)'\s*\(delivery attempts: \d+\)\s*$/;

export function parseReply(raw: string): ParsedReply {
  const stripped = stripDiagnosticType(raw);
  if (stripped.includes('(delivery attempts:')) {
    const ses = SES_QUOTED_REPLY.exec(stripped);
    if (ses?.[2] !== undefined && ses[3] !== undefined) {
      const inner = parseReply(`${ses[2]} ${ses[3]}`);
      return { ...inner, enhancedCode: inner.enhancedCode ?? ses[1] ?? null, stage: inner.stage ?? stageInText(stripped) };
    }
  }
  const lines = splitLines(stripped);
  let code: number | null = null;
  let enhancedCode: string | null = null;
  const texts: string[] = [];
  for (const line of lines) {
    const start = splitLineStart(line, code, enhancedCode);
    code ??= start.code;
    enhancedCode ??= start.enhancedCode;
    const rest = start.rest.trim();
    if (rest !== '') texts.push(rest);
  }
  let text = texts.join(' ');
  if (code !== null && lines.length === 1) text = removeFlattenedContinuations(text, code, enhancedCode);
  text = collapseWhitespace(text).replace(LEADING_PUNCTUATION, '').trim();
  const codes = findEmbeddedCodes(text, code, enhancedCode);
  return { code: codes.code, enhancedCode: codes.enhancedCode, text, stage: stageInText(text) };
}

// The checks before each regex below keep the common case (one line, no diagnostic type) cheap:
// this runs once per failed recipient.
function stripDiagnosticType(raw: string): string {
  return raw.includes(';') ? raw.replace(DIAGNOSTIC_TYPE, '') : raw;
}

/** Lines are split already, so only tabs and runs of spaces can be left (Gmail pads with two). */
function collapseWhitespace(text: string): string {
  return text.includes('  ') || text.includes('\t') ? text.replace(WHITESPACE_RUN, ' ') : text;
}

function splitLines(raw: string): string[] {
  return raw.includes('\n') || raw.includes('\r') ? raw.split(LINE_BREAK) : [raw];
}

/**
 * Strips a line's code prefix. On continuation lines only the reply's own code is stripped, so a
 * line of text that happens to start with a number keeps it.
 */
function splitLineStart(line: string, knownCode: number | null, knownEnhanced: string | null): LineStart {
  let rest = line;
  let code: number | null = null;
  const codeMatch = LEADING_CODE.exec(rest);
  if (codeMatch?.[1] !== undefined) {
    const found = Number(codeMatch[1]);
    if (knownCode === null || knownCode === found) {
      code = found;
      rest = rest.slice(codeMatch[0].length);
    }
  }
  let enhancedCode: string | null = null;
  const enhancedMatch = LEADING_ENHANCED.exec(rest);
  if (enhancedMatch?.[1] !== undefined && (knownEnhanced === null || knownEnhanced === enhancedMatch[1])) {
    enhancedCode = enhancedMatch[1];
    rest = rest.slice(enhancedMatch[0].length);
  }
  return { code, enhancedCode, rest };
}

function removeFlattenedContinuations(text: string, code: number, enhancedCode: string | null): string {
  const codeText = String(code);
  if (!text.includes(codeText)) return text;
  return text
    .replace(DASH_CONTINUATION, (token, foundCode: string) => (foundCode === codeText ? ' ' : token))
    .replace(LAST_LINE_PREFIX, (token, foundCode: string, foundEnhanced: string) =>
      foundCode === codeText && foundEnhanced === enhancedCode ? ' ' : token,
    );
}

/** Fills whichever code is still unknown from codes quoted in the text; never overrides one. */
function findEmbeddedCodes(
  text: string,
  code: number | null,
  enhancedCode: string | null,
): Pick<ParsedReply, 'code' | 'enhancedCode'> {
  if (code !== null && enhancedCode !== null) return { code, enhancedCode };
  const pair = EMBEDDED_PAIR.exec(text);
  if (pair?.[1] !== undefined && pair[2] !== undefined) {
    return { code: code ?? Number(pair[1]), enhancedCode: enhancedCode ?? pair[2] };
  }
  if (enhancedCode === null) {
    const alone = EMBEDDED_ENHANCED.exec(text);
    if (alone?.[1] !== undefined) return { code, enhancedCode: alone[1] };
  }
  return { code, enhancedCode };
}

/**
 * An enhanced code given by a caller (a DSN's `Status:` field), normalised: `#5.1.1`,
 * ` 5.1.1 (permanent failure)` and `5.1.1` all give `5.1.1`; anything else gives null.
 */
export function normalizeEnhancedCode(value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  const match = CALLER_ENHANCED.exec(value);
  return match?.[1] ?? null;
}

/** A reply code given by a caller; only 2xx-5xx are SMTP reply codes (RFC 5321 §4.2.1). */
export function normalizeReplyCode(value: number | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  return Number.isInteger(value) && value >= 200 && value <= 599 ? value : null;
}
