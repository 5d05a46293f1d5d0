import type { Database } from 'better-sqlite3';

/** Past this, a holder is presumed gone (a thread ended mid-transaction) and the lock is taken. */
const STALE_AFTER_MS = 5_000;

/**
 * One writer at a time among the relay's own threads, handed over without sleeping. The main
 * thread and the delivery stage's thread (delivery.stageThread) each write the store through
 * their own connection. SQLite serializes them with its write lock, but a writer that finds it
 * taken polls: its busy handler sleeps 1 ms, then 2, then 5, blocking that thread's event loop
 * far longer than the other's transaction (about 0.1 ms) held the lock. Measured at 10 clients
 * with one message per connection: the main thread 90% busy, of which a quarter asleep there.
 * Here the waiter blocks on a shared cell (Atomics.wait) and is woken the moment the holder
 * finishes.
 *
 * The lock is advisory: SQLite's own lock still guards the file (and serializes `rebound`
 * commands in other processes), so a holder that vanished without releasing (a thread ended
 * mid-transaction) only costs one wait of staleAfterMs.
 */
export class WriteLock {
  private readonly cell: Int32Array;
  /** This thread's nesting: a transaction inside a transaction (a savepoint) already holds it. */
  private depth = 0;

  constructor(
    readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT),
    private readonly staleAfterMs = STALE_AFTER_MS,
  ) {
    this.cell = new Int32Array(buffer);
  }

  hold<T>(work: () => T): T {
    if (this.depth > 0) return this.nested(work);
    this.acquire();
    this.depth = 1;
    try {
      return work();
    } finally {
      this.depth = 0;
      Atomics.store(this.cell, 0, 0);
      Atomics.notify(this.cell, 0, 1);
    }
  }

  private nested<T>(work: () => T): T {
    this.depth++;
    try {
      return work();
    } finally {
      this.depth--;
    }
  }

  private acquire(): void {
    const deadline = Date.now() + this.staleAfterMs;
    while (Atomics.compareExchange(this.cell, 0, 0, 1) !== 0) {
      const left = deadline - Date.now();
      if (left <= 0) {
        Atomics.store(this.cell, 0, 1);
        return;
      }
      Atomics.wait(this.cell, 0, 1, left);
    }
  }
}

const locks = new WeakMap<Database, WriteLock>();

/** Every write transaction on `db` (see writeTransaction) holds `lock`. */
export function useWriteLock(db: Database, lock: WriteLock): void {
  locks.set(db, lock);
}

export function writeLockOf(db: Database): WriteLock | undefined {
  return locks.get(db);
}

/**
 * A write transaction that takes SQLite's write lock when it begins (BEGIN IMMEDIATE). The store
 * has more than one writer: the main thread, the delivery stage's thread (delivery.stageThread)
 * and `rebound` commands in other processes. A transaction that reads first and writes later
 * (BEGIN DEFERRED, better-sqlite3's default) fails at once with SQLITE_BUSY when another writer
 * committed in between; one that begins IMMEDIATE waits for the lock (busy_timeout) instead.
 */
export function writeTransaction<F extends (...args: never[]) => unknown>(db: Database, work: F): F {
  const transaction = db.transaction(work).immediate as unknown as F;
  // The relay's threads hand the lock over among themselves without SQLite's busy sleeps (WriteLock).
  return ((...args: Parameters<F>) => {
    const lock = writeLockOf(db);
    return lock ? lock.hold(() => transaction(...args)) : transaction(...args);
  }) as F;
}
