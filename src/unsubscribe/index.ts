import type { Database, Statement } from 'better-sqlite3';
import { linkKeyOf, readTaggedToken, signedToken, tagOfToken, type TaggedTokenCheck } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import { SuppressionLists } from '../suppressions/lists.js';
import { writeTransaction } from '../store/write-lock.js';
import { RecipientWriter } from '../store/recipient-writer.js';

export interface UnsubscribeSettings {
  enabled: boolean;
  /** https base URL of the one-click endpoint (RFC 8058), or null. */
  url: string | null;
  /** mailto: local-part prefix at the return-path domain. */
  prefix: string;
  domain: string;
  secret: string;
  maxAgeDays: number;
  /**
   * This node's tag when the store is shared (as VerpSettings.nodeTag): its links then say whose
   * recipient they name, so another node that takes the request passes it on (src/unsubscribe/forward.ts).
   */
  nodeTag?: string | null;
}

export function unsubscribeSettings(config: Config, domain: string, secret: string, nodeTag: string | null = null): UnsubscribeSettings {
  return { enabled: config.unsubscribe.enabled, url: config.unsubscribe.url, prefix: config.unsubscribe.prefix, domain, secret, maxAgeDays: config.returnPath.maxAgeDays, nodeTag };
}

/**
 * The two headers Gmail and Yahoo require of bulk senders (RFC 2369, RFC 8058): a mailto: to a
 * signed address at the return-path domain and an https URL for the one-click POST, both naming
 * the recipient row. Added in front of the message at delivery, one recipient per transaction.
 */
export function listUnsubscribeHeaders(settings: UnsubscribeSettings, recipientId: number): Buffer {
  // A tagged link is signed with the node's link key, which the other nodes know: any node can check it.
  const tag = settings.nodeTag ?? null;
  const token = signedToken(tag === null ? settings.secret : linkKeyOf(settings.secret), 'unsubscribe', recipientId, new Date(), tag);
  const mailto = `<mailto:${settings.prefix}+${token}@${settings.domain}?subject=unsubscribe>`;
  const https = settings.url ? `, <${settings.url.replace(/\/$/, '')}/${token}>` : '';
  return Buffer.from(`List-Unsubscribe: ${mailto}${https}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n`, 'latin1');
}

/** True when the app already put its own List-Unsubscribe in the message: then it is left alone. */
export function hasListUnsubscribe(raw: Buffer): boolean {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end === -1 ? Math.min(raw.length, 65_536) : end).toString('latin1');
  return /(^|\n)list-unsubscribe:/i.test(head);
}

/** The token of a mailto: unsubscribe address (prefix+token@domain), or null when the address is not of that form. */
export function unsubscribeTokenOf(settings: UnsubscribeSettings, address: string): string | null {
  const at = address.lastIndexOf('@');
  if (at < 0 || address.slice(at + 1).toLowerCase() !== settings.domain.toLowerCase()) return null;
  const local = address.slice(0, at).toLowerCase();
  const prefix = `${settings.prefix.toLowerCase()}+`;
  return local.startsWith(prefix) ? local.slice(prefix.length) : null;
}

/** The mailto: unsubscribe address of a token: where a one-click request another node took is sent on as mail. */
export function unsubscribeAddressOf(settings: UnsubscribeSettings, token: string): string {
  return `${settings.prefix}+${token}@${settings.domain}`;
}

/** The other nodes' link keys by tag (src/shared/forwarded-reports.ts KnownNodes), when the store is shared. */
export type LinkKeys = (nodeTag: string) => string | undefined;

/**
 * Reads an unsubscribe token: this node's, checked; another node's, checked with that node's
 * link key when this node knows it (`other-node` then means a genuine link of that node, and a
 * bad MAC is `forged`), else `other-node` unchecked; or neither.
 */
export function readUnsubscribeToken(settings: UnsubscribeSettings, token: string, linkKeys: LinkKeys | null = null, now: Date = new Date()): TaggedTokenCheck {
  const ownTag = settings.nodeTag ?? null;
  const tag = tagOfToken(token);
  if (tag === null) return readTaggedToken(settings.secret, 'unsubscribe', token, settings.maxAgeDays, now, ownTag);
  if (tag === ownTag) return readTaggedToken(linkKeyOf(settings.secret), 'unsubscribe', token, settings.maxAgeDays, now, ownTag);
  const key = linkKeys?.(tag);
  if (key === undefined) return readTaggedToken(settings.secret, 'unsubscribe', token, settings.maxAgeDays, now, ownTag);
  const check = readTaggedToken(key, 'unsubscribe', token, settings.maxAgeDays, now, tag);
  return check.valid ? { valid: false, reason: 'other-node', nodeTag: tag, expired: false } : check;
}

export type UnsubscribeResult = { done: true; address: string; already: boolean } | { done: false; reason: string };

/**
 * Puts the recipient's address on the unsubscribes list with an `unsubscribed` event (which the
 * webhook outbox picks up). Doing it twice (a client that POSTs again) adds nothing.
 */
export class Unsubscriber {
  private readonly recipient: Statement;
  private readonly recipients: RecipientWriter;
  private readonly lists: SuppressionLists;
  private readonly run: (recipientId: number, via: string, alsoCommit?: () => void) => UnsubscribeResult;

  constructor(
    db: Database,
    private readonly settings: UnsubscribeSettings,
    /** The other nodes' link keys (store.shared.url), so their links are checked here too; null when not shared. */
    private readonly linkKeys: LinkKeys | null = null,
  ) {
    this.lists = new SuppressionLists(db);
    this.recipient = db.prepare(`SELECT r.id, r.message_id AS messageId, r.address, m.queue_id AS queueId FROM recipients r JOIN messages m ON m.id = r.message_id WHERE r.id = ?`);
    this.recipients = RecipientWriter.of(db);
    this.run = writeTransaction(db, (recipientId: number, via: string, alsoCommit?: () => void): UnsubscribeResult => {
      alsoCommit?.();
      const row = this.recipient.get(recipientId) as { id: number; messageId: number; address: string; queueId: string } | undefined;
      if (!row) return { done: false, reason: 'the message this link was for is no longer kept' };
      if (this.lists.entriesFor(row.address).some((entry) => entry.type === 'unsubscribes')) return { done: true, address: row.address, already: true };
      const at = new Date().toISOString();
      this.lists.add({ address: row.address, type: 'unsubscribes', source: 'unsubscribe', reason: `via ${via}`, queueId: row.queueId, at, actor: via });
      this.recipients.event({ event: 'unsubscribed', at, messageId: row.messageId, recipientId: row.id, detail: `unsubscribed via ${via}`, reason: via });
      return { done: true, address: row.address, already: false };
    });
  }

  /** Whether a link's token (the one-click URL's last segment, the mailto: local part's) is this node's and good, another node's, or neither. */
  check(token: string): TaggedTokenCheck {
    return readUnsubscribeToken(this.settings, token, this.linkKeys);
  }

  /** Unsubscribes the recipient; `alsoCommit` runs in the same transaction (a forwarded request's cursor). */
  byRecipient(recipientId: number, via: string, alsoCommit?: () => void): UnsubscribeResult {
    return this.run(recipientId, via, alsoCommit);
  }
}
