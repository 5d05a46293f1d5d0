/**
 * Which SMTP command a failing reply answered (the stage), read from a report's wording: Postfix
 * "(in reply to RCPT TO command)", Exim "SMTP error from remote mail server after end of data:",
 * a Sendmail or Courier transcript (">>> DATA" then "<<< 554 ..."), qmail "does not like
 * recipient." The phrases are data (config/ndr-patterns.json `stage`, a source per family); this
 * module only searches them and names the stage a captured command belongs to (RFC 5321 §3.3).
 *
 * The stage is evidence for the classifier: a refusal at DATA came after the address was accepted
 * at RCPT, so it is about the message, not the address.
 */
import type { SmtpStage } from '../classifier.js';
import type { ReportPatterns } from './patterns.js';

/** A reason or diagnostic is searched up to this length; wrapped lines are joined first. */
const MAX_STAGE_TEXT = 4000;

/**
 * The stage the text names, or null. Whitespace (a Postfix line wrapped inside "(in reply to RCPT
 * TO\n command)") is collapsed first; when several phrases match, the earliest in the text wins:
 * a recipient's own reply comes before any later transcript of the session.
 */
export function findStage(text: string | null, patterns: ReportPatterns): SmtpStage | null {
  if (text === null || text === '') return null;
  const head = text.length > MAX_STAGE_TEXT ? text.slice(0, MAX_STAGE_TEXT) : text;
  if (!patterns.stageMarker.test(head)) return null;
  const lower = head.toLowerCase();
  let flat: string | null = null;
  let best: { index: number; stage: SmtpStage } | null = null;
  for (const family of patterns.stage) {
    if (!family.markers.some((marker) => lower.includes(marker))) continue;
    flat ??= head.replace(/\s+/g, ' ');
    for (const pattern of family.patterns) {
      const match = pattern.exec(flat);
      if (match === null || (best !== null && match.index >= best.index)) continue;
      const stage = family.stage ?? stageOfCommand(match.groups?.command ?? '');
      if (stage !== null) best = { index: match.index, stage };
    }
  }
  return best?.stage ?? null;
}

/** The longest text searched for a stage marker before reading a text part's recipients. */
const MAX_MARKER_TEXT = 16 * 1024;

/** True when the text holds any family's stage marker (a cheap test before reading a text part). */
export function mentionsStage(text: string, patterns: ReportPatterns): boolean {
  return patterns.stageMarker.test(text.length > MAX_MARKER_TEXT ? text.slice(0, MAX_MARKER_TEXT) : text);
}

/**
 * The stage of an SMTP command as an MTA names it: `RCPT TO`, `MAIL FROM`, `DATA`, `end of data`,
 * `BDAT` (RFC 3030), the message itself, or the session's opening (greeting, EHLO/HELO/LHLO,
 * STARTTLS, AUTH, XFORWARD).
 */
export function stageOfCommand(command: string): SmtpStage | null {
  const word = command.trim().toLowerCase();
  if (word === '') return null;
  if (/^(?:rcpt|recipient)/.test(word)) return 'rcpt';
  if (/^(?:mail|sender)/.test(word)) return 'mail';
  if (/^(?:data|end of data|bdat|message|\.|the message)/.test(word)) return 'data';
  if (/^(?:ehlo|helo|lhlo|starttls|auth|xforward|greeting|initial|the initial|connect|banner|service greeting|tls)/.test(word)) {
    return 'connection';
  }
  return null;
}
