import type { Database } from 'better-sqlite3';

interface Entry {
  receivedHeader: string;
  raw: Buffer;
  /** Recipients not yet handed to a delivery batch. */
  unsent: number;
}

/**
 * Bodies of messages just committed, kept in memory until their recipients have been handed to
 * delivery, so a message that goes out at once is not read back from SQLite (measured: the blob
 * read was the delivery stage's largest cost of its own, ~30 us per 5 KB message). Only committed
 * messages enter (their row id is final), and messages are never changed while they have
 * recipients to send, so an entry always matches the store. Bounded in bytes: past the budget,
 * the oldest entries are dropped and delivery reads those from the store, as it does for retries.
 */
export class RecentContent {
  private readonly entries = new Map<number, Entry>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** A committed message and how many recipients it has. */
  add(messageId: number, receivedHeader: string, raw: Buffer, recipients: number): void {
    const size = raw.length + receivedHeader.length;
    if (size > this.maxBytes) return;
    this.remove(messageId);
    this.entries.set(messageId, { receivedHeader, raw, unsent: recipients });
    this.bytes += size;
    for (const [oldest] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.remove(oldest);
    }
  }

  /**
   * The message's content for a batch of `recipients` of its recipients, or null when not kept;
   * dropped once every recipient has had its batch (retries read the store).
   */
  take(messageId: number, recipients: number): { receivedHeader: string; raw: Buffer } | null {
    const entry = this.entries.get(messageId);
    if (!entry) return null;
    entry.unsent -= recipients;
    if (entry.unsent <= 0) this.remove(messageId);
    return entry;
  }

  get size(): number {
    return this.entries.size;
  }

  private remove(messageId: number): void {
    const entry = this.entries.get(messageId);
    if (!entry) return;
    this.entries.delete(messageId);
    this.bytes -= entry.raw.length + entry.receivedHeader.length;
  }
}

/** 32 MiB: a few seconds of backlog at the bench's rates (5 KB messages, ~1,000/s). */
const RECENT_CONTENT_BYTES = 32 * 1024 * 1024;

const contentOfConnection = new WeakMap<Database, RecentContent>();

/** The recent-content cache shared by the spool and delivery on one store connection. */
export function recentContentOf(db: Database): RecentContent {
  let recent = contentOfConnection.get(db);
  if (!recent) {
    recent = new RecentContent(RECENT_CONTENT_BYTES);
    contentOfConnection.set(db, recent);
  }
  return recent;
}
