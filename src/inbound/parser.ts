import { parseReport } from '../bounces/report/index.js';
import type { ReportParser } from './process-reports.js';

/** The DSN/NDR/ARF parser, as the inbound stage and `rebound reparse` use it. */
export function reportParser(campaignHeader: string): ReportParser {
  return (raw) => parseReport(raw, { campaignHeader });
}
