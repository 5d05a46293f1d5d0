import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

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
 *
 * Nodes sharing one return-path domain (store.shared.url) tag their tokens (v2):
 * token = <id36> "-" <day36> "-" <node tag> "-" <MAC over "rebound-verp:v2:<tag>:<id>:<day>">
 * The tag (nodeTagOf: 6 base32 characters of a hash of store.shared.nodeName) says which node's
 * store the id is in, so the node the MX hands a report to can pass it on to the node that sent
 * the mail (src/shared/forwarded-reports.ts) instead of applying it to its own recipient of that
 * id. The tag is under the MAC: a token moved to another node's tag is forged. Untagged (v1)
 * tokens keep validating, so mail sent before a node joined the shared store still bounces
 * home. A tagged local part is at most 7 characters longer (about 46 with the default prefix).
 */
const MAC_LENGTH = 13;
const TAG_LENGTH = 6;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const DAY_MS = 86_400_000;

export interface VerpSettings {
  domain: string;
  prefix: string;
  secret: string;
  /** Tokens older than this many days are refused. */
  maxAgeDays: number;
  /**
   * This node's tag (nodeTagOf store.shared.nodeName) when the store is shared: new tokens carry
   * it. null: untagged tokens, as before the shared store.
   */
  nodeTag?: string | null;
}

/** A node's tag in its return-path tokens: 6 lower-case base32 characters of a hash of its name (30 bits). */
export function nodeTagOf(nodeName: string): string {
  return base32(createHash('sha256').update(`rebound-node:${nodeName}`).digest()).slice(0, TAG_LENGTH);
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

const linkKeys = new Map<string, string>();

/**
 * The key a node signs its tagged unsubscribe links with (store.shared.url), derived from its
 * return-path secret. It is published to the other nodes (rebound_nodes.link_key) so that any
 * node can check any node's links before passing a request on; being derived one way, it tells
 * nothing of the secret that signs return paths.
 */
export function linkKeyOf(secret: string): string {
  // Asked for every recipient's links: derived once per secret (a node has one).
  let key = linkKeys.get(secret);
  if (key === undefined) {
    key = createHmac('sha256', secret).update('rebound-unsubscribe-link-key:v1').digest('hex');
    linkKeys.set(secret, key);
  }
  return key;
}

/** The node tag a token carries, or null for an untagged (v1) or malformed one. */
export function tagOfToken(token: string): string | null {
  return /^[0-9a-z]{1,11}-[0-9a-z]{1,6}-([a-z2-7]{6})-[a-z2-7]+$/.exec(token.toLowerCase())?.[1] ?? null;
}

/** What a token is for: a token made for one purpose never passes as the other. */
export type TokenPurpose = 'verp' | 'unsubscribe';

function mac(secret: string, purpose: TokenPurpose, recipientId: number, day: number, tag: string | null): string {
  const signed = tag === null ? `rebound-${purpose}:v1:${recipientId}:${day}` : `rebound-${purpose}:v2:${tag}:${recipientId}:${day}`;
  return base32(createHmac('sha256', secret).update(signed).digest()).slice(0, MAC_LENGTH);
}

/**
 * `<id36>-<day36>-<mac>`, or `<id36>-<day36>-<tag>-<mac>` with a node tag: the part after
 * "prefix+" in an address, or the last segment of a URL.
 */
export function signedToken(secret: string, purpose: TokenPurpose, recipientId: number, now: Date = new Date(), tag: string | null = null): string {
  const day = Math.floor(now.getTime() / DAY_MS);
  const tagged = tag === null ? '' : `${tag}-`;
  return `${recipientId.toString(36)}-${day.toString(36)}-${tagged}${mac(secret, purpose, recipientId, day, tag)}`;
}

export type TokenCheck = { valid: true; recipientId: number; issuedAt: Date } | { valid: false; reason: 'malformed' | 'forged' | 'expired' };

/**
 * `other-node`: a well-formed token tagged for another node than `ownTag`; this node cannot check
 * its MAC (another secret) and its id is a row in that node's store. `expired`: its day (unsigned
 * here, so only a hint) is older than maxAgeDays; that node would refuse it.
 */
export type TaggedTokenCheck = TokenCheck | { valid: false; reason: 'other-node'; nodeTag: string; expired: boolean };

/** A token made without a node tag: another node's tagged token is then just not ours ('forged'). */
export function readSignedToken(secret: string, purpose: TokenPurpose, token: string, maxAgeDays: number, now: Date = new Date()): TokenCheck {
  const check = readTaggedToken(secret, purpose, token, maxAgeDays, now, null);
  return check.valid || check.reason !== 'other-node' ? check : { valid: false, reason: 'forged' };
}

/** A token of this node (tagged `ownTag`, or untagged), or another node's by its tag. */
export function readTaggedToken(secret: string, purpose: TokenPurpose, token: string, maxAgeDays: number, now: Date, ownTag: string | null): TaggedTokenCheck {
  const match = /^([0-9a-z]{1,11})-([0-9a-z]{1,6})-(?:([a-z2-7]{6})-)?([a-z2-7]+)$/.exec(token.toLowerCase());
  if (!match) return { valid: false, reason: 'malformed' };
  const [, id36, day36, tag, given] = match as unknown as [string, string, string, string | undefined, string];
  const recipientId = parseInt(id36, 36);
  const day = parseInt(day36, 36);
  const ageDays = Math.floor(now.getTime() / DAY_MS) - day;
  const expired = ageDays > maxAgeDays || ageDays < -1;
  if (tag !== undefined && tag !== ownTag) return { valid: false, reason: 'other-node', nodeTag: tag, expired };
  const expected = Buffer.from(mac(secret, purpose, recipientId, day, tag ?? null));
  const actual = Buffer.from(given);
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) return { valid: false, reason: 'forged' };
  if (expired) return { valid: false, reason: 'expired' };
  return { valid: true, recipientId, issuedAt: new Date(day * DAY_MS) };
}

export function returnPathFor(settings: VerpSettings, recipientId: number, now: Date = new Date()): string {
  return `${settings.prefix}+${signedToken(settings.secret, 'verp', recipientId, now, settings.nodeTag ?? null)}@${settings.domain}`;
}

export type VerpCheck = TaggedTokenCheck | { valid: false; reason: 'not-ours' };

/** Reads a return-path address back: which recipient it names, if its MAC and age are good. */
export function readReturnPath(settings: VerpSettings, address: string, now: Date = new Date()): VerpCheck {
  const at = address.lastIndexOf('@');
  if (at < 0 || address.slice(at + 1).toLowerCase() !== settings.domain.toLowerCase()) return { valid: false, reason: 'not-ours' };
  const local = address.slice(0, at).toLowerCase();
  const prefix = `${settings.prefix.toLowerCase()}+`;
  if (!local.startsWith(prefix)) return { valid: false, reason: 'not-ours' };
  return readTaggedToken(settings.secret, 'verp', local.slice(prefix.length), settings.maxAgeDays, now, settings.nodeTag ?? null);
}
