import type { Database, Statement } from 'better-sqlite3';

/** A stored bounce report's parse status and, once parsed, its kind. */
export interface ReportParseState {
  id: number;
  status: 'pending' | 'parsed' | 'failed';
  kind: string | null;
}

/**
 * The inbound_reports table read for a counter: its ids only grow, so reports received since a
 * given id are a range on the rowid, and a report still pending is read again by its id alone.
 */
export class ReportCounts {
  private readonly maxReportId: Statement;
  private readonly reportsAfter: Statement;
  private readonly reportById: Statement;

  constructor(db: Database) {
    this.maxReportId = db.prepare('SELECT coalesce(max(id), 0) FROM inbound_reports').pluck();
    this.reportsAfter = db.prepare('SELECT id, parse_status AS status, kind FROM inbound_reports WHERE id > ? ORDER BY id');
    this.reportById = db.prepare('SELECT id, parse_status AS status, kind FROM inbound_reports WHERE id = ?');
  }

  /** The newest report's id; 0 with none. */
  newestId(): number {
    return this.maxReportId.get() as number;
  }

  /** Reports with an id above afterId, oldest first. */
  after(afterId: number): ReportParseState[] {
    return this.reportsAfter.all(afterId) as ReportParseState[];
  }

  /** One report's state; undefined once retention deleted it. */
  byId(id: number): ReportParseState | undefined {
    return this.reportById.get(id) as ReportParseState | undefined;
  }
}
