/**
 * What the report parser returns. `ParsedReport` is the library's full answer; `ParseOutput` is the
 * public, stable shape `rebound parse` prints (docs/report-parser.md): change it only additively.
 */
import type { BounceType, Category, Severity } from '../categories.js';
import type { SmtpStage } from '../classifier.js';

/**
 * - `bounce`: at least one recipient failed (RFC 3464 Action `failed`, or a plain-text NDR).
 * - `delay`: nothing failed, at least one recipient is only delayed (Action `delayed`).
 * - `complaint`: an ARF feedback report (RFC 5965) or a provider's complaint in its own format.
 * - `autoreply`: an auto-reply or out-of-office message (RFC 3834), not a bounce.
 * - `delivered`: a success DSN (Action `delivered`, `relayed`, `expanded`).
 * - `unknown`: none of the above could be read out of the message.
 */
export type ReportKind = 'bounce' | 'delay' | 'complaint' | 'autoreply' | 'delivered' | 'unknown';

/**
 * Which reader recognised the message: `rfc3464`, `rfc6533` (internationalised DSN), `arf`,
 * `complaint` (a provider's complaint without ARF), `unsubscribe`, `autoreply`, `amazonses` (SES
 * JSON notification), an NDR family id from config/ndr-patterns.json (`exim`, `qmail`,
 * `sendmail`, ...), `generic` (a bounce in no known wording) or `none`.
 */
export type ReportFormat = string;

export type ReportAction = 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';

export interface ReportRecipient {
  /** Final-Recipient (or the address the NDR names), without its address type; null when none. */
  recipient: string | null;
  originalRecipient: string | null;
  action: ReportAction | null;
  /** The enhanced status code as the report gives it (`5.1.1`); null when it gives none. */
  status: string | null;
  /** Diagnostic-Code as written (`smtp; 550 5.1.1 ...`), or the reason text of a plain-text NDR. */
  diagnosticCode: string | null;
  remoteMta: string | null;
  lastAttemptDate: string | null;
  willRetryUntil: string | null;
  /** From `classifyReply`; null for recipients that did not fail (complaints, delivered, ...). */
  severity: Severity | null;
  type: BounceType | null;
  category: Category | null;
  /**
   * The SMTP command the failing reply answered, when the report says (`rcpt`: "in reply to RCPT
   * TO command"; `data`: "after end of data"; ...). Present only when the report names it.
   */
  stage?: SmtpStage;
}

export interface ReturnedMessage {
  /** Message-ID of the returned original, without angle brackets. */
  messageId: string | null;
  /** Value of the campaign header (options.campaignHeader) in the returned original. */
  campaignId: string | null;
  returnPath: string | null;
  to: string | null;
}

export interface ParsedReport {
  kind: ReportKind;
  format: ReportFormat;
  recipients: ReportRecipient[];
  original: ReturnedMessage;
  /** ARF Feedback-Type (`abuse`, `fraud`, `opt-out`, ...), for complaints only. */
  feedbackType?: string;
  /** Why nothing could be read (empty input, broken MIME, ...); the parser never throws. */
  error?: string;
}

export interface ParseOptions {
  /** Header that carries the campaign id in the original message; default `X-Campaign-ID`. */
  campaignHeader?: string;
}

/** One recipient as `rebound parse` prints it. */
export interface ParseOutputRecipient {
  recipient: string | null;
  action: ReportAction | null;
  status: string | null;
  diagnosticCode: string | null;
  remoteMta: string | null;
  severity: Severity | null;
  type: BounceType | null;
  category: Category | null;
  /** The SMTP command the failing reply answered (`connection`, `mail`, `rcpt`, `data`); null when the report does not say. */
  stage: SmtpStage | null;
}

/** The public JSON object `rebound parse` prints for one message. */
export interface ParseOutput {
  kind: ReportKind;
  recipients: ParseOutputRecipient[];
}
