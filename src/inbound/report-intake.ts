import type { Database } from 'better-sqlite3';
import { readReturnPath, type VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import type { ForwardedReportReceiver } from '../shared/forwarded-reports.js';
import { ReportApplier } from './apply-report.js';
import { ReportProcessor, type ReportParser } from './process-reports.js';
import { ReportStore } from './report-store.js';
import type { ForwardedUnsubscribes } from '../unsubscribe/forwarded.js';

/** The inbound stage without its listener: stored reports parsed and applied, in order. */
export interface ReportIntake {
  reports: ReportStore;
  /** Queues a stored report to be parsed and applied after those before it. */
  process(reportId: number): void;
  /** Stores a report another node's MX took for this node's token, as if this node's listener had taken it. */
  receiveForwarded: ForwardedReportReceiver;
  /** Waits for the reports queued so far, then closes the report store. */
  stop(): Promise<void>;
}

/**
 * Parses and applies stored reports one at a time, and takes the reports other nodes forward
 * (store.shared.url). The listener (server.ts) is one way reports arrive; a node with
 * inbound.enabled false still runs this, since other nodes' MX take reports for its tokens.
 * Reports a crash left unapplied (stored, or parsed in an older version) are picked up now.
 */
export function startReportIntake(
  config: Config,
  db: Database,
  verp: VerpSettings,
  parse: ReportParser,
  logger: Logger,
  /** Takes the unsubscribe requests other nodes pass on for this node's links; null when not shared. */
  forwardedUnsubscribes: ForwardedUnsubscribes | null = null,
): ReportIntake {
  const log = logger.child({ stage: 'inbound' });
  const reports = new ReportStore(db);
  const processor = new ReportProcessor(db, reports, new ReportApplier(db, config, verp), parse, log);
  let chain: Promise<unknown> = Promise.resolve();
  const process = (reportId: number): void => {
    chain = chain
      .then(() => processor.process(reportId))
      .catch((error: Error) => log.error({ err: error, reportId }, 'report processing failed; run `rebound reparse` after fixing the cause'));
  };
  for (const reportId of reports.unappliedIds()) process(reportId);
  return {
    reports,
    process,
    receiveForwarded: async (report, markTaken) => {
      // An unsubscribe request for this node's link is no report: applied now, not stored.
      if (forwardedUnsubscribes?.take(report, markTaken)) return;
      // Its token is checked with this node's secret now; an invalid one is stored, not applied.
      const recipientId = report.rcptTo.map((address) => readReturnPath(verp, address)).find((check) => check.valid)?.recipientId ?? null;
      const reportId = await reports.store({
        receivedAt: report.receivedAt,
        clientIp: `node ${report.fromNode}`,
        clientHelo: null,
        mailFrom: report.mailFrom,
        rcptTo: report.rcptTo,
        recipientId,
        raw: report.raw,
        alsoCommit: markTaken,
      });
      log.info({ reportId, fromNode: report.fromNode, rcptTo: report.rcptTo, recipientId, bytes: report.raw.length }, 'report forwarded by another node stored');
      process(reportId);
    },
    stop: async () => {
      await chain;
      reports.close();
    },
  };
}
