import { describe, expect, it } from 'vitest';
import { nodeTagOf, readReturnPath, readSignedToken, returnPathFor, signedToken, type VerpSettings } from '../src/bounces/verp.js';

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

describe('node-tagged return path (store.shared.url)', () => {
  const tagA = nodeTagOf('node-a');
  const tagB = nodeTagOf('node-b');
  const nodeA: VerpSettings = { ...settings, nodeTag: tagA };
  const nodeB: VerpSettings = { ...settings, secret: 'node-b-has-its-own-secret', nodeTag: tagB };

  it('derives a short lower-case base32 tag per node name', () => {
    expect(tagA).toMatch(/^[a-z2-7]{6}$/);
    expect(nodeTagOf('node-a')).toBe(tagA);
    expect(tagB).not.toBe(tagA);
  });

  it('carries the tag under the MAC, reads back on its own node, and stays well under 64 octets', () => {
    const address = returnPathFor(nodeA, 42, now);
    expect(address).toMatch(new RegExp(`^bounces\\+16-[0-9a-z]+-${tagA}-[a-z2-7]{13}@bounces\\.example\\.com$`));
    expect(returnPathFor(nodeA, Number.MAX_SAFE_INTEGER, now).split('@')[0]!.length).toBeLessThanOrEqual(50);
    expect(readReturnPath(nodeA, address, now)).toMatchObject({ valid: true, recipientId: 42 });
    expect(readReturnPath(nodeA, address.toUpperCase(), now)).toMatchObject({ valid: true, recipientId: 42 });
  });

  it("names another node's tag without checking it, and refuses a token moved to another tag or with the tag dropped", () => {
    const address = returnPathFor(nodeA, 42, now);
    expect(readReturnPath(nodeB, address, now)).toEqual({ valid: false, reason: 'other-node', nodeTag: tagA, expired: false });
    // Same secret, tag swapped: the MAC covers the tag.
    const moved = address.replace(`-${tagA}-`, `-${tagB}-`);
    expect(readReturnPath({ ...nodeA, nodeTag: tagB }, moved, now)).toEqual({ valid: false, reason: 'forged' });
    // Tag removed (turned into a v1 token): v1 and v2 MACs differ.
    expect(readReturnPath(nodeA, address.replace(`-${tagA}-`, '-'), now)).toEqual({ valid: false, reason: 'forged' });
    // A v2 token read by a node without a tag (not shared) is not its own.
    expect(readReturnPath(settings, address, now)).toEqual({ valid: false, reason: 'other-node', nodeTag: tagA, expired: false });
  });

  it("says when another node's token is past maxAgeDays by its (unsigned) day", () => {
    const old = returnPathFor(nodeA, 42, new Date(now.getTime() - (nodeA.maxAgeDays + 1) * 86_400_000));
    expect(readReturnPath(nodeB, old, now)).toEqual({ valid: false, reason: 'other-node', nodeTag: tagA, expired: true });
  });

  it('keeps validating untagged (v1) tokens from before the node joined the shared store', () => {
    const before = returnPathFor(settings, 7, now);
    expect(readReturnPath(nodeA, before, now)).toMatchObject({ valid: true, recipientId: 7 });
  });

  it('never takes a tagged token as an unsubscribe token', () => {
    const token = signedToken(settings.secret, 'unsubscribe', 9, now, tagA);
    expect(readSignedToken(settings.secret, 'unsubscribe', token, 30, now)).toEqual({ valid: false, reason: 'forged' });
  });
});
