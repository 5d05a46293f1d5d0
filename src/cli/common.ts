import { existsSync } from 'node:fs';
import { Option } from 'commander';
import { ConfigError, loadConfig, type Config } from '../config/load.js';
import { openStore, StoreError, type Database } from '../store/database.js';

/** `--config FILE`, on every command that reads the configuration. */
export const configOption = (): Option =>
  new Option('-c, --config <file>', 'JSON file that overrides config/default.json (or set REBOUND_CONFIG)');

export function configFrom(options: { config?: string }): Config {
  return loadConfig({ file: options.config });
}

/** Opens the store of an existing installation; a missing file is an operator error, not a new store. */
export function openExistingStore(config: Config): Database {
  if (!existsSync(config.store.path)) {
    throw new StoreError(`no store at ${config.store.path} yet (store.path); start the relay once to create it`);
  }
  return openStore(config.store.path, { synchronous: config.store.synchronous });
}

export function positiveInteger(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} must be a whole number above 0, got "${value}"`);
  return n;
}
