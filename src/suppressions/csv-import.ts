import { setImmediate as nextTurn } from 'node:timers/promises';
import { readSuppressionCsv } from './csv.js';
import type { AddSuppression, SuppressionLists, SuppressionType } from './lists.js';

/** A line of the file that did not land, and why. */
export interface ImportLineError {
  line: number;
  message: string;
}

export interface CsvImportOutcome {
  added: number;
  /** In line order. */
  errors: ImportLineError[];
}

export interface CsvImportOptions {
  /**
   * The list of a list's own import (POST /v1/suppressions/bounces, the panel's list choice): rows
   * without a type column go on it and a row naming another list is refused. Null: every row names
   * its list in a type column.
   */
  list: SuppressionType | null;
  /** Who imports, for the audit: `api:<token name>`, `panel:<token name>`. */
  actor: string;
  /** The message for a row that names another list than `list`: where that row can go instead. */
  otherList(rowType: SuppressionType, list: SuppressionType): string;
  /** The audit's reason for rows without a reason column. */
  reason?: string;
  /** Where a long import says how far it got (every PROGRESS_ROWS rows) and how long it took. */
  log?: { info(details: object, message: string): void };
}

/** CSV rows stored per transaction; between two, the event loop serves mail and other requests. */
const IMPORT_BATCH_ROWS = 1_000;
/** A long import logs how far it got every this many rows. */
const PROGRESS_ROWS = 100_000;

/**
 * Imports a CSV file (header row naming address, and type and reason if it has them) onto the
 * suppression lists, the one way the API and the panel both do it: read and stored in batches of
 * IMPORT_BATCH_ROWS rows, each batch in its own transaction, with a turn of the event loop between
 * them, so a million-row file does not hold up SMTP replies. Each stored batch stays stored; a bad
 * row is reported by its line and the good rows land.
 */
export async function importSuppressionCsv(lists: SuppressionLists, text: string, options: CsvImportOptions): Promise<CsvImportOutcome> {
  const errors: ImportLineError[] = [];
  let added = 0;
  let read = 0;
  let nextProgress = PROGRESS_ROWS;
  const started = Date.now();
  for await (const batch of readSuppressionCsv(text, options.list ?? undefined, IMPORT_BATCH_ROWS)) {
    errors.push(...batch.errors);
    const good: AddSuppression[] = [];
    for (const row of batch.rows) {
      if (options.list !== null && row.type !== options.list) {
        errors.push({ line: row.line, message: options.otherList(row.type, options.list) });
      } else {
        good.push({ address: row.address, type: row.type, source: 'import', reason: row.reason ?? options.reason ?? null, actor: options.actor });
      }
    }
    lists.addAll(good);
    added += good.length;
    read += batch.rows.length + batch.errors.length;
    if (read >= nextProgress) {
      options.log?.info({ rows: read, added, refused: errors.length }, 'suppression import under way');
      nextProgress += PROGRESS_ROWS;
    }
    await nextTurn();
  }
  if (read >= PROGRESS_ROWS) options.log?.info({ rows: read, added, refused: errors.length, ms: Date.now() - started }, 'suppression import done');
  errors.sort((a, b) => a.line - b.line);
  return { added, errors };
}
