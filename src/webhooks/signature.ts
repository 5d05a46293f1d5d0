import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Mailgun's `signature` object: the receiver recomputes `signature` from the other two. */
export interface WebhookSignature {
  /** Unix seconds, as a string, when the try was signed. */
  timestamp: string;
  /** 50 random hex characters, new for every try. */
  token: string;
  /** Hex HMAC-SHA256 of timestamp + token, keyed with the endpoint's secret. */
  signature: string;
}

/** Signs one try: a fresh timestamp and token each time, as Mailgun does. */
export function signWebhook(secret: string, now: Date = new Date()): WebhookSignature {
  const timestamp = String(Math.floor(now.getTime() / 1000));
  const token = randomBytes(25).toString('hex');
  return { timestamp, token, signature: hmacHex(secret, timestamp, token) };
}

/**
 * The receiver's check (what docs/webhooks.md shows): the HMAC matches, and the timestamp is
 * recent, so a captured request cannot be replayed later. A receiver that also remembers the
 * tokens it has seen refuses replays within the window too.
 */
export function verifyWebhookSignature(secret: string, signed: WebhookSignature, maxAgeSeconds = 300, now: Date = new Date()): boolean {
  if (typeof signed?.timestamp !== 'string' || typeof signed.token !== 'string' || typeof signed.signature !== 'string') return false;
  const age = Math.abs(now.getTime() / 1000 - Number(signed.timestamp));
  if (!Number.isFinite(age) || age > maxAgeSeconds) return false;
  const expected = Buffer.from(hmacHex(secret, signed.timestamp, signed.token), 'hex');
  const given = Buffer.from(signed.signature, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function hmacHex(secret: string, timestamp: string, token: string): string {
  return createHmac('sha256', secret).update(timestamp + token).digest('hex');
}
