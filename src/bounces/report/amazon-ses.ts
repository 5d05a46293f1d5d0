/**
 * Amazon SES notifications delivered by email (SNS → email subscription): a JSON object with
 * `notificationType` Bounce, Complaint or Delivery, per-recipient status and diagnostic code.
 * SNS folds long lines with a leading space, as a header would be folded.
 */
import { cleanAddress } from './fields.js';
import type { RecipientFacts } from './recipient.js';
import { emptyFacts, normalizeAction } from './rfc3464.js';
import { normalizeEnhancedCode } from '../reply-text.js';

export interface SesNotification {
  kind: 'bounce' | 'complaint' | 'delivered';
  recipients: RecipientFacts[];
  feedbackType: string | null;
  messageId: string | null;
}

const MARKER = '"notificationType"';

export function readSesNotification(text: string): SesNotification | null {
  if (!text.includes(MARKER)) return null;
  const start = text.indexOf('{');
  if (start === -1) return null;
  const unfolded = text.slice(start).replace(/\n /g, '');
  const end = unfolded.lastIndexOf('}');
  let data: unknown;
  try {
    data = JSON.parse(unfolded.slice(0, end + 1));
  } catch {
    return null;
  }
  // An SNS envelope carries the SES notification as a JSON string in Message.
  if (isRecord(data) && typeof data.Message === 'string') {
    try {
      data = JSON.parse(data.Message);
    } catch {
      return null;
    }
  }
  if (!isRecord(data)) return null;
  const type = String(data.notificationType ?? data.eventType ?? '').toLowerCase();
  const mail = isRecord(data.mail) ? data.mail : {};
  const messageId = typeof mail.messageId === 'string' ? mail.messageId : null;
  if (type === 'bounce' && isRecord(data.bounce)) {
    const bounce = data.bounce;
    // bounceType Transient: SES gave up on a soft failure; still a failure for this message.
    const recipients = list(bounce.bouncedRecipients).map((item) => {
      const facts = emptyFacts();
      facts.recipient = cleanAddress(str(item.emailAddress));
      facts.action = normalizeAction(str(item.action) ?? '') ?? 'failed';
      facts.status = normalizeEnhancedCode(str(item.status));
      facts.statusGiven = facts.status !== null;
      facts.diagnosticCode = str(item.diagnosticCode);
      return facts;
    });
    return { kind: 'bounce', recipients, feedbackType: null, messageId };
  }
  if (type === 'complaint' && isRecord(data.complaint)) {
    const complaint = data.complaint;
    const recipients = list(complaint.complainedRecipients).map((item) => {
      const facts = emptyFacts();
      facts.recipient = cleanAddress(str(item.emailAddress));
      return facts;
    });
    const feedbackType = str(complaint.complaintFeedbackType);
    return { kind: 'complaint', recipients, feedbackType: feedbackType?.toLowerCase() ?? null, messageId };
  }
  if (type === 'delivery' && isRecord(data.delivery)) {
    const delivery = data.delivery;
    const recipients = list(delivery.recipients).map((item) => {
      const facts = emptyFacts();
      facts.recipient = cleanAddress(str(item.emailAddress));
      facts.action = 'delivered';
      facts.diagnosticCode = str(delivery.smtpResponse);
      facts.status = normalizeEnhancedCode(facts.diagnosticCode);
      facts.remoteMta = str(delivery.remoteMtaIp);
      return facts;
    });
    return { kind: 'delivered', recipients, feedbackType: null, messageId };
  }
  return null;
}

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function list(value: unknown): Json[] {
  if (!Array.isArray(value)) return [];
  return value.map((item) => (isRecord(item) ? item : { emailAddress: item }));
}

function str(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}
