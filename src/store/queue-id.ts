import { randomBytes } from 'node:crypto';

// Crockford base32: no I, L, O or U, so an id read aloud or typed from a log is not misread.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * A queue id is 16 characters: 10 for the millisecond clock (ids sort by arrival) and 6 random
 * (30 bits, so ids made in the same millisecond collide about once in 10^9 pairs).
 */
export function newQueueId(now: number = Date.now()): string {
  let time = '';
  let remaining = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[remaining % 32] + time;
    remaining = Math.floor(remaining / 32);
  }
  const random = randomBytes(6);
  let suffix = '';
  for (const byte of random) suffix += ALPHABET[byte & 31];
  return time + suffix;
}
