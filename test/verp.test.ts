import { describe, expect, it } from 'vitest';
import { readReturnPath, returnPathFor, type VerpSettings } from '../src/bounces/verp.js';

const settings: VerpSettings = { domain: 'bounces.example.com', prefix: 'bounces', secret: 'a-secret-of-enough-length', maxAgeDays: 30 };
const now = new Date(Date.UTC(2026, 10, 22, 12));

describe('signed VERP return path', () => {
  it('names the recipient row and reads back, case-insensitively, within the 64-octet local-part limit', () => {
    const address = returnPathFor(settings, 123_456_789, now);
    expect(address).toMatch(/^bounces\+[0-9a-z]+-[0-9a-z]+-[a-z2-7]{13}@bounces\.example\.com$/);
    expect(address.split('@')[0]!.length).toBeLessThanOrEqual(64);
    expect(returnPathFor(settings, Number.MAX_SAFE_INTEGER, now).split('@')[0]!.length).toBeLessThanOrEqual(64);
    expect(readReturnPath(settings, address, now)).toMatchObject({ valid: true, recipientId: 123_456_789 });
    expect(readReturnPath(settings, address.toUpperCase(), now)).toMatchObject({ valid: true, recipientId: 123_456_789 });
  });

  it('refuses a token for another recipient, another secret, a changed MAC, or another domain', () => {
    const address = returnPathFor(settings, 42, now);
    const [local, domain] = address.split('@') as [string, string];
    const [prefixAndId, day, mac] = local.split('-') as [string, string, string];
    expect(readReturnPath(settings, `${prefixAndId.replace(/\+.*/, '+17')}-${day}-${mac}@${domain}`, now)).toEqual({ valid: false, reason: 'forged' });
    expect(readReturnPath({ ...settings, secret: 'another-secret-entirely' }, address, now)).toEqual({ valid: false, reason: 'forged' });
    expect(readReturnPath(settings, `${prefixAndId}-${day}-${mac.slice(0, -1)}${mac.endsWith('a') ? 'b' : 'a'}@${domain}`, now)).toEqual({ valid: false, reason: 'forged' });
    expect(readReturnPath(settings, address.replace('bounces.example.com', 'other.example'), now)).toEqual({ valid: false, reason: 'not-ours' });
    expect(readReturnPath(settings, 'bounces+just_words@bounces.example.com', now)).toEqual({ valid: false, reason: 'malformed' });
    expect(readReturnPath(settings, 'postmaster@bounces.example.com', now)).toEqual({ valid: false, reason: 'not-ours' });
  });

  it('expires tokens older than maxAgeDays', () => {
    const address = returnPathFor(settings, 7, new Date(now.getTime() - 31 * 86_400_000));
    expect(readReturnPath(settings, address, now)).toEqual({ valid: false, reason: 'expired' });
    const recent = returnPathFor(settings, 7, new Date(now.getTime() - 29 * 86_400_000));
    expect(readReturnPath(settings, recent, now)).toMatchObject({ valid: true });
  });
});
