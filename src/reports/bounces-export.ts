import { stringify } from 'csv-stringify/sync';
import type { BouncesReportQuery, BouncesReportRow, GroupBy } from './bounces.js';

/** The bounces report as a text table, RFC 4180 CSV, or an XLSX workbook. */

export interface BouncesColumn {
  key: keyof BouncesReportRow;
  header: string;
}

/**
 * The columns every format shows, in order: the group (headed by what it is), the bounce text,
 * the amount, then type, category, reason (bounced, blocked, expired, deferred) and the first and
 * last bounce. Grouped by category, the category column would repeat the group, so it is left out.
 */
export function bouncesColumns(groupBy: GroupBy): BouncesColumn[] {
  const columns: BouncesColumn[] = [
    { key: 'group', header: groupBy },
    { key: 'text', header: 'bounce_text' },
    { key: 'amount', header: 'amount' },
    { key: 'bounceType', header: 'type' },
    { key: 'category', header: 'category' },
    { key: 'reason', header: 'reason' },
    { key: 'firstAt', header: 'first_at' },
    { key: 'lastAt', header: 'last_at' },
  ];
  return groupBy === 'category' ? columns.filter((column) => column.key !== 'category') : columns;
}

/** One line naming the period and the filters, e.g. for a title. */
export function describeBouncesQuery(query: BouncesReportQuery): string {
  const what = query.type === 'all' ? 'bounces (hard and soft)' : `${query.type} bounces`;
  const campaign = query.campaign === null ? 'all campaigns' : `campaign ${query.campaign}`;
  const tag = query.tag === null ? '' : `, tag ${query.tag}`;
  return `${what} from ${query.since.toISOString()} to ${query.until.toISOString()} (excluded), ${campaign}${tag}, grouped by ${query.groupBy}`;
}

/** How many bounces the rows count together. */
export function bouncesTotal(rows: readonly BouncesReportRow[]): number {
  return rows.reduce((sum, row) => sum + row.amount, 0);
}

/**
 * The columns a reader sees on screen (the CLI's table and the panel's): the group, the amount,
 * type, category, reason, then the bounce text last, where a long one does not push the other
 * columns apart; first/last times are left to CSV and XLSX.
 */
export function bouncesTableColumns(groupBy: GroupBy): BouncesColumn[] {
  const keys: Array<keyof BouncesReportRow> = ['group', 'amount', 'bounceType', 'category', 'reason', 'text'];
  const all = bouncesColumns(groupBy);
  return keys.map((key) => all.find((column) => column.key === key)).filter((column): column is BouncesColumn => column !== undefined);
}

/** Remote servers write the bounce texts: no control characters (escape sequences) reach a terminal. */
function printable(value: string): string {
  return value.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}

/** An aligned text table for a terminal: a title line, the header, the rows (bouncesTableColumns), a total. */
export function bouncesTable(rows: readonly BouncesReportRow[], query: BouncesReportQuery): string {
  const title = describeBouncesQuery(query);
  if (rows.length === 0) return `${title}\n\nno bounces in this period\n`;
  const columns = bouncesTableColumns(query.groupBy);
  const cells = rows.map((row) => columns.map((column) => printable(String(row[column.key]))));
  const widths = columns.map((column, i) => Math.max(column.header.length, ...cells.map((line) => (line[i] as string).length)));
  const last = columns.length - 1;
  const format = (line: string[]): string =>
    line
      .map((cell, i) => {
        if (columns[i]?.key === 'amount') return cell.padStart(widths[i] as number);
        return i === last ? cell : cell.padEnd(widths[i] as number);
      })
      .join('  ');
  const total = bouncesTotal(rows);
  return [
    title,
    '',
    format(columns.map((column) => column.header)),
    ...cells.map(format),
    '',
    `${total} bounce${total === 1 ? '' : 's'} in ${rows.length} row${rows.length === 1 ? '' : 's'}`,
    '',
  ].join('\n');
}

/**
 * RFC 4180 CSV: a header row, CRLF after every record, fields with a comma, a quote, CR or LF
 * quoted and their quotes doubled. The bounce text comes from remote servers, so a field that a
 * spreadsheet would run as a formula (starting with = + - @, a tab or CR) gets a leading `'`.
 */
export function bouncesCsv(rows: readonly BouncesReportRow[], query: BouncesReportQuery): string {
  const columns = bouncesColumns(query.groupBy);
  return stringify(
    rows.map((row) => columns.map((column) => row[column.key])),
    { header: true, columns: columns.map((column) => column.header), record_delimiter: '\r\n', escape_formulas: true },
  );
}

/** Excel keeps at most this many characters in a cell. */
const EXCEL_CELL_MAX = 32_767;

/** Characters XML 1.0 cannot hold (controls, lone surrogates, U+FFFE/F) are dropped; long texts cut to fit a cell. */
function cellText(value: string): string {
  const clean = value.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '');
  return clean.length > EXCEL_CELL_MAX ? `${clean.slice(0, EXCEL_CELL_MAX - 1)}…` : clean;
}

/**
 * An XLSX workbook (exceljs): sheet "Bounces" with a header row (bold, frozen, filterable) and one
 * row per report row, the amount as a number and times as ISO-8601 UTC text; sheet "Report" names
 * the period, the filters, the totals and when the file was made.
 */
export async function bouncesXlsx(rows: readonly BouncesReportRow[], query: BouncesReportQuery, now: Date = new Date()): Promise<Buffer> {
  // Loaded here, not at start: every `rebound` command imports this module, few write workbooks.
  const { default: ExcelJS } = await import('exceljs');
  const workbook = new ExcelJS.Workbook();
  workbook.creator = 'Rebound';
  workbook.created = now;
  workbook.title = 'Bounces report';

  const columns = bouncesColumns(query.groupBy);
  const sheet = workbook.addWorksheet('Bounces', { views: [{ state: 'frozen', ySplit: 1 }] });
  sheet.columns = columns.map((column) => ({
    header: column.header,
    key: column.key,
    width: column.key === 'text' ? 80 : column.key === 'amount' ? 10 : column.key === 'firstAt' || column.key === 'lastAt' ? 26 : 22,
  }));
  sheet.getRow(1).font = { bold: true };
  sheet.autoFilter = { from: { row: 1, column: 1 }, to: { row: 1, column: columns.length } };
  for (const row of rows) {
    sheet.addRow(columns.map((column) => (column.key === 'amount' ? row.amount : cellText(String(row[column.key])))));
  }

  const about = workbook.addWorksheet('Report');
  about.columns = [{ width: 18 }, { width: 60 }];
  about.addRows([
    ['report', 'bounces'],
    ['since', query.since.toISOString()],
    ['until (excluded)', query.until.toISOString()],
    ['campaign', query.campaign === null ? 'all campaigns' : cellText(query.campaign)],
    ['tag', query.tag === null ? 'all mail' : cellText(query.tag)],
    ['type', query.type],
    ['grouped by', query.groupBy],
    ['rows', rows.length],
    ['bounces', bouncesTotal(rows)],
    ['generated at', now.toISOString()],
  ]);
  about.getColumn(1).font = { bold: true };

  const written = await workbook.xlsx.writeBuffer();
  return Buffer.isBuffer(written) ? written : Buffer.from(written as ArrayBuffer);
}

export type BouncesFileFormat = 'csv' | 'xlsx';

/** A download of the report: what the admin API and the panel send for format=csv or xlsx. */
export interface BouncesFile {
  contentType: string;
  /** bounces-SINCE-UNTIL.csv|xlsx, the days of the period's ends (UTC; until excluded). */
  fileName: string;
  content: string | Buffer;
}

const CONTENT_TYPES: Record<BouncesFileFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
};

/** The report as a file: the CSV `rebound report bounces --format csv` prints, or the workbook `--format xlsx` writes (made now). */
export async function bouncesFile(rows: readonly BouncesReportRow[], query: BouncesReportQuery, format: BouncesFileFormat): Promise<BouncesFile> {
  const name = `bounces-${query.since.toISOString().slice(0, 10)}-${query.until.toISOString().slice(0, 10)}.${format}`;
  const content = format === 'csv' ? bouncesCsv(rows, query) : await bouncesXlsx(rows, query);
  return { contentType: CONTENT_TYPES[format], fileName: name, content };
}
