import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { normalizeAddress } from '../address.js';
import { SUPPRESSION_TYPES, type SuppressionEntry, type SuppressionType } from './lists.js';

export interface CsvImportRow {
  /** The line of the file the row came from (1 = the first line). */
  line: number;
  address: string;
  type: SuppressionType;
  reason: string | null;
}

export interface CsvImportResult {
  rows: CsvImportRow[];
  errors: Array<{ line: number; message: string }>;
}

const EXPORT_COLUMNS = ['address', 'type', 'source', 'category', 'code', 'enhanced_code', 'text', 'reason', 'queue_id', 'first_at', 'last_at', 'count'] as const;

/**
 * Reads an import file: a header row naming at least `address` (also `type` and `reason`, in any
 * order; Mailgun's exports call the reason `error` and are read too). Each bad row is reported
 * with its line and the good rows still land. Without a `type` column every row takes
 * `defaultType`.
 */
export function parseSuppressionCsv(text: string, defaultType?: SuppressionType): CsvImportResult {
  let records: string[][];
  try {
    records = parse(text.replace(/^\uFEFF/, ''), { relax_column_count: true, skip_empty_lines: true, trim: true, info: false }) as string[][];
  } catch (error) {
    return { rows: [], errors: [{ line: (error as { lines?: number }).lines ?? 1, message: `not readable as CSV: ${(error as Error).message}` }] };
  }
  const lines = lineNumbers(text);
  const [header, ...body] = records;
  if (!header) return { rows: [], errors: [{ line: 1, message: 'the file is empty; expected a header row with an "address" column' }] };
  const columns = header.map((name) => name.toLowerCase());
  const addressAt = columns.indexOf('address');
  const typeAt = columns.indexOf('type');
  const reasonAt = columns.indexOf('reason') !== -1 ? columns.indexOf('reason') : columns.indexOf('error');
  if (addressAt === -1) return { rows: [], errors: [{ line: 1, message: 'the header row has no "address" column' }] };
  if (typeAt === -1 && !defaultType) return { rows: [], errors: [{ line: 1, message: `the header row has no "type" column; add one (${SUPPRESSION_TYPES.join(', ')}) or give a type` }] };

  const result: CsvImportResult = { rows: [], errors: [] };
  body.forEach((record, index) => {
    const line = lines[index + 1] ?? index + 2;
    const rawAddress = record[addressAt] ?? '';
    const normalized = normalizeAddress(rawAddress);
    if (!normalized) {
      result.errors.push({ line, message: `"${rawAddress}" is not an email address` });
      return;
    }
    const type = typeAt === -1 ? defaultType : record[typeAt]?.toLowerCase();
    if (!SUPPRESSION_TYPES.includes(type as SuppressionType)) {
      result.errors.push({ line, message: `type "${record[typeAt] ?? ''}" is not one of ${SUPPRESSION_TYPES.join(', ')}` });
      return;
    }
    const reason = reasonAt === -1 ? null : record[reasonAt] || null;
    result.rows.push({ line, address: normalized.address, type: type as SuppressionType, reason });
  });
  return result;
}

/** The line each CSV record starts on, so errors name lines a person can find (quoted fields may span lines). */
function lineNumbers(text: string): number[] {
  const starts: number[] = [];
  let line = 1;
  let inQuotes = false;
  let atRecordStart = true;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (atRecordStart && char !== '\n' && char !== '\r') {
      starts.push(line);
      atRecordStart = false;
    }
    if (char === '"') inQuotes = !inQuotes;
    else if (char === '\n') {
      line++;
      if (!inQuotes) atRecordStart = true;
    }
  }
  return starts;
}

/** RFC 4180 export: CRLF line ends, a header row, fields quoted when they need it. */
export function suppressionsCsv(entries: readonly SuppressionEntry[]): string {
  return stringify(
    entries.map((e) => [e.address, e.type, e.source, e.category, e.code, e.enhancedCode, e.text, e.reason, e.queueId, e.firstAt, e.lastAt, e.count]),
    { header: true, columns: [...EXPORT_COLUMNS], record_delimiter: '\r\n' },
  );
}
