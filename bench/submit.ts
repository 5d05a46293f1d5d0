/**
 * Submission benchmark: how many messages per second the relay accepts over SMTP on loopback,
 * with every 250 meaning "on disk". A measurement, not a test: it prints figures and only fails
 * (exit 1) when the run itself went wrong (refused messages, time limit, unclean shutdown).
 *
 *   npm run bench -- --messages 20000 --concurrency 50
 *   npm run bench -- --connection per-message --concurrency 50
 *   npm run bench -- --help
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  BenchError,
  prepareRelayBuild,
  filesystemType,
  startRelay,
  type CpuTime,
  type LogProblem,
  type RelayProcess,
  type StopReport,
  type Synchronous,
} from './relay-process.js';
import { MessageFactory, openLoadClients, type ConnectionMode, type FailureSummary, type PhaseResult } from './smtp-load.js';
import {
  commandExists,
  connectionCosts,
  connectionMode,
  connectionRows,
  failureLines,
  format,
  isEntryPoint,
  latencySummary,
  latencyTargetCheck,
  latencyText,
  machineInfo,
  progress,
  row,
  runMain,
  wholeNumber,
  type ConnectionCosts,
  type LatencySummary,
  type LatencyTargetCheck,
} from './common.js';

const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Figures given to us for this kind of machine (2 cores, loopback, 5 KB messages). They are not
 * measured here; they are what the result is compared against.
 */
const REFERENCE = {
  conditions: '2 cores, loopback, 5 KB messages',
  postfixPerSecond: 620,
  harakaPerSecond: 500,
  targetPerSecond: 1200,
} as const;

const HELP = `Usage: npm run bench -- [--mode submit] [options]      (or: npx tsx bench/submit.ts [options])

Builds dist/, starts the relay on a scratch store in a temp dir, sends mail over raw SMTP from
concurrent loopback connections and prints throughput, latency, memory and fsyncs per message.

Options:
  --messages N          messages to measure (default 5000)
  --size BYTES          message size, headers included (default 5120)
  --concurrency C       concurrent SMTP clients (default 20)
  --connection MODE     reused: each client keeps one session for all its messages (a pooled
                        sender); per-message: each message gets its own connection, greeting,
                        EHLO, MAIL, RCPT, DATA, QUIT, as apps without a pool send (nodemailer
                        without pool, PHPMailer, smtplib, cron jobs). Default reused
  --recipients R        recipients per message (default 1)
  --warmup N            messages sent first and not counted (default 200)
  --time-limit SECONDS  stop sending after this long and report what was done (default 120)
  --synchronous MODE    store.synchronous for the relay: FULL or NORMAL (default FULL)
  --strace              run the relay under strace and count the real fsync/fdatasync calls
  --no-build            use dist/ as it is instead of building it first (it must be current)
  --json                print one JSON object instead of text
  --help                show this help`;

interface BenchOptions {
  messages: number;
  size: number;
  concurrency: number;
  connection: ConnectionMode;
  recipients: number;
  warmup: number;
  timeLimitSeconds: number;
  synchronous: Synchronous;
  strace: boolean;
  build: boolean;
  json: boolean;
}

/** The flags, for parseArgs and for bench/main.ts (which hands each mode the flags it knows). */
export const SUBMIT_OPTIONS = {
  messages: { type: 'string', default: '5000' },
  size: { type: 'string', default: '5120' },
  concurrency: { type: 'string', default: '20' },
  connection: { type: 'string', default: 'reused' },
  recipients: { type: 'string', default: '1' },
  warmup: { type: 'string', default: '200' },
  'time-limit': { type: 'string', default: '120' },
  synchronous: { type: 'string', default: 'FULL' },
  strace: { type: 'boolean', default: false },
  'no-build': { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const;

function parseOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({ args: argv, strict: true, options: SUBMIT_OPTIONS });
  if (values.help) return 'help';
  const synchronous = values.synchronous.toUpperCase();
  if (synchronous !== 'FULL' && synchronous !== 'NORMAL') {
    throw new BenchError(`--synchronous must be FULL or NORMAL, got "${values.synchronous}"`);
  }
  return {
    messages: wholeNumber(values.messages, '--messages', 1),
    size: wholeNumber(values.size, '--size', 1),
    concurrency: wholeNumber(values.concurrency, '--concurrency', 1),
    connection: connectionMode(values.connection),
    recipients: wholeNumber(values.recipients, '--recipients', 1),
    warmup: wholeNumber(values.warmup, '--warmup', 0),
    timeLimitSeconds: wholeNumber(values['time-limit'], '--time-limit', 1),
    synchronous,
    strace: values.strace,
    build: !values['no-build'],
    json: values.json,
  };
}

/** The size is the whole message; headers grow with the recipient count and must fit in it. */
function checkMessageSize(options: BenchOptions, messages: MessageFactory): void {
  const largestSequence = options.warmup + options.messages;
  const recipients = Array.from({ length: options.recipients }, (_, k) => `rcpt-${largestSequence}-${k}@example.net`);
  // +2: the CRLF that ends the last line arrives with the end-of-data mark.
  const length = messages.build(largestSequence, recipients).length + 2;
  if (length > options.size) {
    throw new BenchError(`--size ${options.size} is smaller than the headers alone (${length} bytes with ${options.recipients} recipients)`);
  }
}

interface BenchResult {
  machine: { node: string; platform: string; cpuCount: number; cpuModel: string; storeFilesystem: string };
  /** Whether every session advertised PIPELINING; null when none was opened. */
  settings: BenchOptions & { pipelining: boolean | null };
  accepted: number;
  failed: number;
  /** Messages never sent because the time limit stopped the run or connections were lost. */
  unsent: number;
  stoppedByTimeLimit: boolean;
  elapsedSeconds: number;
  messagesPerSecond: number;
  /** End of DATA to the 250 reply. */
  latencyMs: LatencySummary | null;
  /** --connection per-message: connections opened and connect() to 220 and to 250; null when reused. */
  connectionCosts: ConnectionCosts | null;
  latencyTarget: LatencyTargetCheck;
  failures: FailureSummary;
  warmup: { accepted: number; failed: number; failures: FailureSummary };
  relay: {
    peakRssBytes: number | null;
    /** CPU used during the measured phase only. */
    cpuSeconds: number | null;
    mainThreadCpuSeconds: number | null;
    exitCode: number | null;
    exitSignal: string | null;
    stoppedCleanly: boolean;
    /** Counted by the relay over its whole life, warm-up included. */
    storedMessages: number | null;
    walCommits: number | null;
    walCommitsPerMessage: number | null;
    walSyncs: number | null;
    walSyncsPerMessage: number | null;
    /** Under --strace: real calls over the relay's whole life (startup and migrations included). */
    fsyncCalls: number | null;
    fdatasyncCalls: number | null;
    syncCallsPerMessage: number | null;
    /** Wall-clock seconds the relay spent inside fsync/fdatasync; its main thread waits them out. */
    syncSeconds: number | null;
    queuedLogLines: number;
    logProblems: LogProblem[];
    stderr: string;
  };
  benchCpuSeconds: number;
  reference: typeof REFERENCE & { ratioToPostfix: number; targetMet: boolean };
}

interface RunMeasurements {
  pipelining: boolean | null;
  warmup: PhaseResult;
  measured: PhaseResult;
  relayCpu: { before: CpuTime | null; after: CpuTime | null };
  benchCpuSeconds: number;
  peakRssBytes: number | null;
  stop: StopReport;
}

function summarize(options: BenchOptions, storeFilesystem: string, run: RunMeasurements): BenchResult {
  const { measured, warmup, stop } = run;
  const perSecond = measured.elapsedSeconds > 0 ? measured.accepted / measured.elapsedSeconds : 0;
  const storedMessages = stop.store?.messages ?? null;
  const syncCalls = stop.syncCalls ? stop.syncCalls.fsync + stop.syncCalls.fdatasync : null;
  const perStored = (count: number | null): number | null =>
    count === null || !storedMessages ? null : count / storedMessages;
  const { before, after } = run.relayCpu;
  return {
    machine: { ...machineInfo(), storeFilesystem },
    settings: { ...options, pipelining: run.pipelining },
    accepted: measured.accepted,
    failed: measured.failed,
    unsent: options.messages - measured.accepted - measured.failed,
    stoppedByTimeLimit: measured.aborted,
    elapsedSeconds: measured.elapsedSeconds,
    messagesPerSecond: perSecond,
    latencyMs: latencySummary(measured.latenciesMs),
    connectionCosts: connectionCosts(measured),
    latencyTarget: latencyTargetCheck(latencySummary(measured.latenciesMs), options.concurrency),
    failures: measured.failures,
    warmup: { accepted: warmup.accepted, failed: warmup.failed, failures: warmup.failures },
    relay: {
      peakRssBytes: run.peakRssBytes,
      cpuSeconds: before && after ? after.totalSeconds - before.totalSeconds : null,
      mainThreadCpuSeconds: before && after ? after.mainThreadSeconds - before.mainThreadSeconds : null,
      exitCode: stop.exitCode,
      exitSignal: stop.exitSignal,
      stoppedCleanly: stop.stoppedCleanly,
      storedMessages,
      walCommits: stop.store?.commits ?? null,
      walCommitsPerMessage: perStored(stop.store?.commits ?? null),
      walSyncs: stop.store?.walSyncs ?? null,
      walSyncsPerMessage: perStored(stop.store?.walSyncs ?? null),
      fsyncCalls: stop.syncCalls?.fsync ?? null,
      fdatasyncCalls: stop.syncCalls?.fdatasync ?? null,
      syncCallsPerMessage: perStored(syncCalls),
      syncSeconds: stop.syncCalls?.seconds ?? null,
      queuedLogLines: stop.log.queued,
      logProblems: stop.log.problems,
      stderr: stop.stderr,
    },
    benchCpuSeconds: run.benchCpuSeconds,
    reference: {
      ...REFERENCE,
      ratioToPostfix: perSecond / REFERENCE.postfixPerSecond,
      targetMet: perSecond >= REFERENCE.targetPerSecond,
    },
  };
}

/** Things in the result that say the run, or the relay, misbehaved. */
function anomalies(result: BenchResult): string[] {
  const found: string[] = [];
  const { relay } = result;
  if (result.stoppedByTimeLimit) found.push(`stopped by the ${result.settings.timeLimitSeconds} s time limit`);
  if (result.failed > 0) found.push(`${result.failed} message(s) not accepted`);
  if (result.unsent > 0) found.push(`${result.unsent} message(s) never sent`);
  if (result.warmup.failed > 0) found.push(`${result.warmup.failed} warm-up message(s) not accepted`);
  if (!relay.stoppedCleanly) found.push('the relay did not stop after SIGTERM and was killed');
  else if (relay.exitCode !== 0) found.push(`the relay exited with code ${String(relay.exitCode)} (signal ${String(relay.exitSignal)})`);
  if (relay.storedMessages === null) found.push('no "rebound stopped; store closed" line in the relay log');
  const acceptedTotal = result.accepted + result.warmup.accepted;
  if (relay.storedMessages !== null && relay.storedMessages !== acceptedTotal) {
    found.push(`the relay stored ${relay.storedMessages} messages but the client got 250 for ${acceptedTotal}`);
  }
  if (relay.queuedLogLines !== acceptedTotal) {
    found.push(`the relay logged "message queued" ${relay.queuedLogLines} times for ${acceptedTotal} accepted messages`);
  }
  if (result.machine.storeFilesystem === 'tmpfs') found.push('the store is on tmpfs, where fsync costs nothing: the figures flatter the relay');
  return found;
}

function syncCallCount(relay: BenchResult['relay']): number {
  return (relay.fsyncCalls ?? 0) + (relay.fdatasyncCalls ?? 0);
}

function printText(result: BenchResult): void {
  const { machine, settings, relay, reference } = result;
  const latency = result.latencyMs;
  const cores = (seconds: number | null): string =>
    seconds === null ? 'n/a' : `${seconds.toFixed(2)} s (${((seconds / result.elapsedSeconds) * 100).toFixed(0)}% of one core)`;
  const perMessage = settings.connection === 'per-message';
  const lines = [
    `Rebound submission benchmark, ${perMessage ? 'one connection per message' : 'connections reused'} (--connection ${settings.connection})`,
    '',
    'Measured on',
    `  node ${machine.node}, ${machine.platform}, ${machine.cpuCount} x ${machine.cpuModel}`,
    `  store on ${machine.storeFilesystem}, synchronous=${settings.synchronous}`,
    `  ${settings.messages} messages of ${settings.size} bytes, ${settings.recipients} recipient(s) each, ` +
      (perMessage
        ? `${settings.concurrency} clients each opening a connection per message, `
        : `${settings.concurrency} connections kept open, `) +
      `pipelining ${settings.pipelining === null ? 'n/a' : settings.pipelining ? 'on' : 'off'}, ` +
      `${settings.warmup} warm-up messages not counted, time limit ${settings.timeLimitSeconds} s` +
      (settings.strace ? ', relay under strace' : ''),
    '',
    'Results',
    row('accepted', `${result.accepted} of ${settings.messages} (${result.failed} failed, ${result.unsent} not sent)`),
    row('elapsed', format(result.elapsedSeconds, 2, ' s')),
    row('throughput', format(result.messagesPerSecond, 0, ' msg/s')),
    row('latency, end of DATA to 250', latencyText(latency)),
    ...connectionRows(settings.connection, result.connectionCosts, result.latencyTarget, 34),
    row('relay peak RSS (VmHWM)', format(relay.peakRssBytes === null ? null : relay.peakRssBytes / 2 ** 20, 1, ' MiB')),
    row('relay CPU, all threads', cores(relay.cpuSeconds)),
    row('relay CPU, main thread', cores(relay.mainThreadCpuSeconds)),
    row('load generator CPU', cores(result.benchCpuSeconds)),
    row('WAL commits per message', `${format(relay.walCommitsPerMessage, 3)} (${relay.walCommits ?? 'n/a'} commits for ${relay.storedMessages ?? 'n/a'} messages, warm-up included)`),
    row(
      'WAL syncs per message',
      relay.walSyncs === null
        ? 'n/a (none off the event loop: the delivery thread\'s commits sync inside COMMIT, or synchronous=NORMAL: no sync per commit)'
        : `${format(relay.walSyncsPerMessage, 3)} (${relay.walSyncs} fdatasyncs off the event loop, each covering the commits made before it)`,
    ),
  ];
  if (settings.strace) {
    lines.push(
      row(
        'fsync+fdatasync per message',
        `${format(relay.syncCallsPerMessage, 3)} (strace: ${relay.fsyncCalls ?? 'n/a'} fsync + ` +
          `${relay.fdatasyncCalls ?? 'n/a'} fdatasync over the relay's whole life)`,
      ),
      row(
        'time inside fsync+fdatasync',
        `${format(relay.syncSeconds, 2, ' s')} over the relay's whole life, ` +
          `${format(relay.syncSeconds === null || syncCallCount(relay) === 0 ? null : (relay.syncSeconds * 1000) / syncCallCount(relay), 2, ' ms')} per call`,
      ),
    );
  }
  lines.push(
    '',
    `Reference (${reference.conditions}; given figures, not measured here)`,
    `  Postfix  ~${reference.postfixPerSecond} msg/s (one fsync per message)`,
    `  Haraka   ~${reference.harakaPerSecond} msg/s`,
    `  target   >= ${reference.targetPerSecond} msg/s`,
    `  Rebound  ${format(result.messagesPerSecond, 0, ' msg/s')} (${perMessage ? 'one connection per message' : 'connections reused'})` +
      ` = ${format(reference.ratioToPostfix, 2)} x Postfix` +
      ` (target ${reference.targetMet ? 'met' : 'NOT met'})`,
  );
  lines.push(...failureLines('Failures', result.failures), ...failureLines('Warm-up failures', result.warmup.failures));
  if (relay.logProblems.length > 0) {
    lines.push('', 'Relay log, warn and above');
    for (const problem of relay.logProblems) {
      lines.push(`  ${problem.count} x ${problem.level}: ${problem.msg}`, `      e.g. ${problem.example.slice(0, 400)}`);
    }
  }
  if (relay.stderr.trim()) lines.push('', 'Relay stderr', ...relay.stderr.trim().split('\n').slice(0, 20).map((l) => `  ${l}`));
  const problems = anomalies(result);
  if (problems.length > 0) lines.push('', 'Problems', ...problems.map((p) => `  - ${p}`));
  console.log(lines.join('\n'));
}

async function measure(options: BenchOptions, relay: RelayProcess, signal: AbortSignal): Promise<RunMeasurements> {
  const settings = { recipients: options.recipients, messages: new MessageFactory(options.size) };
  checkMessageSize(options, settings.messages);
  const clients = await openLoadClients(options.connection, relay.port, options.concurrency);
  progress(
    `${options.concurrency} ${clients.mode === 'reused' ? 'connections open' : 'clients, one connection per message'}; ` +
      `warm-up of ${options.warmup} messages`,
  );
  const warmup = await clients.run(options.warmup, 0, settings, signal);

  progress(`sending ${options.messages} messages`);
  const cpuBefore = relay.cpuTime();
  const benchCpuBefore = process.cpuUsage();
  const measured = await clients.run(options.messages, options.warmup, settings, signal);
  const benchCpu = process.cpuUsage(benchCpuBefore);
  const cpuAfter = relay.cpuTime();

  await clients.close();
  // Read before stopping: once the process has exited /proc no longer has it.
  const peakRssBytes = relay.peakRssBytes();
  progress('stopping the relay (SIGTERM)');
  const stop = await relay.stop();
  return {
    pipelining: clients.pipelining(),
    warmup,
    measured,
    relayCpu: { before: cpuBefore, after: cpuAfter },
    benchCpuSeconds: (benchCpu.user + benchCpu.system) / 1e6,
    peakRssBytes,
    stop,
  };
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (options === 'help') {
    console.log(HELP);
    return 0;
  }
  if (options.strace && !commandExists('strace')) throw new BenchError('--strace given but strace is not on PATH');

  prepareRelayBuild(PROJECT_ROOT, options.build, progress);

  const workDir = mkdtempSync(join(tmpdir(), 'rebound-bench-'));
  let relay: RelayProcess | null = null;
  const cleanUp = (): void => {
    relay?.kill();
    rmSync(workDir, { recursive: true, force: true });
  };
  const onSignal = (name: NodeJS.Signals): void => {
    progress(`${name}: killing the relay and removing ${workDir}`);
    cleanUp();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const timeLimit = new AbortController();
  const timer = setTimeout(() => {
    progress(`time limit of ${options.timeLimitSeconds} s reached; stopping the load`);
    timeLimit.abort();
  }, options.timeLimitSeconds * 1000);
  try {
    progress('starting the relay');
    relay = await startRelay({
      projectRoot: PROJECT_ROOT,
      workDir,
      synchronous: options.synchronous,
      // Headroom over what the load needs, so the relay's own limits never refuse bench mail.
      maxRecipients: Math.max(1000, options.recipients),
      maxClients: Math.max(1000, options.concurrency + 10),
      strace: options.strace,
    });
    progress(`relay pid ${relay.relayPid} listening on 127.0.0.1:${relay.port}`);
    const storeFilesystem = filesystemType(workDir);
    const run = await measure(options, relay, timeLimit.signal);
    clearTimeout(timer);
    const result = summarize(options, storeFilesystem, run);
    if (options.json) console.log(JSON.stringify({ ...result, problems: anomalies(result) }, null, 2));
    else printText(result);
    return anomalies(result).length === 0 ? 0 : 1;
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    cleanUp();
  }
}

// Run when started as a script; bench/main.ts imports this file only for SUBMIT_OPTIONS.
if (isEntryPoint(import.meta.url)) runMain(main);
