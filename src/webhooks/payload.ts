import { createHash } from 'node:crypto';
import { firstFieldValues } from '../header-fields.js';
import libmime from 'libmime';
import type { WebhookSignature } from './signature.js';
import type { WebhookEventRow } from './store.js';

/** Our event names, as webhooks.endpoints[].events lists them. */
export const WEBHOOK_EVENTS = ['delivered', 'temporary_fail', 'permanent_fail', 'complained', 'unsubscribed'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export interface DeliveryStatusData {
  code: number | null;
  'enhanced-code': string;
  /** What the remote side said (the SMTP reply or the DSN's status and diagnostic), without the reply code. */
  message: string;
  /** What Rebound (suppressed, expired) or an operator (a bounce from the queue) decided, in words; '' when the remote side decided. */
  description: string;
  'attempt-no': number | null;
  'bounce-type': string | null;
  category: string | null;
  'mx-host': string | null;
}

/** Mailgun's `event-data`, plus a `rebound` object with our own names for the same facts. */
export interface EventData {
  id: string;
  event: 'delivered' | 'failed' | 'complained' | 'unsubscribed';
  severity?: 'temporary' | 'permanent';
  reason?: string;
  'log-level': 'info' | 'warn' | 'error';
  timestamp: number;
  recipient: string | null;
  'recipient-domain': string | null;
  envelope: { sender: string; targets: string | null; transport: 'smtp'; 'sending-ip': string | null };
  message: {
    headers: { 'message-id': string | null; from: string | null; to: string | null; subject: string | null };
    attachments: never[];
    size: number;
  };
  campaigns: Array<{ id: string; name: string }>;
  tags: string[];
  /** X-Mailgun-Variables as submitted (submission/sender-controls.ts). */
  'user-variables': Record<string, unknown>;
  'delivery-status'?: DeliveryStatusData;
  flags: { 'is-delayed-bounce': boolean; 'is-authenticated': boolean; 'is-routed': false; 'is-test-mode': false; 'is-system-test': false };
  rebound: { 'queue-id': string; event: string; reason: string | null; source: string | null; 'event-row': number };
}

export interface WebhookPayload {
  signature: WebhookSignature;
  'event-data': EventData;
}

/** Mailgun's codes for mail it drops because of a list, used when no SMTP reply was involved. */
const SUPPRESSION_CODES: Record<string, number> = { 'suppress-bounce': 605, 'suppress-unsubscribe': 606, 'suppress-complaint': 607 };

/**
 * The failure's Mailgun `reason`. Our permanent_fail reasons: bounced (the MX, now or later in a
 * DSN, refused) and blocked (the same, for the sender or the message; `rebound.reason` keeps the
 * difference, as Mailgun has no word for it) → "bounce"; expired (retries ran out, or the message aged out before a try) →
 * "old"; suppressed (the address is on a list) → "suppress-bounce" | "suppress-complaint" |
 * "suppress-unsubscribe" by the list named in the event. Every temporary failure → "generic", and
 * so is an operator's bounce (source operator): it says nothing about the address, and a receiver
 * that suppresses on "bounce" must not suppress for it.
 */
export function mailgunReason(event: string, reason: string | null, detail: string | null, source: string | null = null): string | undefined {
  if (event === 'temporary_fail') return 'generic';
  if (event !== 'permanent_fail') return undefined;
  if (source === 'operator') return 'generic';
  switch (reason) {
    case 'expired':
      return 'old';
    case 'suppressed': {
      const list = /\bon the (bounces|complaints|unsubscribes) suppression list/.exec(detail ?? '')?.[1];
      return list === 'complaints' ? 'suppress-complaint' : list === 'unsubscribes' ? 'suppress-unsubscribe' : 'suppress-bounce';
    }
    default:
      return 'bounce';
  }
}

/**
 * The event's id in the payload: the same on every try and for every endpoint, so a receiver
 * can drop repeats (delivery is at least once). Derived from the message's queue id (random, so
 * unique across stores) and the event row; 22 URL-safe characters like Mailgun's.
 */
export function webhookEventId(queueId: string, eventRow: number): string {
  return createHash('sha256').update(`rebound-event:${queueId}:${eventRow}`).digest('base64url').slice(0, 22);
}

export function buildEventData(row: WebhookEventRow): EventData {
  const failed = row.event === 'temporary_fail' || row.event === 'permanent_fail';
  const event: EventData['event'] = failed ? 'failed' : (row.event as 'delivered' | 'complained' | 'unsubscribed');
  const severity = row.event === 'temporary_fail' ? 'temporary' : row.event === 'permanent_fail' ? 'permanent' : undefined;
  const reason = mailgunReason(row.event, row.reason, row.detail, row.source);
  const headers = readHeaders(row.head, ['from', 'to']);
  const data: EventData = {
    id: webhookEventId(row.queueId, row.eventId),
    event,
    ...(severity ? { severity } : {}),
    ...(reason ? { reason } : {}),
    'log-level': severity === 'permanent' ? 'error' : severity === 'temporary' || event === 'complained' ? 'warn' : 'info',
    timestamp: Date.parse(row.at) / 1000,
    recipient: row.address,
    'recipient-domain': row.domain,
    envelope: { sender: row.mailFrom, targets: row.address, transport: 'smtp', 'sending-ip': row.localIp },
    message: {
      headers: {
        'message-id': row.messageIdHeader,
        from: headers.get('from') ?? null,
        to: headers.get('to') ?? null,
        subject: row.subject,
      },
      attachments: [],
      size: row.size,
    },
    campaigns: row.campaignId ? [{ id: row.campaignId, name: row.campaignId }] : [],
    tags: JSON.parse(row.tags) as string[],
    'user-variables': row.variables === null ? {} : (JSON.parse(row.variables) as Record<string, unknown>),
    ...(row.event === 'delivered' || failed ? { 'delivery-status': deliveryStatus(row, reason) } : {}),
    flags: {
      'is-delayed-bounce': failed && row.source === 'delayed',
      'is-authenticated': row.authUser !== null,
      'is-routed': false,
      'is-test-mode': false,
      'is-system-test': false,
    },
    rebound: { 'queue-id': row.queueId, event: row.event, reason: row.reason, source: row.source, 'event-row': row.eventId },
  };
  return data;
}

function deliveryStatus(row: WebhookEventRow, reason: string | undefined): DeliveryStatusData {
  const detail = row.detail ?? '';
  const reply = /^([2-5]\d\d)(?:[ -]+|$)(?:([245]\.\d{1,3}\.\d{1,3})\b)?/.exec(detail);
  // Rebound's own decisions, and an operator's, carry no reply from anyone: their words go in `description`.
  const local = row.reason === 'suppressed' || row.reason === 'expired' || row.source === 'operator';
  let code = row.code ?? (reply ? Number(reply[1]) : null);
  if (code === null && reason && SUPPRESSION_CODES[reason]) code = SUPPRESSION_CODES[reason] ?? null;
  return {
    code,
    'enhanced-code': row.enhancedCode ?? reply?.[2] ?? '',
    message: local ? '' : reply && row.source !== 'delayed' ? detail.slice(reply[1]?.length ?? 0).trim() : detail,
    description: local ? detail : '',
    'attempt-no': row.attemptNo,
    'bounce-type': row.bounceType,
    category: row.category,
    'mx-host': row.mxHost,
  };
}

/** The first occurrence of each wanted header field, unfolded and with encoded-words decoded. */
export function readHeaders(head: Buffer | null, names: readonly string[]): Map<string, string> {
  if (!head || head.length === 0) return new Map();
  const fields = firstFieldValues(head.toString('utf8'), new Set(names.map((name) => name.toLowerCase())));
  return new Map([...fields].map(([name, value]) => [name, decodeWords(value)]));
}

function decodeWords(value: string): string {
  try {
    return libmime.decodeWords(value);
  } catch {
    return value;
  }
}
