import type { AddressInfo } from 'node:net';
import type { Config } from './config/load.js';
import { startDelivery, type DeliveryStage } from './delivery/index.js';
import { OperatorError } from './errors.js';
import type { Logger } from './logger.js';
import { openStore, type Database } from './store/database.js';
import { storedSecret } from './store/settings.js';
import { Spool } from './store/spool.js';
import type { VerpSettings } from './bounces/verp.js';
import { createSubmissionServer } from './submission/server.js';

export interface RunningRelay {
  submission: AddressInfo;
  spool: Spool;
  /** Stops every stage in flow order, then closes the database. */
  stop(): Promise<void>;
}

/** Starts every stage that exists: the spool, the submission server and the delivery worker. */
export async function startRelay(config: Config, logger: Logger): Promise<RunningRelay> {
  const db = openStore(config.store.path, { synchronous: config.store.synchronous });
  const spool = new Spool(db, config.store.groupCommitMaxMessages);
  const submission = createSubmissionServer(config, spool, logger);
  let address: AddressInfo;
  try {
    address = await submission.listen();
  } catch (error) {
    db.close();
    const { code } = error as NodeJS.ErrnoException;
    throw new OperatorError(
      `submission cannot listen on ${config.submission.host}:${config.submission.port} (${code ?? (error as Error).message}); ` +
        'pick another submission.port or stop what holds it',
    );
  }
  const verp = verpSettings(config, db);
  const delivery: DeliveryStage | null = config.delivery.enabled ? startDelivery(config, db, verp, logger) : null;
  if (delivery) spool.onCommitted(() => delivery.wake());
  logger.info({ store: config.store.path, hostname: config.hostname }, 'rebound started');
  return {
    submission: address,
    spool,
    stop: async () => {
      await submission.close();
      spool.close();
      await delivery?.stop(config.submission.shutdownTimeoutSeconds * 1000);
      db.close();
      logger.info({ messages: spool.stats.messages, commits: spool.stats.commits }, 'rebound stopped; store closed');
    },
  };
}

/** The return path's settings; the secret is generated and kept in the store on first start. */
export function verpSettings(config: Config, db: Database): VerpSettings {
  return {
    domain: config.returnPath.domain ?? config.hostname,
    prefix: config.returnPath.prefix,
    secret: storedSecret(db, 'returnPath.secret', config.returnPath.secret),
    maxAgeDays: config.returnPath.maxAgeDays,
  };
}
