import type { Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Makes committed WAL frames durable off the main thread. A transaction committed with
 * synchronous=NORMAL is in the WAL but not yet on disk; `sync()` resolves once an fdatasync of
 * the WAL file that started after the call has finished, which is what synchronous=FULL does
 * inside COMMIT (SQLite's WAL mode syncs only the WAL on commit). The fdatasync runs on libuv's
 * thread pool, so the event loop keeps serving SMTP while the disk works, and callers that arrive
 * during one sync share the next.
 *
 * The WAL file is the same inode for the life of the relay's connection: SQLite deletes it only
 * when the last connection closes. Its identity is still checked before each sync, so a WAL that
 * was replaced (journal_mode switched back and forth by hand) is opened again rather than missed.
 */
export class WalSync {
  private readonly walPath: string;
  private handle: FileHandle | null = null;
  private handleIno = -1;
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  /** fdatasync calls made: fewer than sync() calls when callers share one. */
  syncs = 0;

  constructor(databasePath: string) {
    this.walPath = `${databasePath}-wal`;
  }

  /** Resolves once everything committed before this call is on disk. */
  sync(): Promise<void> {
    // A sync already running may have started before the caller's commit: wait for the next one.
    if (!this.running) {
      this.running = this.syncOnce().finally(() => {
        this.running = null;
      });
      return this.running;
    }
    this.next ??= this.running.then(
      () => this.startNext(),
      () => this.startNext(),
    );
    return this.next;
  }

  async close(): Promise<void> {
    await this.running?.catch(() => undefined);
    await this.next?.catch(() => undefined);
    await this.handle?.close();
    this.handle = null;
  }

  private startNext(): Promise<void> {
    this.next = null;
    return this.sync();
  }

  private async syncOnce(): Promise<void> {
    const current = await stat(this.walPath);
    if (!this.handle || current.ino !== this.handleIno) await this.reopen(current);
    this.syncs++;
    await (this.handle as FileHandle).datasync();
  }

  private async reopen(current: Stats): Promise<void> {
    await this.handle?.close();
    this.handle = await open(this.walPath, 'r');
    this.handleIno = (await this.handle.stat()).ino;
    if (this.handleIno !== current.ino) throw new Error(`the WAL file ${this.walPath} changed while it was being opened`);
    // A new WAL file's directory entry must survive a power cut too.
    const directory = await open(dirname(this.walPath), 'r');
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }
}
