import type { Database, Statement } from 'better-sqlite3';

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
  receivedHeader: string;
  raw: Buffer;
}

export interface SpoolStats {
  messages: number;
  /** Each commit is one WAL fsync under synchronous=FULL. */
  commits: number;
}

interface Pending {
  message: SpoolMessage;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * Writes accepted messages durably, several per transaction (group commit).
 *
 * A message's promise resolves only after the transaction holding it has committed, so the
 * submission server sends 250 only for mail that is on disk. Messages that arrive while a commit
 * is running wait for the next one: under load one fsync covers many messages, and an idle relay
 * commits each message alone, one event-loop turn after it arrived.
 */
export class Spool {
  readonly stats: SpoolStats = { messages: 0, commits: 0 };
  private pending: Pending[] = [];
  private scheduled = false;
  private closed = false;
  private readonly insertMessage: Statement;
  private readonly insertRecipient: Statement;
  private readonly insertEvent: Statement;
  private readonly commitBatch: (batch: Pending[]) => void;

  constructor(
    db: Database,
    private readonly maxBatch: number = 256,
  ) {
    this.insertMessage = db.prepare(`
      INSERT INTO messages (queue_id, received_at, mail_from, client_ip, client_helo, auth_user, protocol,
                            size, message_id_header, from_domain, subject, campaign_id, received_header, raw)
      VALUES (@queueId, @receivedAt, @mailFrom, @clientIp, @clientHelo, @authUser, @protocol,
              @size, @messageIdHeader, @fromDomain, @subject, @campaignId, @receivedHeader, @raw)`);
    this.insertRecipient = db.prepare(`
      INSERT INTO recipients (message_id, address, domain, status, next_attempt_at, updated_at)
      VALUES (?, ?, ?, 'queued', ?, ?)`);
    this.insertEvent = db.prepare(`
      INSERT INTO events (at, event, message_id, recipient_id) VALUES (?, 'accepted', ?, ?)`);
    this.commitBatch = db.transaction((batch: Pending[]) => {
      for (const { message } of batch) this.write(message);
    });
  }

  /** Resolves once the message and all its recipients are committed. */
  enqueue(message: SpoolMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the spool is closed'));
    return new Promise((resolve, reject) => {
      this.pending.push({ message, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate, not nextTick: lets the sockets that are already readable add their
        // messages to this batch first.
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits whatever is waiting now; used at shutdown. */
  flush(): void {
    this.scheduled = false;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxBatch);
      if (this.tryCommit(batch)) continue;
      // One message that cannot be written (a constraint, a broken row) must not cost the rest of
      // its batch their 250: commit each alone, and refuse only the ones that fail.
      if (batch.length > 1) for (const item of batch) this.tryCommit([item]);
    }
  }

  private tryCommit(batch: Pending[]): boolean {
    try {
      this.commitBatch(batch);
    } catch (error) {
      if (batch.length === 1) batch[0]?.reject(error as Error);
      return false;
    }
    this.stats.commits++;
    this.stats.messages += batch.length;
    for (const item of batch) item.resolve();
    return true;
  }

  /** Commits what is waiting and refuses anything after. */
  close(): void {
    this.flush();
    this.closed = true;
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
      receivedHeader: message.receivedHeader,
      raw: message.raw,
    });
    for (const recipient of message.recipients) {
      const { lastInsertRowid: recipientRow } = this.insertRecipient.run(messageRow, recipient.address, recipient.domain, at, at);
      this.insertEvent.run(at, messageRow, recipientRow);
    }
  }
}
