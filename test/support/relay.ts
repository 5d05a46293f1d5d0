import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { afterEach } from 'vitest';
import { loadConfig, type Config } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { startRelay, type RunningRelay } from '../../src/relay.js';
import { makeTempDir } from './temp-dir.js';

export interface TestRelay {
  dir: string;
  config: Config;
  port: number;
  relay: RunningRelay;
  /** A separate read connection to the relay's SQLite file, as an operator would open it. */
  db: Database;
  /** Stops the relay but keeps its store readable through `db` (until stop()). */
  stopRelay(): Promise<void>;
  stop(): Promise<void>;
}

export type ConfigOverride = Record<string, unknown>;

/** Delivery on, with short timeouts and a retry schedule of fractions of a second, so tests do not sleep. */
export const FAST_DELIVERY = {
  enabled: true,
  pollIntervalMs: 50,
  connectionTimeoutSeconds: 2,
  greetingTimeoutSeconds: 1,
  socketTimeoutSeconds: 5,
  retry: { scheduleSeconds: [0.2], jitter: 0, maxAttempts: 3, maxAgeSeconds: 60 },
};

/** The relay's own config, as a JSON file in a temp dir: a real SQLite file, port 0, no logs. */
export function writeTestConfig(dir: string, override: ConfigOverride = {}): string {
  const submission = (override.submission ?? {}) as Record<string, unknown>;
  const config = {
    hostname: 'relay.test',
    log: { level: 'silent' },
    ...override,
    store: { path: join(dir, 'rebound.sqlite'), ...((override.store ?? {}) as object) },
    submission: { port: 0, ...submission },
    // Tests deliver only where they say: to fake MX hosts on 127.0.0.1, through routes or a test DNS server.
    delivery: { enabled: false, ...((override.delivery ?? {}) as object) },
    inbound: { enabled: false, port: 0, ...((override.inbound ?? {}) as object) },
    admin: { enabled: false, port: 0, ...((override.admin ?? {}) as object) },
  };
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

export async function startTestRelay(override: ConfigOverride = {}): Promise<TestRelay> {
  const temp = makeTempDir();
  const config = loadConfig({ file: writeTestConfig(temp.dir, override), env: {} });
  const relay = await startRelay(config, createLogger(config.log.level));
  const db = new BetterSqlite3(config.store.path, { readonly: true });
  let relayStopped: Promise<void> | null = null;
  let stopped = false;
  const stopRelay = (): Promise<void> => (relayStopped ??= relay.stop());
  return {
    dir: temp.dir,
    config,
    port: relay.submission.port,
    relay,
    db,
    stopRelay,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await stopRelay();
      db.close();
      temp.remove();
    },
  };
}

export function countRows(db: Database, table: 'messages' | 'recipients' | 'events'): number {
  return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
}

/** Returns a starter of relays that are all stopped (and their temp dirs removed) after each test. */
export function relaysStoppedAfterEachTest(): (override?: ConfigOverride) => Promise<TestRelay> {
  const relays: TestRelay[] = [];
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((relay) => relay.stop()));
  });
  return async (override = {}) => {
    const relay = await startTestRelay(override);
    relays.push(relay);
    return relay;
  };
}

/** A pino destination that keeps every JSON log line, for tests that read what a relay logged. */
export function logCapture(): { logs: Array<Record<string, unknown>>; destination: Writable } {
  const logs: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logs, destination };
}
