import BetterSqlite3, { type Database } from 'better-sqlite3';
import { afterEach } from 'vitest';
import { loadConfig, type Config } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { openStore } from '../../src/store/database.js';
import { Spool } from '../../src/store/spool.js';
import { createSubmissionServer, type SubmissionServer } from '../../src/submission/server.js';
import type { ConfigOverride } from './relay.js';
import { writeTestConfig } from './relay.js';
import { makeTempDir } from './temp-dir.js';

export interface TestSubmission {
  config: Config;
  port: number;
  /** The server itself, for its stats(). */
  server: SubmissionServer;
  /** A read connection to the spool's SQLite file. */
  db: Database;
}

/**
 * Starts the submission server alone (real spool in a temp dir, port 0), for tests that read
 * its counters; every one is stopped after each test.
 */
export function submissionServersStoppedAfterEachTest(): (override?: ConfigOverride) => Promise<TestSubmission> {
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await Promise.all(stops.splice(0).map((stop) => stop()));
  });
  return async (override = {}) => {
    const temp = makeTempDir();
    const config = loadConfig({ file: writeTestConfig(temp.dir, override), env: {} });
    const store = openStore(config.store.path, { synchronous: 'NORMAL' });
    const spool = new Spool(store, config.store.groupCommitMaxMessages);
    const server = createSubmissionServer(config, spool, createLogger(config.log.level));
    const { port } = await server.listen();
    const db = new BetterSqlite3(config.store.path, { readonly: true });
    stops.push(async () => {
      await server.close();
      spool.close();
      db.close();
      store.close();
      temp.remove();
    });
    return { config, port, server, db };
  };
}
