#!/usr/bin/env node
import { Command } from 'commander';
import { registerBounceCommands } from './cli/bounce-commands.js';
import { registerDkimCommands } from './cli/dkim-commands.js';
import { registerRelayCommands } from './cli/relay-commands.js';
import { registerReportCommands } from './cli/report-commands.js';
import { registerSuppressionCommands } from './cli/suppression-commands.js';
import { OperatorError } from './errors.js';

const program = new Command('rebound')
  .description('SMTP relay with inline bounce handling')
  .showHelpAfterError()
  .configureHelp({ sortSubcommands: false })
  // A command's options come before its subcommand's name: `rebound queue --json` is the
  // summary's, `rebound queue hold --json` the action's (commander needs this on the program too).
  .enablePositionalOptions();

registerRelayCommands(program);
registerBounceCommands(program);
registerSuppressionCommands(program);
registerReportCommands(program);
registerDkimCommands(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof OperatorError) {
    console.error(`rebound: ${error.message}`);
    process.exit(2);
  }
  console.error('rebound: unexpected error (please report it):', error);
  process.exit(1);
});
