import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { OperatorError } from '../errors.js';
import { configFrom, configOption, openExistingStore, positiveInteger } from './common.js';

/**
 * classify, parse, reparse: how Rebound reads replies and reports. Each command imports what it
 * needs when it runs: `parse` loads the parser, not the relay, the store or the logger.
 */
export function registerBounceCommands(program: Command): void {
  program
      .command('classify')
    .description('classify an SMTP reply or DSN diagnostic as Rebound does: severity, type (hard/soft), category, codes')
    .argument('<reply...>', 'the reply, e.g. "550 5.1.1 <x@y>: Recipient address rejected: User unknown" (quote it)')
    .option('--status <code>', 'an enhanced status code given apart from the text (a DSN Status: field)')
    .action(async (words: string[], options: { status?: string }) => {
      const { classifyReply } = await import('../bounces/classifier.js');
      const text = words.join(' ');
      const classification = classifyReply(options.status ? { enhancedCode: options.status, text } : text);
      console.log(JSON.stringify(classification, null, 2));
    });
  program
      .command('parse')
    .description('read bounce reports (DSN, NDR, ARF, auto-reply) and print what Rebound sees in each, as JSON')
    .argument('<files...>', 'message files (.eml); several files print one JSON object per line, each with "file"')
    .option('--json', 'compact JSON (always JSON; kept for scripts that pass it)')
    .option('--campaign-header <name>', 'header that carries the campaign id in the returned original', 'X-Campaign-ID')
    .action(async (files: string[], options: { json?: boolean; campaignHeader: string }) => {
      const { parseReportSync, toParseOutput } = await import('../bounces/report/index.js');
      const many = files.length > 1;
      const output = new LineBuffer();
      let failures = 0;
      // Synchronous reads and parses: one file at a time is all a command-line run does, and a
      // promise per file costs more than the read of a small report.
      try {
        for (const file of files) {
          let raw: Buffer;
          try {
            raw = readFileSync(file);
          } catch (error) {
            failures++;
            output.flush(); // the lines before it first, so a terminal shows them in order
            console.error(`rebound: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
            continue;
          }
          const parsed = toParseOutput(parseReportSync(raw, { campaignHeader: options.campaignHeader }), many ? file : undefined);
          output.add(many || options.json ? JSON.stringify(parsed) : JSON.stringify(parsed, null, 2));
        }
      } finally {
        output.flush(); // also when a parse throws: the lines before it are printed
      }
      if (failures > 0) process.exitCode = 2;
    });
  program
      .command('reparse')
    .description('parse stored inbound reports again (e.g. after a parser upgrade); a report is applied at most once')
    .addOption(configOption())
    .argument('[ids...]', 'inbound_reports ids')
    .option('--all', 'every stored report')
    .option('--failed', 'the reports whose parse failed')
    .action(async (ids: string[], options: { config?: string; all?: boolean; failed?: boolean }) => {
      const config = await configFrom(options);
      if (!options.all && !options.failed && ids.length === 0) throw new OperatorError('say which reports: ids, --failed or --all');
      const [{ ReportApplier }, { reportParser }, { ReportProcessor }, { ReportStore }, { createLogger }, { verpSettings }] = await Promise.all([
        import('../inbound/apply-report.js'),
        import('../inbound/parser.js'),
        import('../inbound/process-reports.js'),
        import('../inbound/report-store.js'),
        import('../logger.js'),
        import('../relay.js'),
      ]);
      const db = await openExistingStore(config);
      const reports = new ReportStore(db);
      try {
        const processor = new ReportProcessor(db, reports, new ReportApplier(db, config, verpSettings(config, db)), reportParser(config.submission.campaignHeader), createLogger('silent'));
        const chosen = options.all ? reports.allIds() : options.failed ? reports.idsWithStatus('failed') : ids.map((id) => positiveInteger(id, 'a report id'));
        for (const id of chosen) {
          const result = await processor.process(id).catch((error: Error) => ({ kind: 'error', outcome: error.message }));
          console.log(`report ${id}: ${result.kind}, ${result.outcome}`);
        }
        console.log(`${chosen.length} report(s) parsed`);
      } finally {
        reports.close();
        db.close();
      }
    });
}

/**
 * Lines for stdout, written in blocks: a console.log per report cost more than the parse of a
 * small one (a write each, ~20 ms for 250 reports into a pipe).
 */
class LineBuffer {
  private lines: string[] = [];
  private size = 0;

  add(line: string): void {
    this.lines.push(line, '\n');
    this.size += line.length + 1;
    if (this.size >= 64 * 1024) this.flush();
  }

  flush(): void {
    if (this.lines.length === 0) return;
    process.stdout.write(this.lines.join(''));
    this.lines = [];
    this.size = 0;
  }
}
