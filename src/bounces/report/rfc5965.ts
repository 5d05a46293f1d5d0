/**
 * RFC 5965 Abuse Reporting Format: a message/feedback-report part says a recipient complained (or,
 * with other Feedback-Types, reported fraud, a virus, an authentication failure, an opt-out). It
 * is a complaint, never a bounce. RFC 5965 §3.2 names the complaining recipient in
 * Original-Rcpt-To (optional); without it, the returned message's To is the recipient.
 */
import { cleanAddress, isAddress, readFields } from './fields.js';

export interface FeedbackReport {
  feedbackType: string | null;
  recipients: string[];
}

export function readFeedbackReport(text: string): FeedbackReport {
  let feedbackType: string | null = null;
  const recipients: string[] = [];
  for (const field of readFields(text)) {
    if (field.name === 'feedback-type') feedbackType ??= field.value.toLowerCase().split(/[\s;]/)[0] || null;
    // RFC 6650 §3 (opt-out reports) and some providers name the address in Removal-Recipient.
    if (field.name === 'original-rcpt-to' || field.name === 'removal-recipient') {
      const address = cleanAddress(field.value);
      if (isAddress(address) && !recipients.includes(address)) recipients.push(address);
    }
  }
  return { feedbackType, recipients };
}
