import type { Database, Statement } from 'better-sqlite3';
import { GroupCommit } from '../store/group-commit.js';
import { queueForwardedReport } from '../shared/forwarded-reports.js';

export interface IncomingReport {
  receivedAt: Date;
  clientIp: string;
  clientHelo: string | null;
  mailFrom: string;
  rcptTo: string[];
  /** The recipient row the VERP token in RCPT TO names, when there is one. */
  recipientId: number | null;
  raw: Buffer;
  /**
   * The node whose return-path token the report carries, when it is another node's (store.shared.url):
   * the report is kept here as applied ("forwarded to node <name>") and queued for that node.
   */
  forwardTo?: string | null;
  /** Runs in the transaction that stores the report (a forwarded report's cursor). */
  alsoCommit?: () => void;
}

export interface StoredReport {
  id: number;
  receivedAt: string;
  /** The envelope recipients, comma-separated, as received (one of them may carry the token). */
  rcptTo: string;
  recipientId: number | null;
  raw: Buffer;
  parseStatus: 'pending' | 'parsed' | 'failed';
  appliedAt: string | null;
}

/** The inbound_reports table: raw reports in, parse and apply results recorded against them. */
export class ReportStore {
  private readonly insert: Statement;
  private readonly commits: GroupCommit<IncomingReport & { id?: number }>;
  private readonly selectOne: Statement;
  private readonly selectIds: Statement;
  private readonly selectUnapplied: Statement;
  private readonly selectAllIds: Statement;
  private readonly selectAppliedAt: Statement;
  private readonly updateParsed: Statement;
  private readonly updateApplied: Statement;

  constructor(db: Database) {
    this.insert = db.prepare(`
      INSERT INTO inbound_reports (received_at, client_ip, client_helo, mail_from, rcpt_to, recipient_id, size, raw)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.commits = new GroupCommit(db, (report) => {
      const { lastInsertRowid } = this.insert.run(
        report.receivedAt.toISOString(),
        report.clientIp,
        report.clientHelo,
        report.mailFrom,
        report.rcptTo.join(', '),
        report.recipientId,
        report.raw.length,
        report.raw,
      );
      report.id = Number(lastInsertRowid);
      if (report.forwardTo) {
        queueForwardedReport(db, report.forwardTo, report);
        this.updateApplied.run(report.receivedAt.toISOString(), `forwarded to node ${report.forwardTo}`, report.id);
      }
      report.alsoCommit?.();
    }, { maxBatch: 64 });
    this.selectOne = db.prepare(`
      SELECT id, received_at AS receivedAt, rcpt_to AS rcptTo, recipient_id AS recipientId, raw, parse_status AS parseStatus, applied_at AS appliedAt
        FROM inbound_reports WHERE id = ?`);
    this.selectIds = db.prepare(`SELECT id FROM inbound_reports WHERE parse_status = ? ORDER BY id`);
    // Parsing, applying and marking are one transaction, so "not applied and not a failed parse"
    // is exactly the reports whose processing a crash cut short (or never began).
    this.selectUnapplied = db.prepare(`SELECT id FROM inbound_reports WHERE applied_at IS NULL AND parse_status <> 'failed' ORDER BY id`);
    this.selectAppliedAt = db.prepare(`SELECT applied_at FROM inbound_reports WHERE id = ?`).pluck();
    this.selectAllIds = db.prepare(`SELECT id FROM inbound_reports ORDER BY id`);
    this.updateParsed = db.prepare(`
      UPDATE inbound_reports SET parse_status = ?, parse_error = ?, kind = ?, format = ?, parsed_at = ? WHERE id = ?`);
    this.updateApplied = db.prepare(`UPDATE inbound_reports SET applied_at = ?, outcome = ? WHERE id = ?`);
  }

  /** Resolves with the report's id once it is committed: only then is the 250 sent. */
  async store(report: IncomingReport): Promise<number> {
    const item: IncomingReport & { id?: number } = { ...report };
    await this.commits.add(item);
    return item.id as number;
  }

  load(id: number): StoredReport | undefined {
    return this.selectOne.get(id) as StoredReport | undefined;
  }

  idsWithStatus(status: 'pending' | 'failed'): number[] {
    return (this.selectIds.all(status) as Array<{ id: number }>).map((row) => row.id);
  }

  /** Reports to process at start: stored but never applied, and not a failed parse. */
  unappliedIds(): number[] {
    return (this.selectUnapplied.all() as Array<{ id: number }>).map((row) => row.id);
  }

  /** When the report was applied, read now (inside the caller's transaction); null if never. */
  appliedAt(id: number): string | null {
    return (this.selectAppliedAt.get(id) as string | null | undefined) ?? null;
  }

  allIds(): number[] {
    return (this.selectAllIds.all() as Array<{ id: number }>).map((row) => row.id);
  }

  markParsed(id: number, result: { ok: boolean; error: string | null; kind: string | null; format: string | null }): void {
    this.updateParsed.run(result.ok ? 'parsed' : 'failed', result.error, result.kind, result.format, new Date().toISOString(), id);
  }

  markApplied(id: number, outcome: string): void {
    this.updateApplied.run(new Date().toISOString(), outcome, id);
  }

  close(): void {
    this.commits.close();
  }
}
