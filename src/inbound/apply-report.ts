import type { Database, Statement } from 'better-sqlite3';
import { normalizeAddress } from '../address.js';
import { classifyReply, type Classification } from '../bounces/classifier.js';
import { readReturnPath, type VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import { SuppressionLists } from '../suppressions/lists.js';

/** What applying needs of a parsed report (the parser's ParsedReport has these and more). */
export interface ReportToApply {
  kind: 'bounce' | 'delay' | 'complaint' | 'autoreply' | 'delivered' | 'unknown';
  recipients: ReadonlyArray<{ recipient: string | null; action: string | null; status: string | null; diagnosticCode: string | null }>;
  original: { messageId: string | null; returnPath?: string | null };
}

interface RecipientRow {
  id: number;
  messageId: number;
  address: string;
  status: string;
  queueId: string;
}

/**
 * Writes what a delayed report says into the same tables as immediate bounces: a failed
 * recipient is bounced (and suppressed when its category is hard), a delay notice is a `delayed`
 * event, a complaint puts the address on the complaints list. Delayed bounces are never retried.
 */
export class ReportApplier {
  private readonly byId: Statement;
  private readonly byMessage: Statement;
  private readonly byMessageIdHeader: Statement;
  private readonly setStatus: Statement;
  private readonly insertEvent: Statement;
  private readonly deliveringAttempt: Statement;
  private readonly suppressions: SuppressionLists;
  private readonly suppressCategories: Set<string>;
  private readonly applyTransaction: (reportId: number, report: ReportToApply, tokenRecipientId: number | null) => string;

  constructor(
    db: Database,
    config: Config,
    private readonly verp: VerpSettings,
  ) {
    const columns = `r.id, r.message_id AS messageId, r.address, r.status, m.queue_id AS queueId
                       FROM recipients r JOIN messages m ON m.id = r.message_id`;
    this.byId = db.prepare(`SELECT ${columns} WHERE r.id = ?`);
    this.byMessage = db.prepare(`SELECT ${columns} WHERE r.message_id = ? ORDER BY r.id`);
    this.byMessageIdHeader = db.prepare(`SELECT ${columns} WHERE m.message_id_header = ? ORDER BY m.id DESC, r.id`);
    this.setStatus = db.prepare(`UPDATE recipients SET status = ?, next_attempt_at = NULL, last_reply = ?, updated_at = ? WHERE id = ?`);
    this.insertEvent = db.prepare(`
      INSERT INTO events (at, event, message_id, recipient_id, detail, source, reason, severity, bounce_type, category, code, enhanced_code, report_id, local_ip, mx_host)
      VALUES (?, ?, ?, ?, ?, 'delayed', ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    // A delayed report is about the transaction that delivered: its source address and MX.
    this.deliveringAttempt = db.prepare(`
      SELECT local_ip AS localIp, mx_host AS mxHost FROM attempts WHERE recipient_id = ? AND outcome = 'delivered' ORDER BY id DESC LIMIT 1`);
    this.suppressions = new SuppressionLists(db);
    this.suppressCategories = new Set(config.suppression.categories);
    this.applyTransaction = db.transaction((reportId: number, report: ReportToApply, tokenRecipientId: number | null) =>
      this.applyNow(reportId, report, tokenRecipientId),
    );
  }

  /** Applies a report in one transaction; returns what it did, in words, for inbound_reports.outcome. */
  apply(reportId: number, report: ReportToApply, tokenRecipientId: number | null): string {
    return this.applyTransaction(reportId, report, tokenRecipientId);
  }

  private applyNow(reportId: number, report: ReportToApply, tokenRecipientId: number | null): string {
    if (report.kind === 'autoreply' || report.kind === 'delivered' || report.kind === 'unknown') return `nothing to apply (${report.kind})`;
    const candidates = this.candidates(report, tokenRecipientId);
    if (candidates.length === 0) return 'no recipient we know: no valid token, no matching Message-ID';
    const at = new Date().toISOString();
    const done: string[] = [];
    const entries = report.recipients.length > 0 ? report.recipients : [{ recipient: null, action: null, status: null, diagnosticCode: null }];
    for (const entry of entries) {
      const row = this.match(entry.recipient, candidates, tokenRecipientId, entries.length);
      if (!row) {
        done.push(`${entry.recipient ?? '(no address)'}: not a recipient of that message`);
        continue;
      }
      done.push(`${row.address}: ${this.applyOne(reportId, report.kind, entry, row, at)}`);
    }
    return done.join('; ');
  }

  /** The recipient rows the report can be about: the token's message first, else by Message-ID. */
  private candidates(report: ReportToApply, tokenRecipientId: number | null): RecipientRow[] {
    let tokenRow = tokenRecipientId !== null ? (this.byId.get(tokenRecipientId) as RecipientRow | undefined) : undefined;
    if (!tokenRow && report.original.returnPath) {
      // Reports to postmaster@ or abuse@ often quote the original's Return-Path: our token.
      const check = readReturnPath(this.verp, report.original.returnPath);
      if (check.valid) tokenRow = this.byId.get(check.recipientId) as RecipientRow | undefined;
    }
    if (tokenRow) return this.byMessage.all(tokenRow.messageId) as RecipientRow[];
    if (report.original.messageId) {
      const rows = this.byMessageIdHeader.all(report.original.messageId.replace(/^<|>$/g, '')) as RecipientRow[];
      const newest = rows[0]?.messageId;
      return rows.filter((row) => row.messageId === newest);
    }
    return [];
  }

  private match(address: string | null, candidates: RecipientRow[], tokenRecipientId: number | null, entryCount: number): RecipientRow | undefined {
    const normalized = address ? normalizeAddress(address.replace(/^<|>$/g, '').trim())?.address.toLowerCase() : undefined;
    const exact = normalized ? candidates.find((row) => row.address.toLowerCase() === normalized) : undefined;
    if (exact) return exact;
    // One recipient reported and a token that names one: forwarding or aliases changed the address.
    if (entryCount === 1 && tokenRecipientId !== null) return candidates.find((row) => row.id === tokenRecipientId);
    if (entryCount === 1 && candidates.length === 1) return candidates[0];
    return undefined;
  }

  private applyOne(reportId: number, kind: ReportToApply['kind'], entry: ReportToApply['recipients'][number], row: RecipientRow, at: string): string {
    const classification = classifyReply({ enhancedCode: entry.status, text: entry.diagnosticCode ?? '' });
    const detail = [entry.status, entry.diagnosticCode].filter(Boolean).join(' ') || null;
    if (kind === 'complaint') {
      this.suppressions.add({ address: row.address, type: 'complaints', source: 'delayed', evidence: classification, queueId: row.queueId, at, actor: 'relay' });
      this.event(at, 'complained', row, detail, null, null, reportId);
      return 'complained; added to complaints';
    }
    const action = (entry.action ?? '').toLowerCase();
    if (kind === 'delay' || action === 'delayed') {
      this.event(at, 'delayed', row, detail, null, classification, reportId);
      return 'delayed';
    }
    if (action !== '' && action !== 'failed') return `not a failure (${action})`;
    // The remote MTA gave up: for us the delivery failed for good, whatever class its Status has.
    const failure: Classification = { ...classification, severity: 'permanent' };
    this.setStatus.run('bounced', detail, at, row.id);
    this.event(at, 'permanent_fail', row, detail, 'bounced', failure, reportId);
    if (this.suppressCategories.has(failure.category) && classification.severity === 'permanent') {
      this.suppressions.add({ address: row.address, type: 'bounces', source: 'delayed', evidence: failure, queueId: row.queueId, at, actor: 'relay' });
      return `bounced (${failure.category}); added to bounces`;
    }
    return `bounced (${failure.category}, ${failure.type})`;
  }

  private event(at: string, event: string, row: RecipientRow, detail: string | null, reason: string | null, c: Classification | null, reportId: number): void {
    const sent = this.deliveringAttempt.get(row.id) as { localIp: string | null; mxHost: string | null } | undefined;
    this.insertEvent.run(
      at, event, row.messageId, row.id, detail, reason,
      c?.severity ?? null, c?.type ?? null, c?.category ?? null, c?.code ?? null, c?.enhancedCode ?? null,
      reportId, sent?.localIp ?? null, sent?.mxHost ?? null,
    );
  }
}
