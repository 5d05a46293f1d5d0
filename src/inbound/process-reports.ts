import type { Logger } from '../logger.js';
import type { ReportApplier, ReportToApply } from './apply-report.js';
import type { ReportStore } from './report-store.js';

/** Reads a report's bytes: the DSN/NDR/ARF parser, given by the caller. Never throws. */
export type ReportParser = (raw: Buffer) => Promise<ReportToApply & { format?: string; error?: string }>;

/**
 * Parses stored reports and applies them. A report is applied at most once (applied_at), so
 * parsing again after a parser upgrade fills in what failed before without doubling events.
 */
export class ReportProcessor {
  constructor(
    private readonly reports: ReportStore,
    private readonly applier: ReportApplier,
    private readonly parse: ReportParser,
    private readonly log: Logger,
  ) {}

  async process(reportId: number): Promise<{ kind: string; outcome: string }> {
    const stored = this.reports.load(reportId);
    if (!stored) throw new Error(`no inbound report ${reportId}`);
    let parsed: Awaited<ReturnType<ReportParser>>;
    try {
      parsed = await this.parse(stored.raw);
    } catch (error) {
      const message = (error as Error).message;
      this.reports.markParsed(reportId, { ok: false, error: message, kind: null, format: null });
      this.log.warn({ reportId, err: message }, 'report could not be parsed; kept for `rebound reparse`');
      return { kind: 'unknown', outcome: `parse failed: ${message}` };
    }
    const failed = parsed.kind === 'unknown' && parsed.error !== undefined;
    this.reports.markParsed(reportId, { ok: !failed, error: parsed.error ?? null, kind: parsed.kind, format: parsed.format ?? null });
    if (stored.appliedAt !== null) return { kind: parsed.kind, outcome: 'already applied' };
    if (failed) return { kind: parsed.kind, outcome: `parse failed: ${parsed.error}` };
    const outcome = this.applier.apply(reportId, parsed, stored.recipientId);
    this.reports.markApplied(reportId, outcome);
    this.log.info({ reportId, kind: parsed.kind, format: parsed.format, outcome }, 'report applied');
    return { kind: parsed.kind, outcome };
  }
}
