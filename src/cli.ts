#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { Command, Option } from 'commander';
import { readFile } from 'node:fs/promises';
import { classifyReply } from './bounces/classifier.js';
import { parseReport, toParseOutput } from './bounces/report/index.js';
import { ReportApplier } from './inbound/apply-report.js';
import { reportParser } from './inbound/parser.js';
import { ReportProcessor } from './inbound/process-reports.js';
import { ReportStore } from './inbound/report-store.js';
import { verpSettings } from './relay.js';
import { ConfigError, environmentVariables, loadConfig, type Config } from './config/load.js';
import { createLogger } from './logger.js';
import { startRelay } from './relay.js';
import { OperatorError } from './errors.js';
import { openStore, StoreError } from './store/database.js';
import { queueSummary, RECIPIENT_STATUSES } from './store/queue.js';
import { hashPassword } from './submission/passwords.js';
import { readPassword } from './cli/read-password.js';

function configFrom(options: { config?: string }): Config {
  return loadConfig({ file: options.config });
}

const program = new Command('rebound')
  .description('SMTP relay with inline bounce handling')
  .showHelpAfterError()
  .configureHelp({ sortSubcommands: false });

const configOption = (): Option =>
  new Option('-c, --config <file>', 'JSON file that overrides config/default.json (or set REBOUND_CONFIG)');

program
  .command('start')
  .description('start the relay: the spool and the submission server; SIGINT/SIGTERM stop it cleanly')
  .addOption(configOption())
  .action(async (options: { config?: string }) => {
    const config = configFrom(options);
    const logger = createLogger(config.log.level);
    const relay = await startRelay(config, logger);
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'stopping: no new mail, finishing messages in DATA');
      relay.stop().then(
        () => process.exit(0),
        (error: Error) => {
          logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });

program
  .command('queue')
  .description('print recipient counts by status and the oldest mail still waiting')
  .addOption(configOption())
  .option('-n, --limit <count>', 'how many of the oldest entries to show', (v) => positiveInteger(v, '--limit'), 10)
  .option('--json', 'print JSON instead of a table')
  .action((options: { config?: string; limit: number; json?: boolean }) => {
    const config = configFrom(options);
    if (!existsSync(config.store.path)) {
      throw new StoreError(`no store at ${config.store.path} yet (store.path); start the relay once to create it`);
    }
    const db = openStore(config.store.path, { synchronous: config.store.synchronous });
    try {
      const summary = queueSummary(db, options.limit);
      if (options.json) {
        console.log(JSON.stringify(summary, null, 2));
        return;
      }
      console.log(`messages: ${summary.messages}`);
      console.log('recipients by status:');
      for (const status of RECIPIENT_STATUSES) console.log(`  ${status.padEnd(10)} ${summary.recipientsByStatus[status]}`);
      console.log(summary.oldest.length ? `oldest waiting (${summary.oldest.length}):` : 'nothing waiting');
      for (const entry of summary.oldest) {
        console.log(
          `  ${entry.queueId}  ${entry.receivedAt}  ${entry.status.padEnd(8)} attempts=${entry.attempts}  ` +
            `<${entry.mailFrom}> -> <${entry.address}>${entry.lastReply ? `  last: ${entry.lastReply}` : ''}`,
        );
      }
    } finally {
      db.close();
    }
  });

program
  .command('classify')
  .description('classify an SMTP reply or DSN diagnostic as Rebound does: severity, type (hard/soft), category, codes')
  .argument('<reply...>', 'the reply, e.g. "550 5.1.1 <x@y>: Recipient address rejected: User unknown" (quote it)')
  .option('--status <code>', 'an enhanced status code given apart from the text (a DSN Status: field)')
  .action((words: string[], options: { status?: string }) => {
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
    const many = files.length > 1;
    let failures = 0;
    for (const file of files) {
      let raw: Buffer;
      try {
        raw = await readFile(file);
      } catch (error) {
        failures++;
        console.error(`rebound: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
        continue;
      }
      const output = toParseOutput(await parseReport(raw, { campaignHeader: options.campaignHeader }), many ? file : undefined);
      console.log(many || options.json ? JSON.stringify(output) : JSON.stringify(output, null, 2));
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
    const config = configFrom(options);
    if (!existsSync(config.store.path)) throw new StoreError(`no store at ${config.store.path} yet (store.path); start the relay once to create it`);
    if (!options.all && !options.failed && ids.length === 0) throw new OperatorError('say which reports: ids, --failed or --all');
    const db = openStore(config.store.path, { synchronous: config.store.synchronous });
    const reports = new ReportStore(db);
    try {
      const processor = new ReportProcessor(reports, new ReportApplier(db, config, verpSettings(config, db)), reportParser(config.submission.campaignHeader), createLogger('silent'));
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

program
  .command('passwd')
  .description('hash a password for submission.auth.users (reads it from the terminal, or one line from stdin)')
  .action(async () => {
    const password = await readPassword();
    console.log(await hashPassword(password));
  });

program
  .command('config')
  .description('print the effective configuration, or the environment variables that override single keys')
  .addOption(configOption())
  .option('--env', 'list the REBOUND_* environment variables instead')
  .action((options: { config?: string; env?: boolean }) => {
    if (options.env) {
      for (const variable of environmentVariables()) console.log(`${variable.name.padEnd(44)} ${variable.path.join('.')}`);
      return;
    }
    const config = configFrom(options);
    const redacted = {
      ...config,
      submission: {
        ...config.submission,
        auth: { users: config.submission.auth.users.map((u) => ({ username: u.username, passwordHash: '(set)' })) },
      },
    };
    console.log(JSON.stringify(redacted, null, 2));
  });

function positiveInteger(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} must be a whole number above 0, got "${value}"`);
  return n;
}

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof OperatorError) {
    console.error(`rebound: ${error.message}`);
    process.exit(2);
  }
  console.error('rebound: unexpected error (please report it):', error);
  process.exit(1);
});
