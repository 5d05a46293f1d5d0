import type { Database, Statement } from 'better-sqlite3';
import { normalizeAddress } from '../address.js';
import type { BounceType, Category, Severity } from '../bounces/categories.js';
import type { Classification } from '../bounces/classifier.js';
import { parseReply } from '../bounces/reply-text.js';
import { readReturnPath, type VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import { SuppressionLists } from '../suppressions/lists.js';
import { SuppressionPolicy } from '../suppressions/policy.js';
import { writeTransaction } from '../store/write-lock.js';
import { RecipientWriter } from '../store/recipient-writer.js';
import { isStoreShared } from '../store/shared-outbox.js';
import { KnownNodes, queueForwardedReport } from '../shared/forwarded-reports.js';

/**
 * One recipient of a parsed report, with the parser's classification (null for recipients that
 * did not fail). The applier stores that classification as it is, never classifies again, so
 * what is stored is what `rebound parse` prints.
 */
export interface RecipientToApply {
  recipient: string | null;
  action: string | null;
  status: string | null;
  diagnosticCode: string | null;
  severity: Severity | null;
  type: BounceType | null;
  category: Category | null;
}

/** What applying needs of a parsed report (the parser's ParsedReport has these and more). */
export interface ReportToApply {
  kind: 'bounce' | 'delay' | 'complaint' | 'autoreply' | 'delivered' | 'unknown';
  recipients: ReadonlyArray<RecipientToApply>;
  original: { messageId: string | null; returnPath?: string | null };
}

const NO_RECIPIENT: RecipientToApply = { recipient: null, action: null, status: null, diagnosticCode: null, severity: null, type: null, category: null };

interface RecipientRow {
  id: number;
  messageId: number;
  address: string;
  status: string;
  queueId: string;
}

/** What the inbound listener recorded about a report's envelope (inbound_reports). */
export interface ReportEnvelope {
  receivedAt: string;
  /** The envelope recipients, comma-separated. */
  rcptTo: string;
  /** The recipient row the VERP token in RCPT TO named, when there was one. */
  recipientId: number | null;
  /** The report as received: passed on whole to the node whose token it quotes (store.shared.url). */
  raw?: Buffer;
}

/** The valid VERP token a report carries: the recipient it names and the return path it came in. */
interface Token {
  recipientId: number;
  returnPath: string | null;
}

/** The outcome of a report that carries no valid token: kept for operators, changes nothing. */
export const NO_VALID_TOKEN = 'stored, not applied: no valid token';

/**
 * Writes what a delayed report says into the same tables as immediate bounces: a failed
 * recipient is bounced (and suppressed when its category is hard), a delay notice is a `delayed`
 * event, a complaint puts the address on the complaints list. Delayed bounces are never retried.
 *
 * Who a report may change. Message-IDs are seen by every recipient, so they prove nothing; the
 * signed VERP token does. A report changes only recipients of the SMTP transaction whose MAIL FROM
 * carried its token (attempts.mail_from), and of those only the ones it names by address; when
 * that transaction had the token's recipient alone and the report names one address that is not
 * it, forwarding or an alias changed the address, and it is about the token's recipient. The
 * token is the one in RCPT TO; a report sent to postmaster@ or abuse@ has none there, and counts
 * the token in the quoted original's Return-Path under the same rule (whoever holds that header
 * received the transaction, and could as well have sent to the token's address). Without either,
 * the report is stored and shown to operators but changes nothing.
 */
export class ReportApplier {
  private readonly byId: Statement;
  private readonly byMessage: Statement;
  private readonly sentUnderReturnPath: Statement;
  private readonly eventOfReport: Statement;
  private readonly anyEventOfReport: Statement;
  /** The one writer of recipients and events (store/recipient-writer.ts). */
  private readonly recipients: RecipientWriter;
  private readonly deliveringAttempt: Statement;
  private readonly suppressions: SuppressionLists;
  private readonly policy: SuppressionPolicy;
  private readonly applyTransaction: (reportId: number, report: ReportToApply, envelope: ReportEnvelope) => string;

  /** The other nodes by tag when the store is shared (store.shared.url), else null. */
  private readonly knownNodes: KnownNodes | null;

  constructor(
    private readonly db: Database,
    config: Config,
    private readonly verp: VerpSettings,
  ) {
    this.knownNodes = isStoreShared(db) ? new KnownNodes(db) : null;
    const columns = `r.id, r.message_id AS messageId, r.address, r.status, m.queue_id AS queueId
                       FROM recipients r JOIN messages m ON m.id = r.message_id`;
    this.byId = db.prepare(`SELECT ${columns} WHERE r.id = ?`);
    this.byMessage = db.prepare(`SELECT ${columns} WHERE r.message_id = ? ORDER BY r.id`);
    // The recipients of the transactions sent with this return path (delivery records it on
    // every attempt; the token's day is in it, so another day's retry is another transaction).
    this.sentUnderReturnPath = db.prepare(`SELECT DISTINCT recipient_id FROM attempts WHERE message_id = ? AND lower(mail_from) = lower(?)`).pluck();
    this.eventOfReport = db.prepare(`SELECT 1 FROM events WHERE report_id = ? AND recipient_id = ? LIMIT 1`).pluck();
    this.anyEventOfReport = db.prepare(`SELECT 1 FROM events WHERE report_id = ? LIMIT 1`).pluck();
    this.recipients = RecipientWriter.of(db);
    // A delayed report is about the transaction that delivered: its source address and MX.
    this.deliveringAttempt = db.prepare(`
      SELECT local_ip AS localIp, mx_host AS mxHost FROM attempts WHERE recipient_id = ? AND outcome = 'delivered' ORDER BY id DESC LIMIT 1`);
    this.suppressions = new SuppressionLists(db);
    this.policy = new SuppressionPolicy(config.suppression.categories);
    this.applyTransaction = writeTransaction(db, (reportId: number, report: ReportToApply, envelope: ReportEnvelope) =>
      this.applyNow(reportId, report, envelope),
    );
  }

  /**
   * Applies a report in one transaction (a savepoint inside the caller's); returns what it did,
   * in words, for inbound_reports.outcome. Applying again changes nothing: a recipient that
   * already has an event of this report is skipped, and so is its suppression.
   */
  apply(reportId: number, report: ReportToApply, envelope: ReportEnvelope): string {
    return this.applyTransaction(reportId, report, envelope);
  }

  /** Whether any event names this report: it was applied, whatever applied_at says. */
  hasApplied(reportId: number): boolean {
    return this.anyEventOfReport.get(reportId) !== undefined;
  }

  private applyNow(reportId: number, report: ReportToApply, envelope: ReportEnvelope): string {
    if (report.kind === 'autoreply' || report.kind === 'delivered' || report.kind === 'unknown') return `nothing to apply (${report.kind})`;
    const token = this.tokenOf(report, envelope);
    if (!token) return this.forwardToQuotedNode(report, envelope) ?? NO_VALID_TOKEN;
    const tokenRow = this.byId.get(token.recipientId) as RecipientRow | undefined;
    if (!tokenRow) return 'not applied: the recipient its token names is no longer stored';
    const transaction = this.transactionOf(tokenRow, token.returnPath);
    const at = new Date().toISOString();
    const done: string[] = [];
    const entries = report.recipients.length > 0 ? report.recipients : [NO_RECIPIENT];
    for (const entry of entries) {
      const row = this.match(entry.recipient, transaction, tokenRow, entries.length);
      if (!row) {
        done.push(`${entry.recipient ?? '(no address)'}: not a recipient of the transaction its token names`);
        continue;
      }
      if (this.eventOfReport.get(reportId, row.id) !== undefined) {
        done.push(`${row.address}: already applied`);
        continue;
      }
      done.push(`${row.address}: ${this.applyOne(reportId, report.kind, entry, row, at)}`);
    }
    return done.join('; ');
  }

  /**
   * A report sent to postmaster@ or abuse@ of a node that quotes another node's token in the
   * original's Return-Path (one return-path domain, its MX on every node): passed on whole to that
   * node, in this transaction, as the MX passes on a report for another node's RCPT TO token; that
   * node checks the token and applies it. Returns the outcome, or null when there is no such node.
   */
  private forwardToQuotedNode(report: ReportToApply, envelope: ReportEnvelope): string | null {
    if (this.knownNodes === null || envelope.recipientId !== null || !report.original.returnPath || !envelope.raw) return null;
    const check = readReturnPath(this.verp, report.original.returnPath, new Date(envelope.receivedAt));
    if (check.valid || check.reason !== 'other-node' || check.expired) return null;
    const node = this.knownNodes.nameOf(check.nodeTag);
    if (node === undefined) return null;
    queueForwardedReport(this.db, node, { receivedAt: new Date(envelope.receivedAt), mailFrom: '', rcptTo: envelope.rcptTo.split(', '), raw: envelope.raw });
    return `forwarded to node ${node}: its quoted Return-Path carries that node's token`;
  }

  /**
   * The token the report carries: the one in RCPT TO (checked as of when the report arrived, so a
   * later reparse is not refused for age), else the quoted original's Return-Path.
   */
  private tokenOf(report: ReportToApply, envelope: ReportEnvelope): Token | null {
    const receivedAt = new Date(envelope.receivedAt);
    if (envelope.recipientId !== null) {
      const returnPath = envelope.rcptTo.split(', ').find((address) => {
        const check = readReturnPath(this.verp, address, receivedAt);
        return check.valid && check.recipientId === envelope.recipientId;
      });
      // No address checks out any more (the secret was changed): the token's recipient alone.
      return { recipientId: envelope.recipientId, returnPath: returnPath ?? null };
    }
    if (report.original.returnPath) {
      const check = readReturnPath(this.verp, report.original.returnPath, receivedAt);
      if (check.valid) return { recipientId: check.recipientId, returnPath: report.original.returnPath };
    }
    return null;
  }

  /**
   * The recipients of the transaction(s) sent with this return path, the token's own first;
   * `alone` when the attempts show the token's recipient was the only one.
   */
  private transactionOf(tokenRow: RecipientRow, returnPath: string | null): { rows: RecipientRow[]; alone: boolean } {
    const sent = new Set(returnPath === null ? [] : (this.sentUnderReturnPath.all(tokenRow.messageId, returnPath) as number[]));
    const others = sent.size === 0 ? [] : (this.byMessage.all(tokenRow.messageId) as RecipientRow[]).filter((row) => sent.has(row.id) && row.id !== tokenRow.id);
    return { rows: [tokenRow, ...others], alone: sent.size === 1 && sent.has(tokenRow.id) };
  }

  private match(address: string | null, transaction: { rows: RecipientRow[]; alone: boolean }, tokenRow: RecipientRow, entryCount: number): RecipientRow | undefined {
    const normalized = address ? normalizeAddress(address.replace(/^<|>$/g, '').trim())?.address.toLowerCase() : undefined;
    const exact = normalized ? transaction.rows.find((row) => row.address.toLowerCase() === normalized) : undefined;
    if (exact) return exact;
    // One address reported, and the transaction was for the token's recipient alone: forwarding
    // or an alias changed the address (or an ARF report redacted it). With others in the
    // transaction, any of them could have written the report, so an unnamed one changes nothing.
    if (entryCount === 1 && transaction.alone) return tokenRow;
    return undefined;
  }

  private applyOne(reportId: number, kind: ReportToApply['kind'], entry: RecipientToApply, row: RecipientRow, at: string): string {
    const classification = classificationOf(entry);
    const detail = [entry.status, entry.diagnosticCode].filter(Boolean).join(' ') || null;
    if (kind === 'complaint') {
      const evidence = classification ?? { enhancedCode: entry.status, text: entry.diagnosticCode };
      this.suppressions.add({ address: row.address, type: 'complaints', source: 'delayed', evidence, queueId: row.queueId, at, actor: 'relay' });
      this.event(at, 'complained', row, detail, null, null, reportId);
      return 'complained; added to complaints';
    }
    const action = (entry.action ?? '').toLowerCase();
    if (kind === 'delay' || action === 'delayed') {
      this.event(at, 'delayed', row, detail, null, classification, reportId);
      return 'delayed';
    }
    if (action !== '' && action !== 'failed') return `not a failure (${action})`;
    // The remote MTA gave up: for us the delivery failed for good (permanent_fail, never retried),
    // whatever class its Status has; the event keeps the report's own severity, and only a
    // failure the report itself calls permanent can put the address on the bounces list.
    const reason = classification ? this.policy.reasonOf(classification) : 'bounced';
    this.recipients.finish(row.id, 'bounced', detail, at);
    this.event(at, 'permanent_fail', row, detail, reason, classification, reportId);
    if (classification && this.policy.suppresses(classification)) {
      this.suppressions.add({ address: row.address, type: 'bounces', source: 'delayed', evidence: classification, queueId: row.queueId, at, actor: 'relay' });
      return `bounced (${classification.category}); added to bounces`;
    }
    if (!classification) return 'bounced (not classified)';
    return `${reason} (${classification.category}, ${classification.type})`;
  }

  private event(at: string, event: 'complained' | 'delayed' | 'permanent_fail', row: RecipientRow, detail: string | null, reason: string | null, c: Classification | null, reportId: number): void {
    const sent = this.deliveringAttempt.get(row.id) as { localIp: string | null; mxHost: string | null } | undefined;
    this.recipients.event({
      event,
      at,
      messageId: row.messageId,
      recipientId: row.id,
      detail,
      source: 'delayed',
      reason,
      classification: c,
      reportId,
      localIp: sent?.localIp ?? null,
      mxHost: sent?.mxHost ?? null,
    });
  }
}

/**
 * The parser's classification of a recipient, as the event and the suppression store it: the
 * parser's severity, type, category and Status; the reply code and text read from the
 * Diagnostic-Code it classified (reading, not classifying again). Null when the parser did not
 * classify the recipient (it did not fail).
 */
export function classificationOf(entry: RecipientToApply): Classification | null {
  if (entry.severity === null || entry.type === null || entry.category === null) return null;
  const reply = entry.diagnosticCode ? parseReply(entry.diagnosticCode) : null;
  return {
    severity: entry.severity,
    type: entry.type,
    category: entry.category,
    code: reply?.code ?? null,
    enhancedCode: entry.status ?? reply?.enhancedCode ?? null,
    text: reply?.text ?? '',
  };
}
