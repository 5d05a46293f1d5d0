import { Readable } from 'node:stream';
import { parse as parseStream, type Options } from 'csv-parse';
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
 * Empty lines are kept as records (and skipped below) so that each record starts on the line
 * after the one the previous record ended on: errors name lines a person can find, quoted fields
 * spanning lines included. Any of CRLF, LF or CR ends a record, even mixed in one file.
 */
const PARSE_OPTIONS: Options = { relax_column_count: true, skip_empty_lines: false, trim: true, info: true, bom: true, record_delimiter: ['\r\n', '\n', '\r'] };

/** What csv-parse gives with `info: true`: the record and the line it ended on. */
interface ParsedRecord {
  record: string[];
  info: { lines: number };
}

/** Slices of the text the streaming parser takes one at a time: bounded work between reads. */
const SLICE_CHARS = 16 * 1024;

/**
 * Turns parsed records into rows, in order: the first non-empty record is the header row naming
 * at least `address` (also `type` and `reason`, in any order; Mailgun's exports call the reason
 * `error` and are read too). Without a `type` column every row takes `defaultType`.
 */
class RowReader {
  private columns: { address: number; type: number; reason: number } | null = null;
  private previousEnd = 0;
  /** Set when the header makes the file unreadable: read no further. */
  stopped = false;

  constructor(private readonly defaultType: SuppressionType | undefined) {}

  read({ record, info }: ParsedRecord, into: CsvImportResult): void {
    const line = this.previousEnd + 1;
    this.previousEnd = info.lines;
    if (record.every((field) => field === '')) return;
    if (this.columns === null) {
      this.header(record, into);
      return;
    }
    const { address: addressAt, type: typeAt, reason: reasonAt } = this.columns;
    const rawAddress = record[addressAt] ?? '';
    const normalized = normalizeAddress(rawAddress);
    if (!normalized) {
      into.errors.push({ line, message: `"${rawAddress}" is not an email address` });
      return;
    }
    const type = typeAt === -1 ? this.defaultType : record[typeAt]?.toLowerCase();
    if (!SUPPRESSION_TYPES.includes(type as SuppressionType)) {
      into.errors.push({ line, message: `type "${record[typeAt] ?? ''}" is not one of ${SUPPRESSION_TYPES.join(', ')}` });
      return;
    }
    const reason = reasonAt === -1 ? null : record[reasonAt] || null;
    into.rows.push({ line, address: normalized.address, type: type as SuppressionType, reason });
  }

  /** The line the last record read ended on. */
  get lastLine(): number {
    return this.previousEnd;
  }

  /** At the end of the file: a file without a header row is an error of its own. */
  finish(into: CsvImportResult): void {
    if (this.columns === null && !this.stopped) into.errors.push({ line: 1, message: 'the file is empty; expected a header row with an "address" column' });
  }

  private header(record: string[], into: CsvImportResult): void {
    const names = record.map((name) => name.toLowerCase());
    const reason = names.indexOf('reason') !== -1 ? names.indexOf('reason') : names.indexOf('error');
    const columns = { address: names.indexOf('address'), type: names.indexOf('type'), reason };
    const line = this.previousEnd;
    if (columns.address === -1) {
      into.errors.push({ line, message: 'the header row has no "address" column' });
      this.stopped = true;
    } else if (columns.type === -1 && !this.defaultType) {
      into.errors.push({ line, message: `the header row has no "type" column; add one (${SUPPRESSION_TYPES.join(', ')}) or give a type` });
      this.stopped = true;
    } else {
      this.columns = columns;
    }
  }
}

function unreadable(error: unknown): { line: number; message: string } {
  return { line: (error as { lines?: number }).lines ?? 1, message: `not readable as CSV: ${(error as Error).message}` };
}

/**
 * Reads an import file at once. Each bad row is reported with its line and the good rows still
 * land; a file that is not CSV at all gives one error and no rows.
 */
export function parseSuppressionCsv(text: string, defaultType?: SuppressionType): CsvImportResult {
  let records: ParsedRecord[];
  try {
    records = parse(text, PARSE_OPTIONS) as unknown as ParsedRecord[];
  } catch (error) {
    return { rows: [], errors: [unreadable(error)] };
  }
  const result: CsvImportResult = { rows: [], errors: [] };
  const reader = new RowReader(defaultType);
  for (const record of records) {
    if (reader.stopped) break;
    reader.read(record, result);
  }
  reader.finish(result);
  return result;
}

/**
 * Reads an import file in batches of about `batchSize` rows and errors, parsing a slice of the
 * text at a time, so that a caller can store each batch and give the event loop back in between
 * (a million-row file must not stall mail). Rows and errors come in file order. Where the CSV
 * breaks (an unclosed quote), the last batch ends with that error, which names the last line read.
 */
export async function* readSuppressionCsv(text: string, defaultType: SuppressionType | undefined, batchSize: number): AsyncGenerator<CsvImportResult> {
  const reader = new RowReader(defaultType);
  let batch: CsvImportResult = { rows: [], errors: [] };
  const source = Readable.from(slices(text), { objectMode: false });
  const parser = source.pipe(parseStream(PARSE_OPTIONS));
  try {
    for await (const record of parser as AsyncIterable<ParsedRecord>) {
      reader.read(record, batch);
      if (reader.stopped) break;
      if (batch.rows.length + batch.errors.length >= batchSize) {
        yield batch;
        batch = { rows: [], errors: [] };
      }
    }
    reader.finish(batch);
  } catch (error) {
    const { line, message } = unreadable(error);
    batch.errors.push({ line, message: `${message}; nothing from line ${reader.lastLine + 1} on was imported: fix the file and import it again` });
  } finally {
    source.destroy();
    parser.destroy();
  }
  yield batch;
}

function* slices(text: string): Generator<string> {
  let at = 0;
  while (at < text.length) {
    let end = Math.min(at + SLICE_CHARS, text.length);
    // Never between the two halves of a surrogate pair: each slice is encoded on its own.
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    yield text.slice(at, end);
    at = end;
  }
}

/** RFC 4180 export: CRLF line ends, a header row, fields quoted when they need it. */
export function suppressionsCsv(entries: readonly SuppressionEntry[]): string {
  return stringify(
    entries.map((e) => [e.address, e.type, e.source, e.category, e.code, e.enhancedCode, e.text, e.reason, e.queueId, e.firstAt, e.lastAt, e.count]),
    { header: true, columns: [...EXPORT_COLUMNS], record_delimiter: '\r\n' },
  );
}

/**
 * The text of the given lines of a file (1 = the first), split as the reader splits records (CRLF,
 * LF or CR) and without a leading byte-order mark: what an error report shows beside a line number.
 * Stops after the last line wanted.
 */
export function linesAt(text: string, wanted: ReadonlySet<number>): Map<number, string> {
  const found = new Map<number, string>();
  if (wanted.size === 0) return found;
  const last = Math.max(...wanted);
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lineEnd = /\r\n|\n|\r/g;
  let start = 0;
  for (let line = 1; line <= last && start <= body.length; line++) {
    const match = lineEnd.exec(body);
    const end = match ? match.index : body.length;
    if (wanted.has(line)) found.set(line, body.slice(start, end));
    if (!match) break;
    start = lineEnd.lastIndex;
  }
  return found;
}
