import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The signed VERP return path: every delivery is sent with MAIL FROM
 * `<prefix>+<token>@<domain>`, and the token names the recipient row the message was for, so a
 * delayed bounce that comes back to that address ties to exactly one recipient.
 *
 * token = <recipient id, base 36> "-" <issue day, base 36> "-" <MAC>
 *
 * The MAC is HMAC-SHA256(secret, "rebound-verp:v1:<id>:<day>") in lower-case base32, cut to 13
 * characters (65 bits): nobody without the secret can make a valid token for another recipient,
 * and guessing one takes ~2^64 tries, each a refused RCPT. The day (days since 1970) lets old
 * tokens expire. Everything is lower case because some MTAs lower-case the address they bounce
 * to. With the default prefix a local part is about 30 characters, well under RFC 5321's 64.
 */
const MAC_LENGTH = 13;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const DAY_MS = 86_400_000;

export interface VerpSettings {
  domain: string;
  prefix: string;
  secret: string;
  /** Tokens older than this many days are refused. */
  maxAgeDays: number;
}

function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** What a token is for: a token made for one purpose never passes as the other. */
export type TokenPurpose = 'verp' | 'unsubscribe';

function mac(secret: string, purpose: TokenPurpose, recipientId: number, day: number): string {
  return base32(createHmac('sha256', secret).update(`rebound-${purpose}:v1:${recipientId}:${day}`).digest()).slice(0, MAC_LENGTH);
}

/** `<id36>-<day36>-<mac>`: the part after "prefix+" in an address, or the last segment of a URL. */
export function signedToken(secret: string, purpose: TokenPurpose, recipientId: number, now: Date = new Date()): string {
  const day = Math.floor(now.getTime() / DAY_MS);
  return `${recipientId.toString(36)}-${day.toString(36)}-${mac(secret, purpose, recipientId, day)}`;
}

export type TokenCheck = { valid: true; recipientId: number; issuedAt: Date } | { valid: false; reason: 'malformed' | 'forged' | 'expired' };

export function readSignedToken(secret: string, purpose: TokenPurpose, token: string, maxAgeDays: number, now: Date = new Date()): TokenCheck {
  const match = /^([0-9a-z]{1,11})-([0-9a-z]{1,6})-([a-z2-7]+)$/.exec(token.toLowerCase());
  if (!match) return { valid: false, reason: 'malformed' };
  const [, id36, day36, given] = match as unknown as [string, string, string, string];
  const recipientId = parseInt(id36, 36);
  const day = parseInt(day36, 36);
  const expected = Buffer.from(mac(secret, purpose, recipientId, day));
  const actual = Buffer.from(given);
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) return { valid: false, reason: 'forged' };
  const ageDays = Math.floor(now.getTime() / DAY_MS) - day;
  if (ageDays > maxAgeDays || ageDays < -1) return { valid: false, reason: 'expired' };
  return { valid: true, recipientId, issuedAt: new Date(day * DAY_MS) };
}

export function returnPathFor(settings: VerpSettings, recipientId: number, now: Date = new Date()): string {
  return `${settings.prefix}+${signedToken(settings.secret, 'verp', recipientId, now)}@${settings.domain}`;
}

export type VerpCheck = TokenCheck | { valid: false; reason: 'not-ours' };

/** Reads a return-path address back: which recipient it names, if its MAC and age are good. */
export function readReturnPath(settings: VerpSettings, address: string, now: Date = new Date()): VerpCheck {
  const at = address.lastIndexOf('@');
  if (at < 0 || address.slice(at + 1).toLowerCase() !== settings.domain.toLowerCase()) return { valid: false, reason: 'not-ours' };
  const local = address.slice(0, at).toLowerCase();
  const prefix = `${settings.prefix.toLowerCase()}+`;
  if (!local.startsWith(prefix)) return { valid: false, reason: 'not-ours' };
  return readSignedToken(settings.secret, 'verp', local.slice(prefix.length), settings.maxAgeDays, now);
}
