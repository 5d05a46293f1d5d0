import type { Command } from 'commander';
import { OperatorError } from '../errors.js';
import type { RunningRelay } from '../relay.js';
import type { PurgeCounts } from '../store/retention.js';
import { cliActor, configFrom, configOption, openExistingStore, positiveInteger } from './common.js';
import { registerQueueActionCommands } from './queue-commands.js';

/** How often a relay run by `npm start` checks that npm is still there. */
const PARENT_CHECK_MS = 500;

/**
 * start, queue (and its actions), flush, purge, health, passwd, config: running the relay and looking at it. The relay, the
 * logger and the password hashing load only in the command that uses them (`--help` stays fast).
 */
export function registerRelayCommands(program: Command): void {
  program
      .command('start')
    .description('start the relay: the spool and the submission server; SIGINT/SIGTERM stop it cleanly')
    .addOption(configOption())
    .action(async (options: { config?: string }) => {
      const config = await configFrom(options);
      const [{ createLogger }, { startRelay }] = await Promise.all([import('../logger.js'), import('../relay.js')]);
      const logger = createLogger(config.log.level);
      let relay: RunningRelay | null = null;
      let stopping = false;
      const stopRelay = (running: RunningRelay): void => {
        running.stop().then(
          () => process.exit(0),
          (error: Error) => {
            logger.error({ err: error }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      const stop = (signal: NodeJS.Signals): void => {
        if (stopping) {
          logger.warn({ signal }, 'second signal: exiting now');
          process.exit(1);
        }
        stopping = true;
        logger.info({ signal }, 'stopping: no new mail, finishing messages in DATA');
        // A signal during start-up stops the relay as soon as it has started.
        if (relay) stopRelay(relay);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      relay = await startRelay(config, logger);
      if (stopping) stopRelay(relay);
      // `npm start` execs the relay, so npm passes signals on; should npm die another way (it does
      // not pass them through a shell, or it is killed), the relay would run on alone. Under
      // `npm start`, the end of npm is taken as the signal.
      if (process.env.npm_lifecycle_event === 'start') {
        const npm = process.ppid;
        setInterval(() => {
          if (process.ppid !== npm) stop('SIGTERM');
        }, PARENT_CHECK_MS).unref();
      }
    });
  const queue = program
      .command('queue')
    .description('print recipient counts by status and the oldest mail still waiting; hold, release, delete or bounce mail (rebound queue ACTION --help)')
    .addOption(configOption())
    .option('-n, --limit <count>', 'how many of the oldest entries to show', (v) => positiveInteger(v, '--limit'), 10)
    .option('--json', 'print JSON instead of a table')
    // The summary's options come before an action's name; the action's own flags after it.
    // (The program enables this too: commander hands `queue` what follows it only then.)
    .enablePositionalOptions()
    // A word that is not an action (with the flags meant for it) reaches this action, to be named:
    // commander would say "too many arguments", or complain about the action's flags instead.
    .allowExcessArguments()
    .allowUnknownOption()
    .action(async (options: { config?: string; limit: number; json?: boolean }, command: Command) => {
      const [first] = command.args;
      if (first !== undefined && first.startsWith('-')) throw new OperatorError(`unknown option "${first}" for rebound queue; see rebound queue --help`);
      if (first !== undefined) throw new OperatorError(`unknown queue action "${first}"; use hold, release, delete or bounce (rebound queue --help)`);
      const config = await configFrom(options);
      const { queueSummary, RECIPIENT_STATUSES } = await import('../store/queue.js');
      const db = await openExistingStore(config);
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
        if (summary.pausedDestinations.length > 0) {
          console.log(`paused destinations (${summary.pausedDestinations.length}, traffic shaping):`);
          for (const pause of summary.pausedDestinations) {
            console.log(`  ${pause.destination}  until ${pause.pausedUntil}  ${pause.reaction}  reply: ${pause.reason}`);
          }
        }
      } finally {
        db.close();
      }
    });
  registerQueueActionCommands(queue);
  program
      .command('flush')
    .description('make deferred mail due now (all of it, or these messages, a domain or a sender), as postqueue -f and -s do; the running relay sends it at its next poll')
    .argument('[queueIds...]', 'queue ids of the messages to retry now; none (and no --domain or --sender): every deferred recipient')
    .option('--domain <domain>', 'the deferred recipients at this domain (exactly it, not its subdomains), as postqueue -s')
    .option('--sender <address>', 'the deferred recipients of mail from this envelope sender; <> for the null sender')
    .addOption(configOption())
    .action(async (queueIds: string[], options: { config?: string; domain?: string; sender?: string }) => {
      const given = [queueIds.length > 0 ? 'queue ids' : null, options.domain !== undefined ? '--domain' : null, options.sender !== undefined ? '--sender' : null].filter((g) => g !== null);
      if (given.length > 1) throw new OperatorError(`give only one of queue ids, --domain, --sender (got ${given.join(' and ')}); none flushes every deferred recipient`);
      const selector =
        queueIds.length > 0 ? { queueIds } : options.domain !== undefined ? { domain: options.domain } : options.sender !== undefined ? { sender: options.sender } : null;
      const config = await configFrom(options);
      const { flushDeferred } = await import('../store/queue-actions.js');
      const db = await openExistingStore(config);
      try {
        const result = flushDeferred(db, selector, cliActor());
        console.log(`${result.recipients} deferred recipient(s) are due now; the relay sends them within delivery.pollIntervalMs (${config.delivery.pollIntervalMs} ms)`);
      } finally {
        db.close();
      }
    });
  program
      .command('purge')
    .description('apply store.retention now: drop the bodies of finished mail older than bodyDays, delete history older than historyDays')
    .addOption(configOption())
    .option('--dry-run', 'count what would go, change nothing')
    .option('--json', 'print JSON instead of lines')
    .action(async (options: { config?: string; dryRun?: boolean; json?: boolean }) => {
      const config = await configFrom(options);
      const { bodyDays, historyDays, unmatchedReportDays } = config.store.retention;
      const { purgeInSteps, Retention } = await import('../store/retention.js');
      const db = await openExistingStore(config);
      try {
        const retention = new Retention(db, config.store.retention);
        const now = new Date();
        let counts: PurgeCounts;
        if (options.dryRun) {
          counts = retention.pending(now);
        } else {
          let steps = 0;
          counts = await purgeInSteps(retention, now, (total) => {
            if (++steps % 20 === 0) process.stderr.write(`purging: ${total.messagesDeleted} messages deleted, ${total.bodiesDropped} bodies dropped so far\n`);
          });
        }
        if (options.json) {
          console.log(JSON.stringify({ dryRun: options.dryRun ?? false, bodyDays, historyDays, unmatchedReportDays, ...counts }, null, 2));
          return;
        }
        const verb = options.dryRun ? 'would be' : 'were';
        const keep = (days: number): string => (days > 0 ? `older than ${days} days` : 'never (0: kept forever)');
        console.log(`finished messages ${keep(historyDays)}: ${counts.messagesDeleted} ${verb} deleted with their history`);
        console.log(`inbound reports that no kept event names, ${keep(historyDays)} (or, having changed nothing, ${keep(unmatchedReportDays)}): ${counts.reportsDeleted} ${verb} deleted`);
        console.log(`bodies of finished messages ${keep(bodyDays)}: ${counts.bodiesDropped} ${verb} dropped`);
        if (counts.otherNodeEventsDeleted > 0) console.log(`other nodes' events ${keep(historyDays)}: ${counts.otherNodeEventsDeleted} ${verb} deleted from this node's copy`);
      } finally {
        db.close();
      }
    });
  program
      .command('health')
    .description("ask the running relay's admin server for /healthz (a container's health check): exit 0 when healthy, 1 when not or when nothing answers")
    .addOption(configOption())
    .option('--timeout <seconds>', 'how long to wait for the answer', '3')
    .action(async (options: { config?: string; timeout: string }) => {
      const config = await configFrom(options);
      if (!config.admin.enabled) throw new OperatorError('admin.enabled is false: there is no /healthz to ask; turn the admin server on (admin.enabled, REBOUND_ADMIN_ENABLED)');
      // A server on every interface is asked on loopback, from the same machine or container.
      const host = ['0.0.0.0', '::'].includes(config.admin.host) ? '127.0.0.1' : config.admin.host;
      const url = `http://${host.includes(':') ? `[${host}]` : host}:${config.admin.port}/healthz`;
      try {
        const answer = await fetch(url, { signal: AbortSignal.timeout(positiveInteger(options.timeout, '--timeout') * 1000) });
        const body = await answer.text();
        if (answer.ok) {
          console.log(`healthy: ${url}`);
          return;
        }
        console.error(`unhealthy: ${url} answered ${answer.status} ${body}`);
      } catch (error) {
        const cause = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message;
        console.error(`no answer from ${url} (${cause}); is the relay running, with admin.port ${config.admin.port}?`);
      }
      process.exitCode = 1;
    });
  program
      .command('passwd')
    .description('hash a password for submission.auth.users (reads it from the terminal, or one line from stdin)')
    .action(async () => {
      const [{ readPassword }, { hashPassword }] = await Promise.all([import('./read-password.js'), import('../submission/passwords.js')]);
      const password = await readPassword();
      console.log(await hashPassword(password));
    });
  program
      .command('config')
    .description('print the effective configuration, or the environment variables that override single keys')
    .addOption(configOption())
    .option('--env', 'list the REBOUND_* environment variables instead')
    .action(async (options: { config?: string; env?: boolean }) => {
      if (options.env) {
        const { environmentVariables } = await import('../config/load.js');
        for (const variable of environmentVariables()) console.log(`${variable.name.padEnd(44)} ${variable.path.join('.')}`);
        return;
      }
      const config = await configFrom(options);
      const { redactUrl } = await import('../redact-url.js');
      const { shared } = config.store;
      const redacted = {
        ...config,
        store: { ...config.store, shared: { ...shared, url: shared.url === null ? null : redactUrl(shared.url) } },
        submission: {
          ...config.submission,
          auth: { users: config.submission.auth.users.map((u) => ({ username: u.username, passwordHash: '(set)' })) },
        },
      };
      console.log(JSON.stringify(redacted, null, 2));
    });
}
