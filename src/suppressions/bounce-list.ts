import type { Database, Statement } from 'better-sqlite3';
import type { Classification } from '../bounces/classifier.js';

export type SuppressionType = 'bounces' | 'complaints' | 'unsubscribes';
export type SuppressionSource = 'immediate' | 'delayed' | 'manual' | 'import';

/** Reads and writes the suppression table for the delivery path (issue 5 builds the rest). */
export class SuppressionList {
  private readonly find: Statement;
  private readonly upsert: Statement;

  constructor(db: Database) {
    this.find = db.prepare('SELECT type FROM suppressions WHERE address = ? LIMIT 1');
    // A repeat keeps the first time and counts; the evidence is the latest.
    this.upsert = db.prepare(`
      INSERT INTO suppressions (address, type, source, code, enhanced_code, text, category, queue_id, first_at, last_at, count)
      VALUES (@address, @type, @source, @code, @enhancedCode, @text, @category, @queueId, @at, @at, 1)
      ON CONFLICT (address, type) DO UPDATE SET
        source = excluded.source, code = excluded.code, enhanced_code = excluded.enhanced_code, text = excluded.text,
        category = excluded.category, queue_id = excluded.queue_id, last_at = excluded.last_at, count = count + 1`);
  }

  /** The list an address is on, if any: mail to it is dropped before it is sent. */
  suppressionFor(address: string): SuppressionType | null {
    const row = this.find.get(address) as { type: SuppressionType } | undefined;
    return row?.type ?? null;
  }

  add(entry: { address: string; type: SuppressionType; source: SuppressionSource; evidence: Classification; queueId: string; at: string }): void {
    this.upsert.run({
      address: entry.address,
      type: entry.type,
      source: entry.source,
      code: entry.evidence.code,
      enhancedCode: entry.evidence.enhancedCode,
      text: entry.evidence.text,
      category: entry.evidence.category,
      queueId: entry.queueId,
      at: entry.at,
    });
  }
}
