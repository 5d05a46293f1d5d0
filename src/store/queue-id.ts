import { randomFillSync } from 'node:crypto';

// Crockford base32: no I, L, O or U, so an id read aloud or typed from a log is not misread.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** What newQueueId makes: 18 characters of the alphabet above (the length and letters an operator can check). */
export const QUEUE_ID_LENGTH = 18;
const QUEUE_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{18}$/;

/** True for a string newQueueId could have made (upper case, as queue ids are stored). */
export function isQueueId(value: string): boolean {
  return QUEUE_ID_PATTERN.test(value);
}

/**
 * A queue id is 18 characters: 10 for the millisecond clock (ids sort by arrival) and 8 random
 * (40 bits). Only ids made in the same millisecond can collide: at 4,000 messages/s that is about
 * once in 5,000 days, and a collision costs one 451 (the client retries), never a lost message.
 */
/** Random bytes drawn 4 KiB at a time: one randomFillSync call per 512 ids rather than per id. */
const randomPool = Buffer.alloc(4096);
let poolOffset = randomPool.length;

function eightRandomBytes(): Buffer {
  if (poolOffset + 8 > randomPool.length) {
    randomFillSync(randomPool);
    poolOffset = 0;
  }
  const bytes = randomPool.subarray(poolOffset, poolOffset + 8);
  poolOffset += 8;
  return bytes;
}

export function newQueueId(now: number = Date.now()): string {
  let time = '';
  let remaining = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[remaining % 32] + time;
    remaining = Math.floor(remaining / 32);
  }
  const random = eightRandomBytes();
  let suffix = '';
  for (const byte of random) suffix += ALPHABET[byte & 31];
  return time + suffix;
}
