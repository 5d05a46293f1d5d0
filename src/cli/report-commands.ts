import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { OperatorError } from '../errors.js';
import {
  BOUNCE_TYPE_FILTERS,
  bouncesCsv,
  bouncesReport,
  bouncesTable,
  bouncesTotal,
  bouncesXlsx,
  GROUP_BYS,
  parseBouncesQuery,
} from '../reports/bounces.js';
import { configFrom, configOption, openExistingStore } from './common.js';

const FORMATS = ['table', 'csv', 'xlsx'] as const;
type Format = (typeof FORMATS)[number];

interface BouncesOptions {
  config?: string;
  since?: string;
  until?: string;
  campaign?: string;
  tag?: string;
  groupBy?: string;
  type?: string;
  format?: string;
  out?: string;
}

function formatOf(value: string | undefined): Format {
  if (value === undefined) return 'table';
  const wanted = value.trim().toLowerCase();
  if (!(FORMATS as readonly string[]).includes(wanted)) throw new OperatorError(`--format: "${value}" is not one of ${FORMATS.join(', ')}`);
  return wanted as Format;
}

async function writeOut(file: string, content: string | Buffer): Promise<void> {
  try {
    await writeFile(file, content);
  } catch (error) {
    throw new OperatorError(`cannot write ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); check --out`);
  }
}

/** rebound report bounces: the bounces report as a table, CSV or XLSX. */
export function registerReportCommands(program: Command): void {
  const report = program.command('report').description('reports read from the store: bounces');

  report
    .command('bounces')
    .description(
      'bounces in a period (--until left out), for a campaign or tag or all, grouped by from-domain, ip, recipient-domain, category or tag: ' +
        'each row is a group, a bounce text and the number of bounces (every bounce of a message sent several times counts)',
    )
    .option('--since <date>', 'start of the period, included (ISO 8601: 2026-11-01 or 2026-11-01T12:00:00Z; no offset means UTC); required')
    .option('--until <date>', 'end of the period, left out (default: now)')
    .option('--campaign <id>', 'only this campaign (the campaign header value; default: all mail)')
    .option('--tag <tag>', 'only mail with this X-Mailgun-Tag (default: all mail)')
    .option('--group-by <field>', `${GROUP_BYS.join(', ')} (default: from-domain)`)
    .option('--type <type>', `${BOUNCE_TYPE_FILTERS.join(', ')} (default: soft)`)
    .option('--format <format>', `${FORMATS.join(', ')} (default: table)`)
    .option('--out <file>', 'write to this file (required for xlsx; csv and table go to stdout without it)')
    .addOption(configOption())
    .action(async (options: BouncesOptions) => {
      // Every check of the input before the store is opened: a typo never waits on a busy database.
      const query = parseBouncesQuery({ since: options.since, until: options.until, campaign: options.campaign, tag: options.tag, groupBy: options.groupBy, type: options.type });
      const format = formatOf(options.format);
      if (options.out !== undefined && options.out.trim() === '') throw new OperatorError('--out: give a file name');
      if (format === 'xlsx' && options.out === undefined) throw new OperatorError('--format xlsx writes a workbook: add --out FILE (e.g. --out bounces.xlsx)');

      const db = await openExistingStore(await configFrom(options));
      let rows;
      try {
        rows = bouncesReport(db, query);
      } finally {
        db.close();
      }

      const output = format === 'xlsx' ? await bouncesXlsx(rows, query) : format === 'csv' ? bouncesCsv(rows, query) : bouncesTable(rows, query);
      if (options.out === undefined) {
        process.stdout.write(output);
        return;
      }
      await writeOut(options.out, output);
      const total = bouncesTotal(rows);
      process.stderr.write(`${rows.length} rows (${total} bounces) written to ${options.out}\n`);
    });
}
