import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3';
import { OperatorError } from '../errors.js';
import { migrate } from './migrations.js';

export type { Database };

export interface OpenStoreOptions {
  /** FULL (the default) fsyncs the WAL on every commit: a 250 survives a power cut. */
  synchronous?: 'FULL' | 'EXTRA' | 'NORMAL';
  readonly?: boolean;
  /** Open only a store that is there: a second connection must never create an empty one at a path whose file was deleted. */
  mustExist?: boolean;
}

export class StoreError extends OperatorError {
  override name = 'StoreError';
}

/**
 * Runs `work` with synchronous=NORMAL, so the commits it makes are not fsynced, then sets
 * `restore` back. For writes that are made durable another way (WalSync) or need not be (a claim,
 * which a crash undoes anyway).
 */
export function withoutCommitSync<T>(db: Database, restore: NonNullable<OpenStoreOptions['synchronous']>, work: () => T): T {
  if (restore === 'NORMAL') return work();
  setSynchronous(db, 'NORMAL');
  try {
    return work();
  } finally {
    setSynchronous(db, restore);
  }
}

type SynchronousLevel = NonNullable<OpenStoreOptions['synchronous']>;
const synchronousStatements = new WeakMap<Database, Map<SynchronousLevel, Statement>>();

/**
 * PRAGMA synchronous from a statement prepared once per connection: db.pragma() prepares its
 * statement anew on every call, and this runs twice per group commit and per claim.
 */
function setSynchronous(db: Database, level: SynchronousLevel): void {
  let statements = synchronousStatements.get(db);
  if (!statements) {
    statements = new Map();
    synchronousStatements.set(db, statements);
  }
  let statement = statements.get(level);
  if (!statement) {
    statement = db.prepare(`PRAGMA synchronous = ${level}`);
    statements.set(level, statement);
  }
  statement.run();
}

/** Opens (creating if needed) the SQLite store and brings its schema up to date. */
export function openStore(path: string, options: OpenStoreOptions = {}): Database {
  let db: Database;
  try {
    if (!options.readonly) mkdirSync(dirname(path), { recursive: true });
    db = new BetterSqlite3(path, { readonly: options.readonly ?? false, fileMustExist: (options.readonly ?? false) || (options.mustExist ?? false) });
  } catch (error) {
    throw new StoreError(`cannot open the store at ${path}: ${(error as Error).message}; check store.path`);
  }
  // Readers (the CLI, sqlite3) wait for a writer instead of failing at once.
  db.pragma('busy_timeout = 5000');
  if (!options.readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    db.pragma('foreign_keys = ON');
    migrate(db);
  }
  return db;
}
