/**
 * The labelled DSN corpus (../shared/corpus/dsn, Sisimai's set-of-emails with expected results):
 * reading its manifest and scoring the report parser against it. Shared by `npm run eval:dsn`
 * (bench/eval-dsn.ts) and the corpus test (test/report-parser.test.ts). The corpus is read where
 * it lies, never copied into the project.
 *
 * Scoring (manifest `matching`): expected rows carry no address, so each file's rows are paired
 * with ours as a multiset (a row of ours that agrees goes first, the rest in order). A recipient counts as found when the paired row names an address. Severity
 * agrees when it equals the expected one (from the Status class); a row that is not a bounce
 * (complaint, auto-reply, delivered: expected severity `unknown`/`success`) agrees when ours has no
 * severity. Category agrees when it is in the row's `categories_ok`, or, for a row that is not a
 * bounce, when ours has no category.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BounceRules } from '../src/bounces/classifier.js';
import { parseReport, type ParsedReport, type ReportPatterns, type ReportRecipient } from '../src/bounces/report/index.js';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_CORPUS_DIR = resolve(PROJECT_ROOT, '../shared/corpus/dsn');

export interface ExpectedRecipient {
  kind: string;
  reason: string;
  status: string;
  status_pseudo: boolean;
  severity: string;
  categories_ok: string[];
  spec_type: string;
  feedback_type?: string;
}

export interface CorpusEntry {
  path: string;
  group: string;
  format: string;
  kind: string;
  recipients: ExpectedRecipient[];
}

export interface Miss {
  file: string;
  index: number;
  what: string[];
  expected: string;
  got: string;
}

export interface CorpusScore {
  files: number;
  parsed: number;
  expectedRecipients: number;
  foundRecipients: number;
  severityAgree: number;
  categoryAgree: number;
  /** Files Sisimai keeps as "not a bounce" in which we classified a hard bounce. */
  hardOnNotBounce: string[];
  misses: Miss[];
  /** Parsed reports, by path, for callers that want to look closer. */
  reports: Map<string, ParsedReport>;
}

export function corpusExists(dir = DEFAULT_CORPUS_DIR): boolean {
  return existsSync(join(dir, 'manifest.json'));
}

export function readCorpus(dir = DEFAULT_CORPUS_DIR): { entries: CorpusEntry[]; files: Map<string, Buffer> } {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { entries: CorpusEntry[] };
  const files = new Map<string, Buffer>();
  for (const entry of manifest.entries) files.set(entry.path, readFileSync(join(dir, entry.path)));
  return { entries: manifest.entries, files };
}

const NOT_A_BOUNCE = new Set(['unknown', 'success']);

/** What the parser is given while scoring; the defaults are config/bounce-rules.json and config/ndr-patterns.json. */
export interface ScoreOptions {
  rules?: BounceRules;
  patterns?: ReportPatterns;
}

export async function scoreCorpus(dir = DEFAULT_CORPUS_DIR, options: ScoreOptions = {}): Promise<CorpusScore> {
  const { entries, files } = readCorpus(dir);
  return scoreEntries(entries, files, options);
}

/** Scores these manifest entries (their bytes in `files`, by path) with the given rules and patterns. */
export async function scoreEntries(
  entries: readonly CorpusEntry[],
  files: ReadonlyMap<string, Buffer>,
  options: ScoreOptions = {},
): Promise<CorpusScore> {
  const parseOptions = { ...(options.rules ? { rules: options.rules } : {}), ...(options.patterns ? { patterns: options.patterns } : {}) };
  const score = emptyScore(entries.length);
  for (const entry of entries) {
    const raw = files.get(entry.path) ?? Buffer.alloc(0);
    let report: ParsedReport;
    try {
      report = await parseReport(raw, parseOptions);
    } catch (error) {
      score.misses.push({ file: entry.path, index: 0, what: ['threw'], expected: entry.kind, got: String(error) });
      continue;
    }
    score.reports.set(entry.path, report);
    if (report.error === undefined) score.parsed += 1;
    if (entry.recipients.length === 0 && report.recipients.some((r) => r.type === 'hard' && r.severity === 'permanent')) {
      score.hardOnNotBounce.push(entry.path);
    }
    const paired = pairRows(entry.recipients, report.recipients);
    entry.recipients.forEach((expected, index) => {
      score.expectedRecipients += 1;
      const got = paired[index];
      const what: string[] = [];
      if (got?.recipient != null) score.foundRecipients += 1;
      else what.push('recipient');
      const bounce = !NOT_A_BOUNCE.has(expected.severity);
      const severityOk = got !== undefined && (bounce ? got.severity === expected.severity : got.severity === null);
      if (severityOk) score.severityAgree += 1;
      else what.push('severity');
      const categoryOk =
        got !== undefined && (bounce ? got.category !== null && expected.categories_ok.includes(got.category) : got.category === null);
      if (categoryOk) score.categoryAgree += 1;
      else what.push('category');
      if (what.length > 0) {
        score.misses.push({
          file: entry.path.replace(/^maildir\/[^/]+\//, ''),
          index,
          what,
          expected: `${expected.reason} ${expected.status || '-'} ${expected.severity} [${expected.categories_ok.join('|') || 'none'}]`,
          got:
            got === undefined
              ? `${report.kind}/${report.format}: no row${report.error ? ` (${report.error})` : ''}`
              : `${report.kind}/${report.format} ${got.recipient ?? '(no address)'} ${got.status ?? '-'} ${got.severity ?? '-'} ${got.category ?? '-'} | ${truncate(got.diagnosticCode ?? '', 140)}`,
        });
      }
    });
  }
  return score;
}

const NOT_A_BOUNCE_ROW = (row: ExpectedRecipient): boolean => NOT_A_BOUNCE.has(row.severity);

function agrees(expected: ExpectedRecipient, got: ReportRecipient): boolean {
  if (NOT_A_BOUNCE_ROW(expected)) return got.severity === null && got.category === null;
  return got.severity === expected.severity && got.category !== null && expected.categories_ok.includes(got.category);
}

/**
 * Pairs a file's expected rows with ours (manifest `matching`: in order, or as a multiset): a row
 * of ours that agrees with an expected row is paired with it first, whatever their positions;
 * the rest are paired in order. Only files with several recipients can differ from plain order.
 */
function pairRows(expected: readonly ExpectedRecipient[], got: readonly ReportRecipient[]): Array<ReportRecipient | undefined> {
  const paired: Array<ReportRecipient | undefined> = new Array(expected.length).fill(undefined);
  const used = new Set<number>();
  expected.forEach((row, index) => {
    const same = got[index];
    if (same !== undefined && agrees(row, same)) {
      paired[index] = same;
      used.add(index);
    }
  });
  expected.forEach((row, index) => {
    if (paired[index] !== undefined) return;
    const match = got.findIndex((candidate, at) => !used.has(at) && agrees(row, candidate));
    if (match !== -1) {
      paired[index] = got[match];
      used.add(match);
    }
  });
  expected.forEach((_, index) => {
    if (paired[index] !== undefined) return;
    const next = used.has(index) ? got.findIndex((_, at) => !used.has(at)) : index;
    if (next !== -1 && next < got.length) {
      paired[index] = got[next];
      used.add(next);
    }
  });
  return paired;
}

function truncate(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

export function percent(part: number, whole: number): number {
  return whole === 0 ? 100 : (100 * part) / whole;
}

/** A score of `files` files before any is read. */
export function emptyScore(files = 0): CorpusScore {
  return { files, parsed: 0, expectedRecipients: 0, foundRecipients: 0, severityAgree: 0, categoryAgree: 0, hardOnNotBounce: [], misses: [], reports: new Map() };
}
