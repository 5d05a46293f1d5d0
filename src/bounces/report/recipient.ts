/**
 * One recipient of a report, as read (facts), and as classified: the same classifier as an
 * immediate bounce, fed the report's Status and Diagnostic-Code (DESIGN.md: one classifier).
 */
import { classifyReply, defaultBounceRules, remoteHostName, type BounceRules, type SmtpStage } from '../classifier.js';
import { parseReply } from '../reply-text.js';
import { typeOfCategory, type Category, type Severity } from '../categories.js';
import type { ReportAction, ReportKind, ReportRecipient } from './types.js';

/** What a reader found for one recipient, before classification. */
export interface RecipientFacts extends Omit<ReportRecipient, 'severity' | 'type' | 'category' | 'stage'> {
  /** The SMTP command the failing reply answered, when the report says (stage.ts); null or absent: unknown. */
  stage?: SmtpStage | null;
  /** An SMTP reply code a plain-text reader found next to the reason; DSNs carry it in the text. */
  replyCode: number | null;
  /** True when `status` is the report's own Status field (RFC 3464 §2.3.4), not read from prose. */
  statusGiven: boolean;
  /** The report's wording says the failure behind it was temporary (an expiry after retries). */
  transient: boolean;
  /** What the report's family always means when it quotes no status (patterns `impliedStatus`). */
  impliedStatus: string | null;
  /** The DSN's Reporting-MTA (RFC 3464 §2.2.2): the host that wrote the report. */
  reportingMta?: string | null;
  /**
   * The host whose reply the diagnostic is, for provider rules: Remote-MTA, else the host the
   * diagnostic names, else the Reporting-MTA (it wrote the diagnostic itself). Set by the reader.
   */
  remoteHost?: string | null;
}

const FAILURE_ACTIONS = new Set<ReportAction | null>(['failed', 'delayed']);

/**
 * Only failed and delayed recipients are classified. A report that names no status at all still
 * says how final it is: Action `failed` means the MTA gave up (RFC 3464 §2.3.3), so the classifier
 * is told class 5 (`5.0.0`, "other undefined status", RFC 3463 §3.1); `delayed` is class 4.
 */
export function classifyRecipient(facts: RecipientFacts, rules: BounceRules = defaultBounceRules()): ReportRecipient {
  const text = facts.diagnosticCode ?? '';
  const quoted = text === '' ? null : parseReply(text);
  const status = facts.status ?? quoted?.enhancedCode ?? null;
  const base: ReportRecipient = {
    recipient: facts.recipient,
    originalRecipient: facts.originalRecipient,
    action: facts.action,
    status,
    diagnosticCode: facts.diagnosticCode,
    remoteMta: facts.remoteMta,
    lastAttemptDate: facts.lastAttemptDate,
    willRetryUntil: facts.willRetryUntil,
    severity: null,
    type: null,
    category: null,
  };
  const stage = facts.stage ?? null;
  if (stage !== null) base.stage = stage;
  if (!FAILURE_ACTIONS.has(facts.action)) return base;
  const code = facts.replyCode ?? quoted?.code ?? null;
  const fallback = code === null ? (facts.action === 'delayed' || facts.transient ? '4.0.0' : '5.0.0') : null;
  const remoteHost = facts.remoteHost ?? remoteHostName(facts.remoteMta);
  const classification = classifyReply({ code, enhancedCode: status ?? facts.impliedStatus ?? fallback, text, stage, remoteHost }, rules, quoted ?? undefined);
  // A delivery-status Status field is the reporting MTA's own verdict for this recipient: its
  // class decides severity even when the quoted reply says otherwise ("554 4.4.7 Message expired").
  const severity = (facts.statusGiven && facts.status !== null ? severityOfStatus(facts.status) : null) ?? classification.severity;
  const category = queueTimeCategory(facts.action, severity, classification.category, quoted === null || quoted.text === '');
  return {
    ...base,
    severity,
    type: category === classification.category ? classification.type : typeOfCategory(category),
    category,
  };
}

/** The categories that say only "the connection failed", not why the mail was refused. */
const CONNECTION_CATEGORIES = new Set<Category>(['no-answer-from-host', 'bad-connection']);

/**
 * What the report says about the message's time in the queue outranks the last attempt's
 * error when that error was only "nobody answered":
 * - Action `failed` with a transient outcome (a 4.x.x Status, or a 4xx reply) and a connection
 *   that was refused or timed out: the reporting MTA gave up retrying (Postfix after
 *   maximal_queue_lifetime: "connect to x[192.0.2.1]:25: Connection timed out", Status 4.4.1),
 *   so the message expired (RFC 3464 §2.3.3: failed is final).
 * - Action `delayed` (a delay notice) whose reason is only the connection (nobody answered, or
 *   the connection broke): the message waits out its queue lifetime, and that is the news
 *   (Sisimai files such warnings, "will be retried for N more day(s)", as expired).
 * - Action `delayed` with no diagnostic at all: a bare delay notice, whose only news is that the
 *   message is ageing in the queue.
 * Other categories (a block, a full mailbox, a DNS failure) are kept: they name a cause.
 */
function queueTimeCategory(action: ReportAction | null, severity: Severity, category: Category, noDiagnostic: boolean): Category {
  if (category === 'no-answer-from-host' && action === 'failed' && severity === 'temporary') return 'message-expired';
  if (action === 'delayed' && (noDiagnostic || CONNECTION_CATEGORIES.has(category))) return 'message-expired';
  return category;
}

function severityOfStatus(status: string): Severity | null {
  if (status.startsWith('5.')) return 'permanent';
  if (status.startsWith('4.')) return 'temporary';
  return null;
}

/** A report's kind from its recipients: one failure makes it a bounce, else a delay, else delivered. */
export function kindOfRecipients(recipients: readonly { action: ReportAction | null }[]): ReportKind | null {
  let delayed = false;
  let delivered = false;
  for (const { action } of recipients) {
    if (action === 'failed') return 'bounce';
    if (action === 'delayed') delayed = true;
    else if (action !== null) delivered = true;
  }
  if (delayed) return 'delay';
  if (delivered) return 'delivered';
  return null;
}
