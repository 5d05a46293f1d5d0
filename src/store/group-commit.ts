import type { Database } from 'better-sqlite3';
import { withoutCommitSync } from './database.js';
import { writeTransaction } from './write-lock.js';
import { storeHealthOf } from './store-health.js';
import type { WalSync } from './wal-sync.js';

interface Pending<T> {
  item: T;
  resolve: () => void;
  reject: (error: Error) => void;
}

export interface GroupCommitOptions {
  /** Most items in one transaction. */
  maxBatch: number;
  /** Called after each commit that wrote something, once it is durable. */
  onCommit?: () => void;
  /**
   * 0 commits one event-loop turn after the first item (the 250 to a client waits on it); a few
   * ms lets writes that no client waits on (delivery outcomes) share more commits.
   */
  delayMs?: number;
  /**
   * Commit with synchronous=NORMAL and make the commit durable with an fdatasync of the WAL on
   * the thread pool (see WalSync): the same durability as FULL, without the event loop waiting
   * for the disk. null: commit with the connection's own synchronous setting.
   */
  walSync?: WalSync | null;
}

export interface GroupCommitStats {
  items: number;
  /** Transactions committed; under FULL without WalSync each is one WAL fsync, with it they share syncs. */
  commits: number;
}

/**
 * Writes items durably, many per transaction. A caller's promise resolves only after the
 * transaction holding its item has committed. Items that arrive while a commit runs wait for the
 * next one, so under load one fsync covers many items, and a lone item is committed alone one
 * event-loop turn after it arrived.
 */
export class GroupCommit<T> {
  readonly stats: GroupCommitStats = { items: 0, commits: 0 };
  private pending: Array<Pending<T>> = [];
  private scheduled = false;
  private closed = false;
  private readonly commitBatch: (batch: Array<Pending<T>>) => void;
  private readonly maxBatch: number;
  private readonly onCommit: () => void;
  private readonly delayMs: number;
  private readonly walSync: WalSync | null;

  constructor(
    private readonly db: Database,
    write: (item: T) => void,
    options: GroupCommitOptions,
  ) {
    this.maxBatch = options.maxBatch;
    this.onCommit = options.onCommit ?? (() => undefined);
    this.delayMs = options.delayMs ?? 0;
    this.walSync = options.walSync ?? null;
    this.commitBatch = writeTransaction(db, (batch: Array<Pending<T>>) => {
      for (const { item } of batch) write(item);
    });
  }

  /** Resolves once the item is committed. */
  add(item: T): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the store is closed'));
    return new Promise((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate, not nextTick: lets the sockets that are already readable add their
        // items to this batch first.
        if (this.delayMs > 0) setTimeout(() => this.flush(), this.delayMs);
        else setImmediate(() => this.flush());
      }
    });
  }

  /** Commits whatever is waiting now. */
  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const health = storeHealthOf(this.db);
    try {
      // A file deleted or replaced under the connection would take the commit and lose it.
      health?.assertWritable();
    } catch (error) {
      for (const item of this.pending.splice(0)) item.reject(error as Error);
      return;
    }
    // WalSync is used only under FULL (see relay.ts), which is what is set back.
    const committed = this.walSync ? withoutCommitSync(this.db, 'FULL', () => this.commitPending()) : this.commitPending();
    if (committed.length === 0) return;
    if (!this.walSync) {
      health?.recordWriteSuccess();
      this.settle(committed);
      return;
    }
    this.walSync.sync().then(
      () => {
        health?.recordWriteSuccess();
        this.settle(committed);
      },
      (error: Error) => {
        // Committed but maybe not on disk: the caller must not report it as stored.
        const failure = new Error(`the store could not sync its write-ahead log: ${error.message}`);
        health?.recordWriteFailure(failure);
        for (const item of committed) item.reject(failure);
      },
    );
  }

  /** Every pending item, in transactions of at most maxBatch; returns the ones committed. */
  private commitPending(): Array<Pending<T>> {
    const committed: Array<Pending<T>> = [];
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxBatch);
      if (this.tryCommit(batch)) {
        committed.push(...batch);
        continue;
      }
      // One item that cannot be written (a constraint, a broken row) must not fail the rest of
      // its batch: commit each alone, and reject only the ones that fail.
      if (batch.length > 1) for (const item of batch) if (this.tryCommit([item])) committed.push(item);
    }
    return committed;
  }

  /** Commits what is waiting and refuses anything after. */
  close(): void {
    this.flush();
    this.closed = true;
  }

  private tryCommit(batch: Array<Pending<T>>): boolean {
    try {
      this.commitBatch(batch);
    } catch (error) {
      if (isStoreFailure(error)) storeHealthOf(this.db)?.recordWriteFailure(error as Error);
      if (batch.length === 1) batch[0]?.reject(error as Error);
      return false;
    }
    this.stats.commits++;
    this.stats.items += batch.length;
    return true;
  }

  private settle(committed: Array<Pending<T>>): void {
    for (const item of committed) item.resolve();
    this.onCommit();
  }
}

/** SQLite errors about the file or the disk, not about one row: the store as a whole is failing. */
function isStoreFailure(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^SQLITE_(IOERR|FULL|CANTOPEN|READONLY|CORRUPT|NOTADB)/.test(code);
}
