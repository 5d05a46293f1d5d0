import type { AddressInfo } from 'node:net';
import type { Database } from 'better-sqlite3';
import type { VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import type { UnsubscribeHandling } from '../unsubscribe/forwarded.js';
import type { ReportParser } from './process-reports.js';
import { startReportIntake } from './report-intake.js';
import { createInboundServer } from './server.js';
import type { ForwardedReportReceiver, KnownNodes } from '../shared/forwarded-reports.js';

export { startReportIntake, type ReportIntake } from './report-intake.js';

export interface InboundStage {
  address: AddressInfo;
  /** Where reports other nodes' MX took for this node's tokens go (store.shared.url). */
  receiveForwarded: ForwardedReportReceiver;
  stop(): Promise<void>;
}

/**
 * Starts the return-path MX: its listener, and the report intake that parses and applies what
 * it stores, one report at a time (src/inbound/report-intake.ts).
 */
export async function startInbound(
  config: Config,
  db: Database,
  verp: VerpSettings,
  unsubscribe: UnsubscribeHandling,
  parse: ReportParser,
  logger: Logger,
  knownNodes: KnownNodes | null = null,
): Promise<InboundStage> {
  const log = logger.child({ stage: 'inbound' });
  const intake = startReportIntake(config, db, verp, parse, logger, unsubscribe.forwarded);
  const server = createInboundServer(config, verp, intake.reports, intake.process, unsubscribe, logger, knownNodes);
  let address: AddressInfo;
  try {
    address = await server.listen();
  } catch (error) {
    await intake.stop();
    throw error;
  }
  return {
    address,
    receiveForwarded: intake.receiveForwarded,
    stop: async () => {
      await server.close();
      await intake.stop();
      log.info('inbound stopped');
    },
  };
}
