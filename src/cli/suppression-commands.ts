import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { OperatorError } from '../errors.js';
import { addressOrThrow, SUPPRESSION_TYPES, SuppressionInputError, SuppressionLists, type SuppressionEntry, type SuppressionType } from '../suppressions/lists.js';
import { cliActor, configFrom, configOption, openExistingStore, positiveInteger } from './common.js';

function suppressionType(value: string | undefined, flag = '--type'): SuppressionType | undefined {
  if (value === undefined) return undefined;
  if (!SUPPRESSION_TYPES.includes(value as SuppressionType)) throw new OperatorError(`${flag}: "${value}" is not one of ${SUPPRESSION_TYPES.join(', ')}`);
  return value as SuppressionType;
}

function address(value: string): string {
  try {
    return addressOrThrow(value);
  } catch (error) {
    if (error instanceof SuppressionInputError) throw new OperatorError(error.message);
    throw error;
  }
}

/** Runs `work` on the suppression lists of the configured store, and closes the store after. */
async function withLists<T>(options: { config?: string }, work: (lists: SuppressionLists) => T | Promise<T>): Promise<T> {
  const db = await openExistingStore(await configFrom(options));
  try {
    return await work(new SuppressionLists(db));
  } finally {
    db.close();
  }
}

function printEntries(entries: readonly SuppressionEntry[]): void {
  for (const e of entries) {
    const evidence = [e.code, e.enhancedCode, e.category].filter((part) => part !== null).join(' ');
    console.log(`${e.address}  ${e.type}  ${e.source}  count=${e.count}  last=${e.lastAt}${evidence ? `  ${evidence}` : ''}${e.reason ? `  reason: ${e.reason}` : ''}`);
  }
}

/** rebound suppressions list|show|add|remove|import|export|allow|disallow. The CSV reader and writer load only for import and export. */
export function registerSuppressionCommands(program: Command): void {
  const suppressions = program
    .command('suppressions')
    .description('the suppression lists (bounces, complaints, unsubscribes) and the allowlist that overrides them');

  suppressions
    .command('list')
    .description('list suppressed addresses, newest first')
    .addOption(configOption())
    .option('--type <type>', `only one list: ${SUPPRESSION_TYPES.join(', ')}`)
    .option('--search <text>', 'only addresses that contain this text')
    .option('--limit <count>', 'at most this many', (v) => positiveInteger(v, '--limit'), 100)
    .option('--json', 'print JSON')
    .action(async (options: { config?: string; type?: string; search?: string; limit: number; json?: boolean }) => {
      const type = suppressionType(options.type);
      await withLists(options, (lists) => {
        const { total, entries } = lists.list({ ...(type ? { type } : {}), ...(options.search ? { search: options.search } : {}), limit: options.limit });
        if (options.json) return console.log(JSON.stringify({ total, entries }, null, 2));
        printEntries(entries);
        console.log(`${entries.length} of ${total} shown`);
      });
    });

  suppressions
    .command('show')
    .description('every list an address is on, with its evidence, the allowlist entry and the audit history')
    .argument('<address>')
    .addOption(configOption())
    .action(async (input: string, options: { config?: string }) => {
      const target = address(input);
      await withLists(options, (lists) => {
        const entries = lists.entriesFor(target);
        const allowlist = lists.allowlistFor(target);
        const audit = lists.auditFor(target);
        if (entries.length === 0 && allowlist.length === 0 && audit.length === 0) throw new OperatorError(`${target} is on no list and has no history`);
        console.log(JSON.stringify({ address: target, suppressed: lists.suppressionFor(target) !== null, entries, allowlist, audit }, null, 2));
      });
    });

  suppressions
    .command('add')
    .description('suppress an address by hand')
    .argument('<address>')
    .requiredOption('--type <type>', `the list: ${SUPPRESSION_TYPES.join(', ')}`)
    .requiredOption('--reason <text>', 'why (kept in the audit)')
    .addOption(configOption())
    .action(async (input: string, options: { config?: string; type: string; reason: string }) => {
      const type = suppressionType(options.type) as SuppressionType;
      const target = address(input);
      await withLists(options, (lists) => {
        lists.add({ address: target, type, source: 'manual', reason: options.reason, actor: cliActor() });
        console.log(`${target} added to ${type}`);
      });
    });

  suppressions
    .command('remove')
    .description('take an address off one list, or off all of them')
    .argument('<address>')
    .option('--type <type>', 'only this list')
    .option('--reason <text>', 'why (kept in the audit)')
    .addOption(configOption())
    .action(async (input: string, options: { config?: string; type?: string; reason?: string }) => {
      const type = suppressionType(options.type);
      const target = address(input);
      await withLists(options, (lists) => {
        const removed = lists.remove(target, type, cliActor(), options.reason ?? null);
        if (removed.length === 0) throw new OperatorError(`${target} is not on ${type ? `the ${type} list` : 'any suppression list'}`);
        console.log(`${target} removed from ${removed.join(', ')}`);
      });
    });

  suppressions
    .command('import')
    .description('add addresses from a CSV file with a header row: address[,type][,reason]; bad rows are reported by line, good rows land')
    .argument('<file>')
    .option('--type <type>', 'the list for rows without a type column')
    .addOption(configOption())
    .action(async (file: string, options: { config?: string; type?: string }) => {
      const type = suppressionType(options.type);
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (error) {
        throw new OperatorError(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
      }
      const { parseSuppressionCsv } = await import('../suppressions/csv.js');
      const { rows, errors } = parseSuppressionCsv(text, type);
      await withLists(options, (lists) => {
        const actor = cliActor();
        const at = new Date().toISOString();
        for (const row of rows) lists.add({ address: row.address, type: row.type, source: 'import', reason: row.reason ?? `imported from ${file}`, actor, at });
      });
      for (const error of errors) console.error(`${file}:${error.line}: ${error.message}`);
      console.log(`${rows.length} imported, ${errors.length} rejected`);
      if (errors.length > 0) process.exitCode = 1;
    });

  suppressions
    .command('export')
    .description('write the lists as CSV (RFC 4180) or JSON')
    .option('--type <type>', 'only one list')
    .option('--format <format>', 'csv or json', 'csv')
    .option('--out <file>', 'write here instead of stdout')
    .addOption(configOption())
    .action(async (options: { config?: string; type?: string; format: string; out?: string }) => {
      const type = suppressionType(options.type);
      if (options.format !== 'csv' && options.format !== 'json') throw new OperatorError(`--format: "${options.format}" is not csv or json`);
      const entries = await withLists(options, (lists) => lists.list({ ...(type ? { type } : {}), limit: Number.MAX_SAFE_INTEGER }).entries);
      const { suppressionsCsv } = await import('../suppressions/csv.js');
      const output = options.format === 'csv' ? suppressionsCsv(entries) : `${JSON.stringify(entries, null, 2)}\n`;
      if (options.out) {
        await writeFile(options.out, output);
        console.error(`${entries.length} entries written to ${options.out}`);
      } else process.stdout.write(output);
    });

  suppressions
    .command('allow')
    .description('allowlist an address or a whole domain: it is sent to even when suppressed')
    .argument('<address-or-domain>')
    .requiredOption('--reason <text>', 'why (kept in the audit)')
    .addOption(configOption())
    .action(async (value: string, options: { config?: string; reason: string }) => {
      await withLists(options, (lists) => {
        try {
          const entry = lists.allow(value, cliActor(), options.reason);
          console.log(`${entry.value} (${entry.kind}) allowlisted`);
        } catch (error) {
          if (error instanceof SuppressionInputError) throw new OperatorError(error.message);
          throw error;
        }
      });
    });

  suppressions
    .command('disallow')
    .description('take an address or domain off the allowlist')
    .argument('<address-or-domain>')
    .option('--reason <text>', 'why (kept in the audit)')
    .addOption(configOption())
    .action(async (value: string, options: { config?: string; reason?: string }) => {
      await withLists(options, (lists) => {
        if (!lists.disallow(value, cliActor(), options.reason ?? null)) throw new OperatorError(`${value} is not on the allowlist`);
        console.log(`${value} removed from the allowlist`);
      });
    });
}
