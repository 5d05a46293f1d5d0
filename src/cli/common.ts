/**
 * What several commands share. Light on purpose: `rebound --help` and `rebound parse` load this
 * module, so the configuration loader (zod) and the store (better-sqlite3) are imported only when a
 * command asks for them.
 */
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { Option } from 'commander';
import type { Config } from '../config/load.js';
import { OperatorError } from '../errors.js';
import type { Database } from '../store/database.js';

/** `--config FILE`, on every command that reads the configuration. */
export const configOption = (): Option =>
  new Option('-c, --config <file>', 'JSON file that overrides config/default.json (or set REBOUND_CONFIG)');

export async function configFrom(options: { config?: string }): Promise<Config> {
  const { loadConfig } = await import('../config/load.js');
  return loadConfig({ file: options.config });
}

/** Opens the store of an existing installation; a missing file is an operator error, not a new store. */
export async function openExistingStore(config: Config): Promise<Database> {
  const { openStore, StoreError } = await import('../store/database.js');
  if (!existsSync(config.store.path)) {
    throw new StoreError(`no store at ${config.store.path} yet (store.path); start the relay once to create it`);
  }
  return openStore(config.store.path, { synchronous: config.store.synchronous });
}

export function positiveInteger(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new OperatorError(`${flag} must be a whole number above 0, got "${value}"`);
  return n;
}

/** Who is acting, for the audits (suppressions, queue actions): the operating-system user running the CLI. */
export function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}
