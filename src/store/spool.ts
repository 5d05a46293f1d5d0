import type { Database, Statement } from 'better-sqlite3';
import { GroupCommit } from './group-commit.js';
import { RecipientWriter } from './recipient-writer.js';
import { recentContentOf, type RecentContent } from './recent-content.js';
import { storeHealthOf, type StoreProblem } from './store-health.js';
import type { WalSync } from './wal-sync.js';

/** One accepted message, ready to be committed with its recipients. */
export interface SpoolMessage {
  queueId: string;
  receivedAt: Date;
  mailFrom: string;
  /** Normalised recipient addresses (see address.ts), each with its domain. */
  recipients: Array<{ address: string; domain: string }>;
  clientIp: string;
  clientHelo: string | null;
  authUser: string | null;
  protocol: string;
  messageIdHeader: string | null;
  fromDomain: string | null;
  subject: string | null;
  campaignId: string | null;
  /** X-Mailgun-Tag values as checked at submission (see submission/sender-controls.ts); [] for none. */
  tags: readonly string[];
  /** X-Mailgun-Variables as one JSON object's text; null for none. */
  variables: string | null;
  receivedHeader: string;
  raw: Buffer;
}

/** What the submission server needs of the spool, wherever its commits run (see delivery/stage-on-thread.ts). */
export interface MessageSpool {
  /** Resolves once the message and all its recipients are committed and synced. */
  enqueue(message: SpoolMessage): Promise<void>;
  /** Why mail cannot be stored now (see StoreHealth), null when it can. */
  storeProblem(): StoreProblem | null;
  /** Commits what is waiting and refuses anything after. */
  close(): void;
  readonly stats: { messages: number; commits: number };
}

/**
 * The durable queue's way in: a message, its recipients (status queued, due now) and their
 * `accepted` events, committed together. The submission server answers 250 only after
 * `enqueue` resolves. Messages that arrive together share a commit (see GroupCommit).
 */
export class Spool implements MessageSpool {
  private readonly insertMessage: Statement;
  private readonly recipients: RecipientWriter;
  private readonly insertTag: Statement;
  private readonly commits: GroupCommit<SpoolMessage>;
  private readonly committedListeners: Array<() => void> = [];
  /** Row id each message got in the transaction that committed it (a failed batch is written again). */
  private readonly rowOf = new WeakMap<SpoolMessage, number>();
  private readonly recent: RecentContent;

  /**
   * walSync: make commits durable off the event loop (see GroupCommit). keepRecentContent: hand
   * each committed body to delivery from memory (false when nothing delivers on this connection).
   */
  constructor(
    private readonly db: Database,
    maxBatch = 256,
    walSync: WalSync | null = null,
    private readonly keepRecentContent = true,
  ) {
    this.insertMessage = db.prepare(`
      INSERT INTO messages (queue_id, received_at, mail_from, client_ip, client_helo, auth_user, protocol,
                            size, message_id_header, from_domain, subject, campaign_id, variables, received_header, raw)
      VALUES (@queueId, @receivedAt, @mailFrom, @clientIp, @clientHelo, @authUser, @protocol,
              @size, @messageIdHeader, @fromDomain, @subject, @campaignId, @variables, @receivedHeader, @raw)`);
    this.insertTag = db.prepare('INSERT INTO message_tags (message_id, tag) VALUES (?, ?)');
    this.recipients = RecipientWriter.of(db);
    this.recent = recentContentOf(db);
    this.commits = new GroupCommit(db, (message) => this.write(message), {
      maxBatch,
      walSync,
      onCommit: () => {
        for (const listener of this.committedListeners) listener();
      },
    });
  }

  get stats(): { messages: number; commits: number } {
    return { messages: this.commits.stats.items, commits: this.commits.stats.commits };
  }

  /** Resolves once the message and all its recipients are committed. */
  enqueue(message: SpoolMessage): Promise<void> {
    // Resolved before the commit listeners run (they only schedule the scheduler's claim), so
    // delivery finds the body here rather than reading it back from the store.
    return this.commits.add(message).then(() => {
      const row = this.rowOf.get(message);
      if (row !== undefined && this.keepRecentContent) this.recent.add(row, message.receivedHeader, message.raw, message.recipients.length);
    });
  }

  /** Why mail cannot be stored now (see StoreHealth), null when it can. */
  storeProblem(): StoreProblem | null {
    return storeHealthOf(this.db)?.problem() ?? null;
  }

  /** Called after each commit that added mail: the delivery scheduler wakes up on it. */
  onCommitted(listener: () => void): void {
    this.committedListeners.push(listener);
  }

  /** Commits what is waiting and refuses anything after. */
  close(): void {
    this.commits.close();
  }

  private write(message: SpoolMessage): void {
    const at = message.receivedAt.toISOString();
    const { lastInsertRowid: messageRow } = this.insertMessage.run({
      queueId: message.queueId,
      receivedAt: at,
      mailFrom: message.mailFrom,
      clientIp: message.clientIp,
      clientHelo: message.clientHelo,
      authUser: message.authUser,
      protocol: message.protocol,
      size: message.raw.length,
      messageIdHeader: message.messageIdHeader,
      fromDomain: message.fromDomain,
      subject: message.subject,
      campaignId: message.campaignId,
      variables: message.variables,
      receivedHeader: message.receivedHeader,
      raw: message.raw,
    });
    this.rowOf.set(message, Number(messageRow));
    // Most mail has no tags: no statement runs for it.
    for (const tag of message.tags) this.insertTag.run(messageRow, tag);
    for (const recipient of message.recipients) this.recipients.addAccepted(messageRow, recipient.address, recipient.domain, at);
  }
}
