import { mkdirSync, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import type { Database } from 'better-sqlite3';
import type { Logger } from '../logger.js';

/** Why the store cannot take writes now, for /healthz, the logs and the 451 that refuses mail. */
export interface StoreProblem {
  since: string;
  cause: string;
}

const healthOfConnection = new WeakMap<Database, StoreHealth>();

/** The health watch of a connection, when the relay started one (the CLI does not). */
export function storeHealthOf(db: Database): StoreHealth | undefined {
  return healthOfConnection.get(db);
}

/**
 * Knows whether the store can still keep what it is given.
 *
 * A SQLite connection keeps working on a file that was unlinked or replaced under it: every
 * commit succeeds, into an inode nobody will open again, and a restart finds the store empty.
 * So the file at `store.path` is compared with the one opened (device and inode) before every
 * group commit and once a second (`watch`); once they differ, the store is *lost* for this process: every
 * later commit is refused (the client gets a 451 and retries elsewhere or later), delivery stops
 * claiming, /healthz fails, and what the connection still holds is copied out with SQLite's
 * backup API to a rescue file next to `store.path`, so no acknowledged message is gone.
 *
 * Writes that fail for any other reason (an I/O error, a full disk) make the store *failing*
 * until a later commit succeeds.
 */
export class StoreHealth {
  private readonly opened: Stats;
  private lost: StoreProblem | null = null;
  private writeFailure: StoreProblem | null = null;
  /** What another connection to the same store found (the delivery thread's commits). */
  private elsewhere: StoreProblem | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Resolves with the rescue file's path once the copy is written (null if it failed). */
  rescued: Promise<string | null> | null = null;

  constructor(
    private readonly db: Database,
    private readonly path: string,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
    /** false where another connection's StoreHealth already rescues a lost store (the delivery thread's). */
    private readonly rescues = true,
  ) {
    this.opened = statSync(path);
    healthOfConnection.set(db, this);
  }

  /** Checks the file once a second, so /healthz and delivery notice while no mail arrives. */
  watch(intervalMs = 1000): this {
    this.timer = setInterval(() => {
      if (!this.check() && this.writeFailure) this.probeWrite();
    }, intervalMs);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    healthOfConnection.delete(this.db);
  }

  /**
   * The reason writes are refused or failing now, null when the store is healthy. Read on every
   * MAIL FROM and delivery claim, so it only reads what the commit path and the watch found.
   */
  problem(): StoreProblem | null {
    return this.lost ?? this.writeFailure ?? this.elsewhere;
  }

  /** problem(), after looking at the file now: for /healthz, which must not lag the watch's tick. */
  problemNow(): StoreProblem | null {
    this.check();
    return this.problem();
  }

  /** Whether store.path is no longer the file open, looked at now (a failing disk is not a lost store). */
  lostNow(): StoreProblem | null {
    return this.check();
  }

  /** The problem another connection to this store reports now, or null once it is gone. */
  reportedElsewhere(problem: StoreProblem | null): void {
    this.elsewhere = problem;
    // It may be this very file's loss: look now rather than at the next watch tick.
    if (problem) this.check();
  }

  /** Throws when the file is no longer the one open: the commit would go nowhere. */
  assertWritable(): void {
    const lost = this.check();
    if (lost) throw new Error(lost.cause);
  }

  recordWriteFailure(error: Error): void {
    if (this.writeFailure) return;
    this.writeFailure = { since: this.now().toISOString(), cause: `writes to the store at ${this.path} fail: ${error.message}` };
    this.log.error({ store: this.path, err: error.message }, 'the store cannot be written; mail is refused with 451 until a write succeeds; check the disk (space, I/O errors)');
  }

  recordWriteSuccess(): void {
    if (!this.writeFailure) return;
    this.log.info({ store: this.path, since: this.writeFailure.since }, 'the store takes writes again');
    this.writeFailure = null;
  }

  /** While writes fail and no mail is accepted to try again, a tiny write tells when the disk is back. */
  private probeWrite(): void {
    try {
      this.db.prepare(`INSERT OR REPLACE INTO settings (key, value) VALUES ('store.writeProbe', ?)`).run(this.now().toISOString());
    } catch {
      return;
    }
    this.recordWriteSuccess();
  }

  /** null while store.path is still the file open; once it is not, the store stays lost. */
  private check(): StoreProblem | null {
    if (this.lost) return this.lost;
    let current: Stats | null;
    try {
      current = statSync(this.path);
    } catch {
      current = null;
    }
    if (current && current.dev === this.opened.dev && current.ino === this.opened.ino) return null;
    const what = current ? 'was replaced by another file' : 'was deleted';
    this.lost = {
      since: this.now().toISOString(),
      cause: `the store file ${this.path} ${what} while the relay had it open; nothing more can be kept there, restart the relay`,
    };
    if (this.rescues) this.rescued = this.rescue(what);
    return this.lost;
  }

  /** Copies everything the open connection still sees to `<path>.rescued-<time>`. */
  private async rescue(what: string): Promise<string | null> {
    const target = `${this.path}.rescued-${this.now().toISOString().replace(/[:.]/g, '-')}`;
    this.log.error({ store: this.path, rescue: target }, `the store file ${what} under the running relay: new mail is refused with 451 and delivery has stopped; copying what the relay still holds to the rescue file`);
    try {
      mkdirSync(dirname(target), { recursive: true });
      await this.db.backup(target);
    } catch (error) {
      this.log.error({ store: this.path, rescue: target, err: (error as Error).message }, 'the rescue copy failed: stop the relay only after copying /proc/<pid>/fd of the store by hand');
      return null;
    }
    this.log.error(
      { store: this.path, rescue: target },
      `rescue copy written; to go on: stop the relay, move ${target} to ${this.path} (if nothing else belongs there), start the relay`,
    );
    return target;
  }
}
