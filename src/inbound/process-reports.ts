import type { Database } from 'better-sqlite3';
import type { Logger } from '../logger.js';
import type { ReportApplier, ReportToApply } from './apply-report.js';
import type { ReportStore, StoredReport } from './report-store.js';
import { writeTransaction } from '../store/write-lock.js';

/** Reads a report's bytes: the DSN/NDR/ARF parser, given by the caller. Never throws. */
export type ReportParser = (raw: Buffer) => Promise<ReportToApply & { format?: string; error?: string }>;

type Parsed = Awaited<ReturnType<ReportParser>>;

/**
 * Parses stored reports and applies them. Recording the parse, applying and setting applied_at
 * are one transaction, so a crash leaves a report either untouched (still to do at the next
 * start) or done, never parsed-but-unapplied or applied-but-unmarked. A report is applied at
 * most once: applied_at is read inside that transaction, so parsing again after a parser
 * upgrade fills in what failed before without doubling events.
 *
 * applied_at is set for every report whose parse succeeded, also when it changed nothing (an
 * auto-reply, no valid token): its outcome is final and start-up does not take it up again. A
 * report whose parse failed keeps applied_at NULL and parse_status `failed`: start-up leaves it
 * (it would fail again) and `rebound reparse --failed` applies it once the parser reads it.
 */
export class ReportProcessor {
  private readonly record: (reportId: number, stored: StoredReport, parsed: Parsed) => { kind: string; outcome: string };

  constructor(
    db: Database,
    private readonly reports: ReportStore,
    private readonly applier: ReportApplier,
    private readonly parse: ReportParser,
    private readonly log: Logger,
  ) {
    // IMMEDIATE: the write lock is taken before applied_at is read, so the relay and a
    // `rebound reparse` running at once cannot both see it unset and both apply.
    this.record = writeTransaction(db, (reportId: number, stored: StoredReport, parsed: Parsed) => this.recordNow(reportId, stored, parsed));
  }

  async process(reportId: number): Promise<{ kind: string; outcome: string }> {
    const stored = this.reports.load(reportId);
    if (!stored) throw new Error(`no inbound report ${reportId}`);
    let parsed: Parsed;
    try {
      parsed = await this.parse(stored.raw);
    } catch (error) {
      parsed = { kind: 'unknown', recipients: [], original: { messageId: null }, error: (error as Error).message };
    }
    const result = this.record(reportId, stored, parsed);
    if (parsed.error !== undefined && parsed.kind === 'unknown') {
      this.log.warn({ reportId, err: parsed.error }, 'report could not be parsed; kept for `rebound reparse`');
    } else {
      this.log.info({ reportId, kind: parsed.kind, format: parsed.format, outcome: result.outcome }, 'report applied');
    }
    return result;
  }

  private recordNow(reportId: number, stored: StoredReport, parsed: Parsed): { kind: string; outcome: string } {
    const failed = parsed.kind === 'unknown' && parsed.error !== undefined;
    const appliedAt = this.reports.appliedAt(reportId);
    this.reports.markParsed(reportId, { ok: !failed, error: parsed.error ?? null, kind: parsed.kind, format: parsed.format ?? null });
    if (appliedAt !== null) return { kind: parsed.kind, outcome: 'already applied' };
    if (failed) return { kind: parsed.kind, outcome: `parse failed: ${parsed.error}` };
    // A store written by an older Rebound may hold a report applied but not marked: mark it only.
    const outcome = this.applier.hasApplied(reportId)
      ? 'already applied (events found); marked applied now'
      : this.applier.apply(reportId, parsed, stored);
    this.reports.markApplied(reportId, outcome);
    return { kind: parsed.kind, outcome };
  }
}
