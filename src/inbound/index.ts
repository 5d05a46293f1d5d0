import type { AddressInfo } from 'node:net';
import type { Database } from 'better-sqlite3';
import type { VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import { Unsubscriber, type UnsubscribeSettings } from '../unsubscribe/index.js';
import { ReportApplier } from './apply-report.js';
import { ReportProcessor, type ReportParser } from './process-reports.js';
import { ReportStore } from './report-store.js';
import { createInboundServer } from './server.js';
import type { ForwardedReportReceiver, KnownNodes } from '../shared/forwarded-reports.js';

export interface InboundStage {
  address: AddressInfo;
  /** Where reports other nodes' MX took for this node's tokens go (store.shared.url). */
  receiveForwarded: ForwardedReportReceiver;
  stop(): Promise<void>;
}

/**
 * Starts the return-path MX. Reports are parsed one at a time after they are stored; reports a
 * crash left unapplied (stored, or parsed in an older version) are picked up at start.
 */
export async function startInbound(
  config: Config,
  db: Database,
  verp: VerpSettings,
  unsubscribe: UnsubscribeSettings,
  parse: ReportParser,
  logger: Logger,
  knownNodes: KnownNodes | null = null,
): Promise<InboundStage> {
  const log = logger.child({ stage: 'inbound' });
  const reports = new ReportStore(db);
  const processor = new ReportProcessor(db, reports, new ReportApplier(db, config, verp), parse, log);
  let chain: Promise<unknown> = Promise.resolve();
  const enqueue = (reportId: number): void => {
    chain = chain
      .then(() => processor.process(reportId))
      .catch((error: Error) => log.error({ err: error, reportId }, 'report processing failed; run `rebound reparse` after fixing the cause'));
  };
  const server = createInboundServer(config, verp, reports, enqueue, { settings: unsubscribe, unsubscriber: new Unsubscriber(db, unsubscribe) }, logger, knownNodes);
  const address = await server.listen();
  for (const reportId of reports.unappliedIds()) enqueue(reportId);
  return {
    address,
    receiveForwarded: server.receiveForwarded,
    stop: async () => {
      await server.close();
      await chain;
      reports.close();
      log.info('inbound stopped');
    },
  };
}
