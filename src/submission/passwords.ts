import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Passwords for submission AUTH are stored as `scrypt$N$r$p$salt$key` (base64 salt and key), so a
 * leaked config file does not leak passwords. scrypt ships with Node; N=2^15 costs ~60 ms per
 * check here, which an AUTH exchange can afford and a brute-force attack cannot.
 */
const HASH_PATTERN = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;
const DEFAULT_COST = { N: 32768, r: 8, p: 1 };
const KEY_LENGTH = 32;

function scryptAsync(password: string, salt: Buffer, keyLength: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLength, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

function memoryFor(cost: { N: number; r: number }): number {
  // scrypt needs 128 * N * r bytes; leave headroom over Node's 32 MiB default cap.
  return 256 * cost.N * cost.r;
}

export function isPasswordHash(value: string): boolean {
  return HASH_PATTERN.test(value);
}

export async function hashPassword(password: string, cost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, KEY_LENGTH, { ...cost, maxmem: memoryFor(cost) });
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const match = HASH_PATTERN.exec(hash);
  if (!match) return false;
  const [, n, r, p, salt, expectedKey] = match as unknown as [string, string, string, string, string, string];
  const cost = { N: Number(n), r: Number(r), p: Number(p) };
  const expected = Buffer.from(expectedKey, 'base64');
  const actual = await scryptAsync(password, Buffer.from(salt, 'base64'), expected.length, {
    ...cost,
    maxmem: memoryFor(cost),
  });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
