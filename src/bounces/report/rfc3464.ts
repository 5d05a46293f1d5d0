/**
 * RFC 3464 message/delivery-status and RFC 6533 message/global-delivery-status: one block of
 * per-message fields, then one block per recipient (§2.2, §2.3). Blocks are meant to be separated
 * by blank lines; MTAs that forget the blank line are common enough that a recipient also starts
 * at a second Final-Recipient (or Original-Recipient) in the same block.
 */
import { normalizeEnhancedCode } from '../reply-text.js';
import { cleanAddress, decodeXtext, readFields, splitTyped, type Field } from './fields.js';
import type { RecipientFacts } from './recipient.js';
import type { ReportAction } from './types.js';

const MAX_RECIPIENTS = 10_000;
/** Per-recipient fields (§2.3) that open a recipient block even when it names no recipient. */
const RECIPIENT_FIELDS = new Set(['action', 'status', 'diagnostic-code', 'remote-mta', 'x-actual-recipient']);

export function readDeliveryStatus(text: string): RecipientFacts[] {
  const recipients: RecipientFacts[] = [];
  let current: RecipientFacts | null = null;
  let seenFinal = false;
  let seenOriginal = false;
  let reportingMta: string | null = null;
  for (const field of readFields(text)) {
    const isFinal = field.name === 'final-recipient';
    const isOriginal = field.name === 'original-recipient';
    // A recipient field after a blank line opens the next block (§2.1); one that repeats within a
    // block opens the next recipient of an MTA that forgot the blank line.
    const opens =
      (isFinal && (seenFinal || (field.afterBlank && current !== null))) ||
      (isOriginal && (seenOriginal || (field.afterBlank && current !== null))) ||
      // Some MTAs (Amazon SES inbound) start a block with Action: it opens the next recipient
      // once the current one is complete.
      (field.afterBlank && RECIPIENT_FIELDS.has(field.name) && seenFinal && (current?.action ?? current?.status) != null);
    if (opens || (current === null && (isFinal || isOriginal || RECIPIENT_FIELDS.has(field.name)))) {
      if (recipients.length >= MAX_RECIPIENTS) break;
      current = emptyFacts();
      recipients.push(current);
      seenFinal = false;
      seenOriginal = false;
    }
    if (current === null) {
      // Per-message fields: Reporting-MTA (kept for provider rules), Arrival-Date, ...
      if (field.name === 'reporting-mta') reportingMta = cleanHost(splitTyped(field.value).value);
      continue;
    }
    applyField(current, field);
    if (isFinal) seenFinal = true;
    if (isOriginal) seenOriginal = true;
  }
  for (const recipient of recipients) {
    recipient.reportingMta = reportingMta;
    // RFC 3464 §2.3.3 makes Action required; when it is missing the Status class says it.
    recipient.action ??= actionOfStatus(recipient.status);
  }
  return recipients;
}

export function emptyFacts(): RecipientFacts {
  return {
    recipient: null,
    originalRecipient: null,
    action: null,
    status: null,
    diagnosticCode: null,
    remoteMta: null,
    lastAttemptDate: null,
    willRetryUntil: null,
    replyCode: null,
    statusGiven: false,
    transient: false,
    impliedStatus: null,
  };
}

function applyField(facts: RecipientFacts, field: Field): void {
  const value = field.value;
  switch (field.name) {
    case 'final-recipient':
      facts.recipient = cleanAddress(splitTyped(value).value);
      break;
    case 'original-recipient':
      facts.originalRecipient = cleanAddress(decodeXtext(splitTyped(value).value));
      break;
    case 'x-actual-recipient':
      // Postfix and Sendmail name the address after alias expansion here; Final-Recipient wins.
      facts.recipient ??= cleanAddress(splitTyped(value).value);
      break;
    case 'action':
      facts.action = normalizeAction(value);
      break;
    case 'status':
      facts.status = normalizeEnhancedCode(value);
      facts.statusGiven = facts.status !== null;
      break;
    case 'diagnostic-code':
      if (value !== '') facts.diagnosticCode = value;
      break;
    case 'remote-mta':
      facts.remoteMta = cleanHost(splitTyped(value).value);
      break;
    case 'last-attempt-date':
      facts.lastAttemptDate = value || null;
      break;
    case 'will-retry-until':
      facts.willRetryUntil = value || null;
      break;
    default:
      break;
  }
}

/** RFC 3464 §2.3.3 action values; a few MTAs write `failure` or add a comment. */
export function normalizeAction(value: string): ReportAction | null {
  const word = /^[\s(]*([a-z]+)/i.exec(value)?.[1]?.toLowerCase();
  switch (word) {
    case 'failed':
    case 'failure':
    case 'fail':
    case 'bounced':
    case 'rejected':
      return 'failed';
    case 'delayed':
    case 'delay':
    case 'deferred':
      return 'delayed';
    case 'delivered':
    case 'deliverable':
      return 'delivered';
    case 'relayed':
      return 'relayed';
    case 'expanded':
      return 'expanded';
    default:
      return null;
  }
}

export function actionOfStatus(status: string | null): ReportAction | null {
  switch (status?.[0]) {
    case '5':
      return 'failed';
    case '4':
      return 'delayed';
    case '2':
      return 'delivered';
    default:
      return null;
  }
}

function cleanHost(value: string): string | null {
  const host = value.replace(/^\[|\]$/g, '').trim();
  return host === '' ? null : host;
}
