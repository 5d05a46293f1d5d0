import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import type { Database } from '../store/database.js';
import { storedSecret } from '../store/settings.js';

/** The file beside the store that holds the generated token, readable by its owner only. */
export function generatedTokenPath(storePath: string): string {
  return join(dirname(storePath), 'admin-token');
}

/**
 * With no admin.tokens configured, the admin server would refuse everyone, and a fresh
 * `npm ci && npm start` would have a panel nobody can open. So one admin token, named "admin", is
 * generated at the first start, kept in the store (the same one every start after), and written to
 * admin-token beside the store with mode 0600: whoever can read the store's directory can sign in,
 * which is who could change the store anyway. It is never logged. Configured tokens replace it.
 */
export function withGeneratedToken(config: Config, db: Database, log: Logger): Config {
  if (config.admin.tokens.length > 0) return config;
  const token = storedSecret(db, 'admin_generated_token', null);
  const path = generatedTokenPath(config.store.path);
  let written: string | null = null;
  try {
    written = readFileSync(path, 'utf8').trim();
  } catch {
    // Not there yet: written below.
  }
  if (written !== token) {
    writeFileSync(path, `${token}\n`, { mode: 0o600 });
    // mode applies only to a new file; an old one may have been made readable.
    chmodSync(path, 0o600);
  }
  log.info({ tokenFile: path }, `admin.tokens is empty: sign in to the panel (http://${config.admin.host}:${config.admin.port}/) or call the API with the generated admin token in ${path}`);
  return { ...config, admin: { ...config.admin, tokens: [{ name: 'admin', token, role: 'admin' }] } };
}
