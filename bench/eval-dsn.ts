/**
 * `npm run eval:dsn`: the report parser against the labelled corpus in ../shared/corpus/dsn.
 * Prints files parsed, recipients found, severity and category agreement, the table of misses,
 * and the parse throughput (reports per second on one core, over the corpus). Skips with a
 * message (exit 0) when the corpus is not there. Scoring rules: bench/dsn-corpus.ts.
 *
 *   npx tsx bench/eval-dsn.ts [--corpus DIR] [--holdout-by family] [--no-misses] [--no-bench] [--seconds N] [--json]
 *
 * With --holdout-by family it also prints the held-out score (bench/dsn-holdout.ts): each MTA or
 * provider family scored without the rules and NDR patterns written for it.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { parseReport } from '../src/bounces/report/index.js';
import { corpusExists, DEFAULT_CORPUS_DIR, percent, readCorpus, scoreCorpus, type CorpusScore } from './dsn-corpus.js';
import { scoreHoldoutByFamily, type HoldoutScore } from './dsn-holdout.js';

const HELP = `Usage: npm run eval:dsn -- [options]

Options:
  --corpus DIR   the corpus folder (default ../shared/corpus/dsn, next to the project)
  --holdout-by family
                 also score each MTA/provider family without the rules tagged "mta": FAMILY
                 (config/bounce-rules.json) and the NDR family FAMILY (config/ndr-patterns.json),
                 and print that held-out score beside the usual one
  --no-misses    do not print the table of misses
  --no-bench     skip the throughput measurement
  --seconds N    how long to measure throughput (default 3; at most 60)
  --json         print one JSON object instead of text
  --help         show this help`;

const TARGETS = { recipients: 98, severity: 97, category: 92, throughput: 2000 };

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      corpus: { type: 'string' },
      'holdout-by': { type: 'string' },
      'no-misses': { type: 'boolean' },
      'no-bench': { type: 'boolean' },
      seconds: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const dir = values.corpus ?? DEFAULT_CORPUS_DIR;
  if (!corpusExists(dir)) {
    console.log(`eval:dsn: no corpus at ${dir} (manifest.json missing); skipped.`);
    return;
  }
  const holdoutBy = values['holdout-by'];
  if (holdoutBy !== undefined && holdoutBy !== 'family') {
    console.error(`eval:dsn: --holdout-by "${holdoutBy}" is not known; the one way to hold out is "family"`);
    process.exit(2);
  }
  const holdout = holdoutBy === 'family' ? await scoreHoldoutByFamily(dir) : null;
  const score = holdout?.normal ?? (await scoreCorpus(dir));
  const throughput = values['no-bench'] ? null : await measureThroughput(dir, Math.min(60, Number(values.seconds ?? 3) || 3));
  const figures = {
    files: score.files,
    parsedWithoutError: score.parsed,
    recipientsExpected: score.expectedRecipients,
    recipientsFound: score.foundRecipients,
    recipientsFoundPercent: round(percent(score.foundRecipients, score.expectedRecipients)),
    severityPercent: round(percent(score.severityAgree, score.expectedRecipients)),
    categoryPercent: round(percent(score.categoryAgree, score.expectedRecipients)),
    hardBounceOnNotBounce: score.hardOnNotBounce,
    heldOut: holdout === null ? null : holdoutFigures(holdout),
    reportsPerSecond: throughput === null ? null : Math.round(throughput.perSecond),
  };
  if (values.json) {
    console.log(JSON.stringify({ ...figures, misses: score.misses }, null, 2));
    return;
  }
  const mark = (value: number, target: number): string => (value >= target ? 'ok' : `below target ${target}`);
  console.log(`DSN corpus: ${dir}`);
  console.log(`  files parsed without error  ${score.parsed} / ${score.files}`);
  console.log(
    `  recipients found            ${score.foundRecipients} / ${score.expectedRecipients}  ${figures.recipientsFoundPercent}%  (${mark(figures.recipientsFoundPercent, TARGETS.recipients)})`,
  );
  console.log(
    `  severity agreement          ${score.severityAgree} / ${score.expectedRecipients}  ${figures.severityPercent}%  (${mark(figures.severityPercent, TARGETS.severity)})`,
  );
  console.log(
    `  category agreement          ${score.categoryAgree} / ${score.expectedRecipients}  ${figures.categoryPercent}%  (${mark(figures.categoryPercent, TARGETS.category)})`,
  );
  console.log(`  hard bounces in not-bounces ${score.hardOnNotBounce.length === 0 ? 'none' : score.hardOnNotBounce.join(', ')}`);
  if (holdout !== null) printHoldout(holdout);
  if (throughput !== null) {
    console.log(
      `  throughput (one core)       ${Math.round(throughput.perSecond)} reports/s  (${throughput.reports} reports in ${throughput.seconds.toFixed(2)} s; ${mark(throughput.perSecond, TARGETS.throughput)})`,
    );
  }
  if (!values['no-misses'] && score.misses.length > 0) {
    console.log(`\nMisses (${score.misses.length}): file #row  missed  expected (reason status severity [categories])  ->  got`);
    for (const miss of score.misses) {
      console.log(`  ${miss.file} #${miss.index}  ${miss.what.join('+')}\n      expected ${miss.expected}\n      got      ${miss.got}`);
    }
  }
}

function rates(score: CorpusScore): { recipients: number; severity: number; category: number } {
  return {
    recipients: round(percent(score.foundRecipients, score.expectedRecipients)),
    severity: round(percent(score.severityAgree, score.expectedRecipients)),
    category: round(percent(score.categoryAgree, score.expectedRecipients)),
  };
}

function holdoutFigures(holdout: HoldoutScore): object {
  return {
    normal: rates(holdout.normal),
    heldOut: rates(holdout.heldOut),
    families: holdout.families.map((f) => ({
      family: f.family,
      files: f.files,
      heldOutRules: f.heldOutRules,
      heldOutPatterns: f.heldOutPatterns,
      normal: rates(f.normal),
      heldOut: rates(f.heldOut),
    })),
  };
}

/** The held-out score beside the usual one, then each family whose score drops when held out. */
function printHoldout(holdout: HoldoutScore): void {
  const line = (label: string, r: ReturnType<typeof rates>): string =>
    `  ${label.padEnd(28)}recipients ${r.recipients}%  severity ${r.severity}%  category ${r.category}%`;
  const rules = holdout.families.reduce((sum, f) => sum + f.heldOutRules.length, 0);
  const patterns = holdout.families.filter((f) => f.heldOutPatterns).length;
  console.log(`\nHeld out by family (${holdout.families.length} families; ${rules} rules tagged "mta", ${patterns} NDR pattern families left out for their own files):`);
  console.log(line('usual score', rates(holdout.normal)));
  console.log(line('held-out score', rates(holdout.heldOut)));
  const drops = holdout.families.filter(
    (f) => f.heldOut.foundRecipients < f.normal.foundRecipients || f.heldOut.severityAgree < f.normal.severityAgree || f.heldOut.categoryAgree < f.normal.categoryAgree,
  );
  if (drops.length === 0) {
    console.log('  no family scores lower held out');
    return;
  }
  console.log('  families that score lower held out (usual -> held out, of N recipients):');
  for (const f of drops) {
    const n = f.normal.expectedRecipients;
    const was = rates(f.normal);
    const now = rates(f.heldOut);
    const left = [f.heldOutRules.length > 0 ? `${f.heldOutRules.length} rules` : '', f.heldOutPatterns ? 'NDR patterns' : ''].filter(Boolean).join(' + ');
    console.log(
      `    ${f.family.padEnd(18)} ${String(f.files).padStart(3)} files, ${n} recipients, without ${left}: ` +
        `recipients ${was.recipients}->${now.recipients}%  severity ${was.severity}->${now.severity}%  category ${was.category}->${now.category}%`,
    );
  }
}

/** Parses the whole corpus over and over on this one thread for about `seconds`; bounded loop. */
async function measureThroughput(dir: string, seconds: number): Promise<{ perSecond: number; reports: number; seconds: number }> {
  const messages = [...readCorpus(dir).files.values()];
  for (const raw of messages) await parseReport(raw); // warm-up: JIT, compiled patterns and rules
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  let reports = 0;
  for (let round = 0; round < 10_000 && performance.now() < deadline; round += 1) {
    for (const raw of messages) await parseReport(raw);
    reports += messages.length;
  }
  const elapsed = (performance.now() - started) / 1000;
  return { perSecond: reports / elapsed, reports, seconds: elapsed };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
