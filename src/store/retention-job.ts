import type { Database } from 'better-sqlite3';
import type { Logger } from '../logger.js';
import { isNothing, purgeInSteps, Retention, type RetentionSettings } from './retention.js';

export interface RetentionJob {
  stop(): Promise<void>;
}

/** The first purge waits a minute, so a start (and its recovery work) is not slowed by it. */
const FIRST_RUN_MS = 60_000;
const EVERY_MS = 3_600_000;

/** Applies store.retention in the running relay: a minute after start, then every hour. */
export function startRetentionJob(db: Database, settings: RetentionSettings, logger: Logger, timing = { firstRunMs: FIRST_RUN_MS, everyMs: EVERY_MS }): RetentionJob {
  const log = logger.child({ stage: 'retention' });
  const retention = new Retention(db, settings);
  if (!retention.enabled) return { stop: () => Promise.resolve() };
  let running: Promise<void> | null = null;
  let stopped = false;
  const run = (): void => {
    if (stopped || running) return;
    running = purgeInSteps(retention, new Date(), () => {
      if (stopped) throw new RetentionStopped();
    })
      .then((total) => {
        if (!isNothing(total)) log.info({ ...total, bodyDays: settings.bodyDays, historyDays: settings.historyDays }, 'old mail purged (store.retention)');
      })
      .catch((error: unknown) => {
        if (error instanceof RetentionStopped) return;
        log.error({ err: error }, 'purging old mail failed; it is tried again in an hour (store.retention)');
      })
      .finally(() => {
        running = null;
      });
  };
  const first = setTimeout(run, timing.firstRunMs).unref();
  const every = setInterval(run, timing.everyMs).unref();
  return {
    stop: async () => {
      stopped = true;
      clearTimeout(first);
      clearInterval(every);
      await running;
    },
  };
}

class RetentionStopped extends Error {}
