/**
 * End-to-end benchmark: how many messages per second the relay accepts over SMTP, stores, relays
 * to the next hop and records as delivered. The next hop is a local sink (bench/sink.ts) on
 * 127.0.0.1: every recipient domain is routed to it by "*", so no DNS is used and nothing leaves
 * the machine. A measurement, not a test: it prints figures and only fails (exit 1) when the run
 * itself went wrong (refused or lost messages, time limit, unclean shutdown, store not all
 * delivered).
 *
 *   npm run bench -- --mode e2e --messages 20000
 *   npm run bench -- --mode e2e --connection per-message --concurrency 50
 *   npx tsx bench/e2e.ts --help
 */
import BetterSqlite3 from 'better-sqlite3';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
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
  sourceRevision,
  wholeNumber,
  type ConnectionCosts,
  type LatencySummary,
  type LatencyTargetCheck,
  type MachineInfo,
} from './common.js';
import { profileLines, summarizeCpuProfile, type ProfileSummary } from './cpu-profile.js';
import {
  BenchError,
  prepareRelayBuild,
  filesystemType,
  machineCpuTime,
  processCpuTime,
  type MachineCpuTime,
  startRelay,
  storePath,
  type BenchDeliveryConfig,
  type CpuTime,
  type LogProblem,
  type RelayProcess,
  type StopReport,
  type Synchronous,
} from './relay-process.js';
import { SinkProcess, type SinkStats } from './sink.js';
import { MessageFactory, monotonicMs, openLoadClients, type ConnectionMode, type FailureSummary, type PhaseResult } from './smtp-load.js';

const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Not a flag: one recipient per message makes every batch one recipient whatever its value. */
const BATCH_SIZE = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'config', 'default.json'), 'utf8')) as { delivery: { batchSize: number } }).delivery.batchSize;

/**
 * Figures given to us for this kind of machine (2 cores, loopback, 5 KB messages, one recipient
 * each, relayed to a sink). They are not measured here; they are what the result is compared against.
 */
const REFERENCE = {
  conditions: '2 cores, loopback, 5 KB messages, one recipient each, relayed to a sink',
  postfixPerSecond: 550,
  harakaPerSecond: 500,
  targetPerSecond: 1100,
} as const;

/** After the sink has everything: how long to wait for the relay to commit the last outcomes. */
const COMMIT_WAIT_MS = 15_000;
const COMMIT_POLL_MS = 10;
const LABEL_WIDTH = 40;

const HELP = `Usage: npm run bench -- --mode e2e [options]      (or: npx tsx bench/e2e.ts [options])

Builds dist/, starts an SMTP sink on 127.0.0.1 and the relay with delivery on and every domain
routed to the sink ("*": no DNS, nothing leaves the machine), sends mail to the relay over raw
SMTP and waits until the sink has received all of it. Prints delivered messages/s, the time from
each 250 to the sink receiving that message, memory, CPU, and what the store says after.

Options:
  --messages N                   messages to measure (default 20000: shorter runs on a shared 2-core
                                 machine swing by +-20%, and the first seconds are slower while the JIT warms)
  --size BYTES                   message size, headers included (default 5120)
  --concurrency C                concurrent clients of the relay (default 20)
  --connection MODE              reused: each client keeps one session for all its messages (a pooled
                                 sender); per-message: a new connection, greeting, EHLO, MAIL, RCPT,
                                 DATA, QUIT for every message, as apps without a pool send (default reused)
  --delivery-concurrency D       delivery.concurrency: transactions at once (default 100)
  --per-domain-concurrency P     delivery.perDomainConcurrency (default: the delivery concurrency)
  --connections-per-host H       delivery.maxConnectionsPerHost: connections to the sink, which stands
                                 in for every domain's MX (default: the delivery concurrency)
  --messages-per-connection M    delivery.maxMessagesPerConnection (default 100, the relay's default)
  --domains K                    recipient domains d0..d<K-1>.bench.test, one recipient per message,
                                 round robin (default 10)
  --warmup N                     messages sent and delivered first, not counted (default 1000)
  --time-limit SECONDS           stop sending and waiting after this long, report what was done (default 300)
  --synchronous MODE             store.synchronous for the relay: FULL or NORMAL (default FULL)
  --send-thread on|off           delivery.sendThread: the SMTP client on its own thread (default off, the relay's default)
  --strace                       run the relay under strace and count its fsync/fdatasync calls
  --cpu-prof                     profile the relay (node --cpu-prof) and print where its time went;
                                 the profile is kept in a temp dir (the run is slower under the profiler)
  --drain                        delivery alone: queue every message with delivery off, then restart the
                                 relay with delivery on and time how fast it drains the queue to the sink
  --no-build                     use dist/ as it is instead of building it first (it must be current)
  --json                         print one JSON object instead of text
  --help                         show this help`;

/** The flags, for parseArgs and for bench/main.ts (which hands each mode the flags it knows). */
export const E2E_OPTIONS = {
  messages: { type: 'string', default: '20000' },
  size: { type: 'string', default: '5120' },
  concurrency: { type: 'string', default: '20' },
  connection: { type: 'string', default: 'reused' },
  'delivery-concurrency': { type: 'string', default: '100' },
  'per-domain-concurrency': { type: 'string' },
  'connections-per-host': { type: 'string' },
  'messages-per-connection': { type: 'string', default: '100' },
  domains: { type: 'string', default: '10' },
  warmup: { type: 'string', default: '1000' },
  'time-limit': { type: 'string', default: '300' },
  synchronous: { type: 'string', default: 'FULL' },
  'send-thread': { type: 'string', default: 'off' },
  strace: { type: 'boolean', default: false },
  'cpu-prof': { type: 'boolean', default: false },
  drain: { type: 'boolean', default: false },
  'no-build': { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const;

interface E2eOptions {
  messages: number;
  size: number;
  concurrency: number;
  connection: ConnectionMode;
  deliveryConcurrency: number;
  perDomainConcurrency: number;
  connectionsPerHost: number;
  messagesPerConnection: number;
  domains: number;
  warmup: number;
  timeLimitSeconds: number;
  synchronous: Synchronous;
  sendThread: boolean;
  strace: boolean;
  cpuProf: boolean;
  drain: boolean;
  build: boolean;
  json: boolean;
}

function parseOptions(argv: string[]): E2eOptions | 'help' {
  const { values } = parseArgs({ args: argv, strict: true, options: E2E_OPTIONS });
  if (values.help) return 'help';
  const synchronous = values.synchronous.toUpperCase();
  if (synchronous !== 'FULL' && synchronous !== 'NORMAL') {
    throw new BenchError(`--synchronous must be FULL or NORMAL, got "${values.synchronous}"`);
  }
  const sendThread = values['send-thread'];
  if (sendThread !== 'on' && sendThread !== 'off') throw new BenchError(`--send-thread must be on or off, got "${sendThread}"`);
  const deliveryConcurrency = wholeNumber(values['delivery-concurrency'], '--delivery-concurrency', 1);
  const perDomain = values['per-domain-concurrency'];
  const perHost = values['connections-per-host'];
  return {
    messages: wholeNumber(values.messages, '--messages', 1),
    size: wholeNumber(values.size, '--size', 1),
    concurrency: wholeNumber(values.concurrency, '--concurrency', 1),
    connection: connectionMode(values.connection),
    deliveryConcurrency,
    perDomainConcurrency: perDomain === undefined ? deliveryConcurrency : wholeNumber(perDomain, '--per-domain-concurrency', 1),
    connectionsPerHost: perHost === undefined ? deliveryConcurrency : wholeNumber(perHost, '--connections-per-host', 1),
    messagesPerConnection: wholeNumber(values['messages-per-connection'], '--messages-per-connection', 1),
    domains: wholeNumber(values.domains, '--domains', 1),
    warmup: wholeNumber(values.warmup, '--warmup', 0),
    timeLimitSeconds: wholeNumber(values['time-limit'], '--time-limit', 1),
    synchronous,
    sendThread: sendThread === 'on',
    strace: values.strace,
    cpuProf: values['cpu-prof'],
    drain: values.drain,
    build: !values['no-build'],
    json: values.json,
  };
}

function domainOf(sequence: number, domains: number): string {
  return `d${sequence % domains}.bench.test`;
}

function recipientOf(sequence: number, domains: number): string {
  return `rcpt-${sequence}@${domainOf(sequence, domains)}`;
}

/** The relay's delivery settings for the run: everything to the sink, throughput limits from the flags. */
function deliveryConfig(options: E2eOptions, sinkPort: number): BenchDeliveryConfig {
  return {
    enabled: true,
    // "*" routes every recipient domain to the sink; a route's host is connected to directly.
    routes: { '*': `127.0.0.1:${sinkPort}` },
    // Never used with "*" (and an IP); a resolver that answers nothing, should that ever change.
    dns: { servers: ['127.0.0.1:9'], timeoutMs: 1000 },
    concurrency: options.deliveryConcurrency,
    perDomainConcurrency: options.perDomainConcurrency,
    maxConnectionsPerHost: options.connectionsPerHost,
    maxMessagesPerConnection: options.messagesPerConnection,
    sendThread: options.sendThread,
  };
}

/** The size is the whole message, X-Bench-Id included; the headers must fit in it. */
function checkMessageSize(options: E2eOptions, messages: MessageFactory): void {
  const largestSequence = options.warmup + options.messages;
  const length = messages.build(largestSequence, [recipientOf(largestSequence, options.domains)]).length + 2;
  if (length > options.size) throw new BenchError(`--size ${options.size} is smaller than the headers alone (${length} bytes)`);
}

interface StoreCheck {
  recipientsByStatus: Record<string, number>;
  messages: number;
  attemptsByOutcome: Record<string, number>;
  eventsByType: Record<string, number>;
  /** Recipients with more than one attempt (a retry, or a duplicate after a requeue). */
  retriedRecipients: number;
  error: string | null;
}

/** What the relay's store says once it has stopped, read-only. */
function checkStore(path: string): StoreCheck {
  const empty: StoreCheck = { recipientsByStatus: {}, messages: 0, attemptsByOutcome: {}, eventsByType: {}, retriedRecipients: 0, error: null };
  if (!existsSync(path)) return { ...empty, error: `no store at ${path}` };
  let db: BetterSqlite3.Database | null = null;
  try {
    db = new BetterSqlite3(path, { readonly: true, fileMustExist: true });
    const counts = (sql: string): Record<string, number> =>
      Object.fromEntries((db?.prepare(sql).all() as Array<{ key: string; n: number }>).map(({ key, n }) => [key, n]));
    return {
      recipientsByStatus: counts('SELECT status AS key, count(*) AS n FROM recipients GROUP BY status ORDER BY status'),
      messages: (db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n,
      attemptsByOutcome: counts('SELECT outcome AS key, count(*) AS n FROM attempts GROUP BY outcome ORDER BY outcome'),
      eventsByType: counts('SELECT event AS key, count(*) AS n FROM events GROUP BY event ORDER BY event'),
      retriedRecipients: (db.prepare('SELECT count(*) AS n FROM recipients WHERE attempts > 1').get() as { n: number }).n,
      error: null,
    };
  } catch (error) {
    return { ...empty, error: (error as Error).message };
  } finally {
    db?.close();
  }
}

/**
 * Once the sink has everything, polls the live store (read-only, WAL) until `expected`
 * recipients are delivered: when the relay had committed the outcome of the last message.
 * Not done while messages are flowing, so the polling cannot slow the relay down.
 */
async function waitUntilCommitted(path: string, expected: number, deadlineMs: number): Promise<{ atMs: number | null; delivered: number }> {
  let db: BetterSqlite3.Database | null = null;
  let delivered = 0;
  try {
    db = new BetterSqlite3(path, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 1000');
    const count = db.prepare(`SELECT count(*) AS n FROM recipients WHERE status = 'delivered'`);
    for (let polls = 0; polls < COMMIT_WAIT_MS / COMMIT_POLL_MS + 1; polls++) {
      delivered = (count.get() as { n: number }).n;
      if (delivered >= expected) return { atMs: monotonicMs(), delivered };
      if (monotonicMs() > deadlineMs) break;
      await new Promise((resolve) => setTimeout(resolve, COMMIT_POLL_MS));
    }
  } catch (error) {
    progress(`could not read the live store: ${(error as Error).message}`);
  } finally {
    db?.close();
  }
  return { atMs: null, delivered };
}

interface RunMeasurements {
  pipelining: boolean | null;
  sinkPort: number;
  warmup: PhaseResult;
  warmupDelivered: number;
  measured: PhaseResult;
  /** Measured messages the sink had received when the last 250 arrived. */
  deliveredWhenSubmissionEnded: number;
  submissionEndedAtMs: number;
  receivedAtMs: Float64Array;
  sinkDuplicates: number;
  sinkStrays: number;
  sinkStats: SinkStats | null;
  committed: { atMs: number | null; delivered: number };
  relayCpu: { before: CpuTime | null; after: CpuTime | null };
  sinkCpu: { before: CpuTime | null; after: CpuTime | null };
  /** The whole machine over the same span as relayCpu, and this process's CPU in that span. */
  machineCpu: { before: MachineCpuTime | null; after: MachineCpuTime | null; benchSeconds: number };
  benchCpuSeconds: number;
  peakRssBytes: number | null;
  stop: StopReport;
  store: StoreCheck;
  /** --drain: the relay that queued everything (delivery off), and when the delivering one was up. */
  drain: { submitStop: StopReport; startedAtMs: number } | null;
}

/** Starts a relay on the run's store, delivering to the sink or (false) only queueing. */
type LaunchRelay = (delivering: boolean) => Promise<RelayProcess>;

interface E2eResult {
  machine: MachineInfo & { storeFilesystem: string; sourceRevision: string | null };
  /** pipelining: whether every session advertised it; null when none was opened. */
  settings: E2eOptions & { pipelining: boolean | null; sinkPort: number; batchSize: number };
  accepted: number;
  failed: number;
  unsent: number;
  delivered: number;
  /** Accepted measured messages the sink never received (within the time limit). */
  missing: number;
  stoppedByTimeLimit: boolean;
  /** First submission to the sink receiving the last measured message. */
  elapsedSeconds: number;
  deliveredPerSecond: number;
  submission: {
    elapsedSeconds: number;
    acceptedPerSecond: number;
    backlogAtEnd: number;
    /** End of DATA to 250. */
    latencyMs: LatencySummary | null;
    /** --connection per-message: connections opened and connect() to 220 and to 250; null when reused. */
    connectionCosts: ConnectionCosts | null;
    latencyTarget: LatencyTargetCheck;
  };
  /** Sink receiving the last message to the store holding every outcome; null if never seen. */
  committedAfterLastDeliveryMs: number | null;
  deliveredAndCommittedPerSecond: number | null;
  /** The client getting its 250 to the sink receiving that message. */
  latencyMs: (LatencySummary & { min: number }) | null;
  /** Measured messages the sink received in each second after the first submission. */
  deliveredPerSecondTimeline: number[];
  failures: FailureSummary;
  warmup: { accepted: number; failed: number; delivered: number; failures: FailureSummary };
  sink: { stats: SinkStats | null; duplicates: number; strays: number; cpuSeconds: number | null };
  /**
   * The whole machine while the relay's CPU was measured: how many cores were busy, and how much of
   * that was not the relay, the sink or this process (other work on the machine skews a run).
   */
  machineCpu: { busyCores: number; otherProcessesCores: number; interruptCores: number; iowaitCores: number; stealCores: number } | null;
  relay: {
    peakRssBytes: number | null;
    /** From the first submission to the last delivery. */
    cpuSeconds: number | null;
    mainThreadCpuSeconds: number | null;
    exitCode: number | null;
    exitSignal: string | null;
    stoppedCleanly: boolean;
    storedMessages: number | null;
    /** Submission commits (the spool's group commits); delivery's commits are not in the log. */
    spoolCommits: number | null;
    /** WAL fdatasyncs off the event loop, spool and delivery together (null under NORMAL, with --drain, or with the delivery thread, whose commits sync inside COMMIT). */
    walSyncs: number | null;
    requeuedAtStop: number | null;
    fsyncCalls: number | null;
    fdatasyncCalls: number | null;
    syncSeconds: number | null;
    queuedLogLines: number;
    logProblems: LogProblem[];
    stderr: string;
  };
  store: StoreCheck;
  benchCpuSeconds: number;
  cpuProfile: ProfileSummary | null;
  cpuProfileError: string | null;
  /** --drain: how the relay that only queued stopped. */
  queueingRelay: { exitCode: number | null; stoppedCleanly: boolean } | null;
  reference: typeof REFERENCE & { ratioToPostfix: number; ratioToHaraka: number; targetMet: boolean };
}

async function measure(options: E2eOptions, launch: LaunchRelay, sink: SinkProcess, signal: AbortSignal, deadlineMs: number, store: string): Promise<RunMeasurements> {
  const messages = new MessageFactory(options.size, { benchIdHeader: true, subject: 'Rebound end-to-end benchmark message' });
  const settings = { recipients: 1, messages, recipientsFor: (sequence: number) => [recipientOf(sequence, options.domains)] };
  checkMessageSize(options, messages);
  let relay = await launch(!options.drain);
  const clients = await openLoadClients(options.connection, relay.port, options.concurrency);
  progress(
    `${options.concurrency} ${clients.mode === 'reused' ? 'connections open' : 'clients, one connection per message'}; ` +
      `warm-up of ${options.warmup} messages`,
  );
  const warmup = await clients.run(options.warmup, 0, settings, signal);
  if (!options.drain && !(await sink.waitForDistinct(warmup.accepted, deadlineMs))) progress('time limit reached waiting for the warm-up to be delivered');
  const warmupDelivered = options.drain ? 0 : sink.countIn(0, options.warmup);

  progress(`sending ${options.messages} messages${options.drain ? ' (delivery off: queued only)' : ''}`);
  let relayBefore = relay.cpuTime();
  let sinkBefore = processCpuTime(sink.pid);
  let machineBefore = machineCpuTime();
  let ownBefore = process.cpuUsage();
  const benchBefore = process.cpuUsage();
  const measured = await clients.run(options.messages, options.warmup, settings, signal);
  const submissionEndedAtMs = monotonicMs();
  const deliveredWhenSubmissionEnded = sink.countIn(options.warmup, options.warmup + options.messages);

  let drain: RunMeasurements['drain'] = null;
  const pipelining = clients.pipelining();
  if (options.drain) {
    await clients.close();
    progress(`all sent (${measured.accepted} accepted); stopping the queueing relay and starting a delivering one`);
    const submitStop = await relay.stop();
    relay = await launch(true);
    // Delivery starts as the relay starts: its first receipts may come before we see it listening.
    drain = { submitStop, startedAtMs: monotonicMs() };
    relayBefore = relay.cpuTime();
    sinkBefore = processCpuTime(sink.pid);
    machineBefore = machineCpuTime();
    ownBefore = process.cpuUsage();
  } else progress(`all sent (${measured.accepted} accepted); waiting for the sink to receive them`);
  // Everything accepted so far, warm-up included.
  const expected = (options.drain ? warmup.accepted : warmupDelivered) + measured.accepted;
  await sink.waitForDistinct(expected, deadlineMs);
  const benchCpu = process.cpuUsage(benchBefore);
  const relayAfter = relay.cpuTime();
  const sinkAfter = processCpuTime(sink.pid);
  const machineAfter = machineCpuTime();
  const own = process.cpuUsage(ownBefore);
  // Read before stopping: once the process has exited /proc no longer has it.
  const peakRssBytes = relay.peakRssBytes();

  progress('sink has them; waiting for the relay to commit the last outcomes');
  const committed = await waitUntilCommitted(store, warmup.accepted + measured.accepted, Math.min(deadlineMs, monotonicMs() + COMMIT_WAIT_MS));
  if (!options.drain) await clients.close();
  progress('stopping the relay (SIGTERM)');
  const stop = await relay.stop();
  const sinkStats = await sink.stats();
  await sink.stop();
  return {
    pipelining,
    sinkPort: sink.port,
    warmup,
    warmupDelivered: options.drain ? sink.countIn(0, options.warmup) : warmupDelivered,
    measured,
    deliveredWhenSubmissionEnded,
    submissionEndedAtMs,
    receivedAtMs: sink.receivedAtMs,
    sinkDuplicates: sink.duplicates,
    sinkStrays: sink.strays,
    sinkStats,
    committed,
    relayCpu: { before: relayBefore, after: relayAfter },
    sinkCpu: { before: sinkBefore, after: sinkAfter },
    machineCpu: { before: machineBefore, after: machineAfter, benchSeconds: (own.user + own.system) / 1e6 },
    benchCpuSeconds: (benchCpu.user + benchCpu.system) / 1e6,
    peakRssBytes,
    stop,
    store: checkStore(store),
    drain,
  };
}

function summarize(options: E2eOptions, storeFilesystem: string, run: RunMeasurements, profile: { summary: ProfileSummary | null; error: string | null }): E2eResult {
  const { measured, warmup, stop } = run;
  // Normally the measured messages, from the first submission; with --drain every queued message
  // (warm-up included), from the delivering relay's start (or its first delivery, if sooner).
  const first = options.drain ? 0 : options.warmup;
  const count = options.drain ? options.warmup + options.messages : options.messages;
  let startMs = measured.startedAtMs;
  if (run.drain) {
    startMs = run.drain.startedAtMs;
    for (let id = 0; id < count; id++) startMs = Math.min(startMs, run.receivedAtMs[id] ?? Number.POSITIVE_INFINITY);
  }
  const latencies: number[] = [];
  let delivered = 0;
  let lastMs = Number.NaN;
  const timeline: number[] = [];
  for (let k = 0; k < count; k++) {
    const receivedAt = run.receivedAtMs[first + k] ?? Number.NaN;
    if (Number.isNaN(receivedAt)) continue;
    delivered++;
    if (!(receivedAt <= lastMs)) lastMs = receivedAt;
    const second = Math.max(0, Math.floor((receivedAt - startMs) / 1000));
    while (timeline.length <= second) timeline.push(0);
    timeline[second] = (timeline[second] ?? 0) + 1;
    const acceptedAt = options.drain ? Number.NaN : (measured.acceptedAtMs[k] ?? Number.NaN);
    if (!Number.isNaN(acceptedAt)) latencies.push(receivedAt - acceptedAt);
  }
  const elapsedSeconds = Number.isNaN(lastMs) ? 0 : (lastMs - startMs) / 1000;
  const perSecond = elapsedSeconds > 0 ? delivered / elapsedSeconds : 0;
  const latencyArray = Float64Array.from(latencies);
  const latency = latencySummary(latencyArray);
  const committedAfter = run.committed.atMs === null || Number.isNaN(lastMs) ? null : Math.max(0, run.committed.atMs - lastMs);
  const committedSeconds = run.committed.atMs === null ? null : (run.committed.atMs - startMs) / 1000;
  const cpu = (span: { before: CpuTime | null; after: CpuTime | null }, pick: (time: CpuTime) => number): number | null =>
    span.before && span.after ? pick(span.after) - pick(span.before) : null;
  const submissionSeconds = (run.submissionEndedAtMs - measured.startedAtMs) / 1000;
  return {
    machine: { ...machineInfo(), storeFilesystem, sourceRevision: sourceRevision(PROJECT_ROOT) },
    settings: { ...options, pipelining: run.pipelining, sinkPort: run.sinkPort, batchSize: BATCH_SIZE },
    accepted: measured.accepted,
    failed: measured.failed,
    unsent: options.messages - measured.accepted - measured.failed,
    delivered,
    missing: Math.max(0, (options.drain ? warmup.accepted : 0) + measured.accepted - delivered),
    stoppedByTimeLimit: measured.aborted || delivered < (options.drain ? warmup.accepted : 0) + measured.accepted,
    elapsedSeconds,
    deliveredPerSecond: perSecond,
    submission: {
      elapsedSeconds: submissionSeconds,
      acceptedPerSecond: submissionSeconds > 0 ? measured.accepted / submissionSeconds : 0,
      backlogAtEnd: measured.accepted - run.deliveredWhenSubmissionEnded,
      latencyMs: latencySummary(measured.latenciesMs),
      connectionCosts: connectionCosts(measured),
      latencyTarget: latencyTargetCheck(latencySummary(measured.latenciesMs), options.concurrency),
    },
    committedAfterLastDeliveryMs: committedAfter,
    deliveredAndCommittedPerSecond: committedSeconds && committedSeconds > 0 ? delivered / committedSeconds : null,
    latencyMs: latency ? { ...latency, min: latencyArray.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY) } : null,
    deliveredPerSecondTimeline: timeline,
    failures: measured.failures,
    warmup: { accepted: warmup.accepted, failed: warmup.failed, delivered: run.warmupDelivered, failures: warmup.failures },
    sink: {
      stats: run.sinkStats,
      duplicates: run.sinkDuplicates,
      strays: run.sinkStrays,
      cpuSeconds: cpu(run.sinkCpu, (t) => t.totalSeconds),
    },
    machineCpu: machineCpuSummary(run, elapsedSeconds, cpu(run.relayCpu, (t) => t.totalSeconds), cpu(run.sinkCpu, (t) => t.totalSeconds)),
    relay: {
      peakRssBytes: run.peakRssBytes,
      cpuSeconds: cpu(run.relayCpu, (t) => t.totalSeconds),
      mainThreadCpuSeconds: cpu(run.relayCpu, (t) => t.mainThreadSeconds),
      exitCode: stop.exitCode,
      exitSignal: stop.exitSignal,
      stoppedCleanly: stop.stoppedCleanly,
      storedMessages: (run.drain?.submitStop ?? stop).store?.messages ?? null,
      spoolCommits: (run.drain?.submitStop ?? stop).store?.commits ?? null,
      walSyncs: run.drain ? null : (stop.store?.walSyncs ?? null),
      requeuedAtStop: stop.log.deliveryRequeued,
      fsyncCalls: stop.syncCalls?.fsync ?? null,
      fdatasyncCalls: stop.syncCalls?.fdatasync ?? null,
      syncSeconds: stop.syncCalls?.seconds ?? null,
      queuedLogLines: (run.drain?.submitStop ?? stop).log.queued,
      logProblems: [...(run.drain?.submitStop.log.problems ?? []), ...stop.log.problems],
      stderr: (run.drain?.submitStop.stderr ?? '') + stop.stderr,
    },
    store: run.store,
    benchCpuSeconds: run.benchCpuSeconds,
    cpuProfile: profile.summary,
    cpuProfileError: profile.error,
    queueingRelay: run.drain ? { exitCode: run.drain.submitStop.exitCode, stoppedCleanly: run.drain.submitStop.stoppedCleanly } : null,
    reference: {
      ...REFERENCE,
      ratioToPostfix: perSecond / REFERENCE.postfixPerSecond,
      ratioToHaraka: perSecond / REFERENCE.harakaPerSecond,
      // --drain measures delivery alone: not what the end-to-end references measure.
      targetMet: !options.drain && perSecond >= REFERENCE.targetPerSecond,
    },
  };
}

function machineCpuSummary(run: RunMeasurements, elapsedSeconds: number, relaySeconds: number | null, sinkSeconds: number | null): E2eResult['machineCpu'] {
  const { before, after, benchSeconds } = run.machineCpu;
  if (!before || !after || elapsedSeconds <= 0) return null;
  const busy = after.busySeconds - before.busySeconds;
  const interrupts = after.interruptSeconds - before.interruptSeconds;
  const steal = after.stealSeconds - before.stealSeconds;
  const ours = (relaySeconds ?? 0) + (sinkSeconds ?? 0) + benchSeconds;
  return {
    busyCores: busy / elapsedSeconds,
    // Kernel threads working for us (journal commits, writeback) are counted here too; they are small.
    otherProcessesCores: Math.max(0, busy - ours - interrupts - steal) / elapsedSeconds,
    interruptCores: interrupts / elapsedSeconds,
    iowaitCores: (after.iowaitSeconds - before.iowaitSeconds) / elapsedSeconds,
    stealCores: (after.stealSeconds - before.stealSeconds) / elapsedSeconds,
  };
}

/** Things in the result that say the run, or the relay, misbehaved. */
function anomalies(result: E2eResult): string[] {
  const found: string[] = [];
  const { relay, store, sink } = result;
  if (result.stoppedByTimeLimit) found.push(`stopped by the ${result.settings.timeLimitSeconds} s time limit`);
  if (result.failed > 0) found.push(`${result.failed} message(s) not accepted`);
  if (result.unsent > 0) found.push(`${result.unsent} message(s) never sent`);
  if (result.missing > 0) found.push(`${result.missing} accepted message(s) never reached the sink`);
  if (result.warmup.failed > 0) found.push(`${result.warmup.failed} warm-up message(s) not accepted`);
  if (result.warmup.delivered < result.warmup.accepted) found.push(`${result.warmup.accepted - result.warmup.delivered} warm-up message(s) never reached the sink`);
  if (sink.duplicates > 0) found.push(`the sink received ${sink.duplicates} message(s) twice`);
  if (sink.strays > 0) found.push(`the sink received ${sink.strays} message(s) without a bench id it knows`);
  if (!relay.stoppedCleanly) found.push('the relay did not stop after SIGTERM and was killed');
  else if (relay.exitCode !== 0) found.push(`the relay exited with code ${String(relay.exitCode)} (signal ${String(relay.exitSignal)})`);
  if (relay.storedMessages === null) found.push('no "rebound stopped; store closed" line in the relay log');
  if (result.queueingRelay && (!result.queueingRelay.stoppedCleanly || result.queueingRelay.exitCode !== 0)) {
    found.push(`the queueing relay (--drain) exited with code ${String(result.queueingRelay.exitCode)}${result.queueingRelay.stoppedCleanly ? '' : ' after being killed'}`);
  }
  const acceptedTotal = result.accepted + result.warmup.accepted;
  if (relay.storedMessages !== null && relay.storedMessages !== acceptedTotal) {
    found.push(`the relay stored ${relay.storedMessages} messages but the client got 250 for ${acceptedTotal}`);
  }
  if (relay.queuedLogLines !== acceptedTotal) found.push(`the relay logged "message queued" ${relay.queuedLogLines} times for ${acceptedTotal} accepted messages`);
  if (store.error) found.push(`could not check the store: ${store.error}`);
  const deliveredInStore = store.recipientsByStatus.delivered ?? 0;
  if (!store.error && deliveredInStore !== acceptedTotal) found.push(`the store has ${deliveredInStore} recipients delivered for ${acceptedTotal} accepted messages`);
  const otherStatuses = Object.entries(store.recipientsByStatus).filter(([status, n]) => status !== 'delivered' && n > 0);
  if (otherStatuses.length > 0) found.push(`recipients not delivered in the store: ${otherStatuses.map(([s, n]) => `${s} ${n}`).join(', ')}`);
  if (result.committedAfterLastDeliveryMs === null) found.push(`the store did not show every recipient delivered within ${COMMIT_WAIT_MS / 1000} s of the last delivery`);
  if ((relay.requeuedAtStop ?? 0) > 0) found.push(`${relay.requeuedAtStop} recipient(s) were still claimed at shutdown and queued again`);
  if (result.machine.storeFilesystem === 'tmpfs') found.push('the store is on tmpfs, where fsync costs nothing: the figures flatter the relay');
  if (result.cpuProfileError) found.push(`CPU profile: ${result.cpuProfileError}`);
  return found;
}

/** Not failures of the run, but reasons to distrust its figures. */
function warnings(result: E2eResult): string[] {
  const found: string[] = [];
  if (result.machineCpu && result.machineCpu.otherProcessesCores > 0.25) {
    found.push(`other processes used ${result.machineCpu.otherProcessesCores.toFixed(2)} cores during the measurement: the figures are skewed, run again on a quiet machine`);
  }
  if (result.settings.cpuProf) found.push('the relay ran under the CPU profiler, which slows it: use this run for where the time goes, not for throughput');
  return found;
}

function counts(record: Record<string, number>): string {
  const entries = Object.entries(record);
  return entries.length === 0 ? 'none' : entries.map(([key, n]) => `${key} ${n}`).join(', ');
}

/** Per-second counts, at most 40 shown (the rest elided in the middle). */
function timelineText(timeline: number[]): string {
  if (timeline.length <= 40) return timeline.join(' ');
  return `${timeline.slice(0, 20).join(' ')} ... ${timeline.slice(-20).join(' ')}`;
}

function printText(result: E2eResult): void {
  const { machine, settings, relay, reference, store, sink } = result;
  const latency = result.latencyMs;
  const r = (label: string, value: string): string => row(label, value, LABEL_WIDTH);
  const cores = (seconds: number | null): string =>
    seconds === null ? 'n/a' : `${seconds.toFixed(2)} s (${((seconds / result.elapsedSeconds) * 100).toFixed(0)}% of one core)`;
  const totalDelivered = result.accepted + result.warmup.accepted;
  const syncCalls = relay.fsyncCalls === null ? null : relay.fsyncCalls + (relay.fdatasyncCalls ?? 0);
  const drain = settings.drain;
  const lines = [
    drain
      ? 'Rebound delivery benchmark, --drain (a queue filled with delivery off, then drained: store -> delivery -> sink)'
      : `Rebound end-to-end benchmark (submission -> store -> delivery -> sink), ` +
        `${settings.connection === 'per-message' ? 'one connection per message' : 'connections reused'} (--connection ${settings.connection})`,
    '',
    'Measured on',
    `  node ${machine.node}, ${machine.platform}, ${machine.cpuCount} x ${machine.cpuModel}`,
    `  store on ${machine.storeFilesystem}, synchronous=${settings.synchronous}; source ${machine.sourceRevision ?? 'n/a (not a git checkout)'}`,
    `  ${settings.messages} messages of ${settings.size} bytes, 1 recipient each, round robin over ${settings.domains} domain(s) ` +
      `(d0..d${settings.domains - 1}.bench.test); ${settings.warmup} warm-up messages ${drain ? 'queued and drained with them' : 'not counted'}; ` +
      `time limit ${settings.timeLimitSeconds} s` +
      (settings.strace ? '; relay under strace' : '') +
      (settings.cpuProf ? '; relay under --cpu-prof' : ''),
    `  submission: ${settings.concurrency} clients, ` +
      (settings.connection === 'per-message' ? 'one connection per message' : 'connections kept open') +
      ` (--connection ${settings.connection}), pipelining ${settings.pipelining === null ? 'n/a' : settings.pipelining ? 'on' : 'off'}`,
    `  delivery: routes {"*": "127.0.0.1:${settings.sinkPort}"}, concurrency ${settings.deliveryConcurrency}, ` +
      `perDomainConcurrency ${settings.perDomainConcurrency}, maxConnectionsPerHost ${settings.connectionsPerHost}, ` +
      `maxMessagesPerConnection ${settings.messagesPerConnection}, batchSize ${settings.batchSize} (default), ` +
      `SMTP client ${settings.sendThread ? 'on its own thread' : 'on the main thread'} (sendThread ${settings.sendThread})`,
    '  sink: node:net in its own process; EHLO PIPELINING 8BITMIME SIZE, no TLS; accepts everything',
    '',
    'Results',
    r(
      'delivered to the sink',
      `${result.delivered} of ${result.accepted + (drain ? result.warmup.accepted : 0)} accepted ` +
        `(${result.missing} missing; ${result.failed} refused, ${result.unsent} not sent)`,
    ),
    r(drain ? 'delivering relay up to last delivery' : 'first submission to last delivery', format(result.elapsedSeconds, 2, ' s')),
    r(drain ? 'drain throughput (delivery alone)' : 'delivered throughput', format(result.deliveredPerSecond, 0, ' msg/s')),
    r(
      'submission alone',
      `${result.accepted} accepted in ${format(result.submission.elapsedSeconds, 2, ' s')} (${format(result.submission.acceptedPerSecond, 0, ' msg/s')}); ` +
        (drain ? 'delivery off' : `${result.submission.backlogAtEnd} not yet delivered at its end`),
    ),
    r('submission latency, end of DATA to 250', latencyText(result.submission.latencyMs, 'n/a')),
    ...connectionRows(settings.connection, result.submission.connectionCosts, result.submission.latencyTarget, LABEL_WIDTH),
    r(
      'every outcome committed',
      result.committedAfterLastDeliveryMs === null
        ? 'n/a (not seen in the store)'
        : `${format(result.committedAfterLastDeliveryMs, 0, ' ms')} after the last delivery ` +
            `(${format(result.deliveredAndCommittedPerSecond, 0, ' msg/s')} delivered and committed; polled every ${COMMIT_POLL_MS} ms)`,
    ),
    r(
      'latency, 250 to the sink',
      latency
        ? `p50 ${format(latency.p50, 1)}  p90 ${format(latency.p90, 1)}  p99 ${format(latency.p99, 1)}  max ${format(latency.max, 1)} ms (min ${format(latency.min, 1)})` +
          // The relay answers 250 and starts delivery right after the same commit, so a load
          // generator slow to read its 250 can see it after the sink got the message.
          (latency.min < 0 ? '; below 0: the sink had the message before the load generator read its 250' : '')
        : drain
          ? 'n/a with --drain (it would be the time spent queued)'
          : 'n/a (nothing delivered)',
    ),
    r('delivered per second (from the start)', timelineText(result.deliveredPerSecondTimeline)),
    r('relay peak RSS (VmHWM)', format(relay.peakRssBytes === null ? null : relay.peakRssBytes / 2 ** 20, 1, ' MiB')),
    r('relay CPU, all threads', cores(relay.cpuSeconds)),
    r('relay CPU, main thread', cores(relay.mainThreadCpuSeconds)),
    r('sink CPU', cores(sink.cpuSeconds)),
    r(
      'machine CPU over the same span',
      result.machineCpu
        ? `${format(result.machineCpu.busyCores, 2)} of ${machine.cpuCount} cores busy; other processes ${format(result.machineCpu.otherProcessesCores, 2)} cores, ` +
            `irq+softirq ${format(result.machineCpu.interruptCores, 2)}, iowait ${format(result.machineCpu.iowaitCores, 2)}, steal ${format(result.machineCpu.stealCores, 2)}`
        : 'n/a',
    ),
    r('load generator CPU', drain ? 'n/a with --drain (it sent before the drain)' : cores(result.benchCpuSeconds)),
    r(
      'submission commits (from the log)',
      `${relay.spoolCommits ?? 'n/a'} for ${relay.storedMessages ?? 'n/a'} messages, warm-up included ` +
        `(${format(relay.spoolCommits === null || !relay.storedMessages ? null : relay.spoolCommits / relay.storedMessages, 3)} per message); ` +
        'delivery commits are not logged' + (settings.strace ? '' : ' (--strace counts every fsync)'),
    ),
    r(
      'WAL syncs (from the log)',
      relay.walSyncs === null || !relay.storedMessages
        ? 'n/a (none off the event loop: the delivery thread\'s commits sync inside COMMIT, or synchronous=NORMAL)'
        : `${relay.walSyncs} fdatasyncs off the event loop for the spool's and delivery's commits (${format(relay.walSyncs / relay.storedMessages, 3)} per message)`,
    ),
  ];
  if (settings.strace) {
    lines.push(
      r(
        drain ? 'fsync+fdatasync, delivering relay' : 'fsync+fdatasync, relay lifetime',
        `${syncCalls ?? 'n/a'} (${relay.fsyncCalls ?? 'n/a'} fsync + ${relay.fdatasyncCalls ?? 'n/a'} fdatasync) = ` +
          `${format(syncCalls === null ? null : syncCalls / totalDelivered, 2)} per delivered message, ${format(relay.syncSeconds, 2, ' s')} inside them`,
      ),
    );
  }
  lines.push(
    r('store after stop: recipients', counts(store.recipientsByStatus) + (store.error ? ` (error: ${store.error})` : '')),
    r('store after stop: attempts', `${counts(store.attemptsByOutcome)}; ${store.retriedRecipients} recipient(s) tried more than once`),
    r('store after stop: events', `${counts(store.eventsByType)}; ${store.messages} messages`),
    r('expected delivered (warm-up included)', String(totalDelivered)),
    r(
      'relay at stop',
      `exit ${String(relay.exitCode)}${relay.exitSignal ? ` (${relay.exitSignal})` : ''}, ${relay.stoppedCleanly ? 'clean' : 'killed'}, ` +
        `${relay.requeuedAtStop ?? 'n/a'} requeued by "delivery stopped"`,
    ),
    r(
      'sink',
      sink.stats
        ? `${sink.stats.messages} messages on ${sink.stats.connections} connections, ${sink.stats.commands} commands, ` +
            `${sink.duplicates} duplicate(s), ${sink.stats.unidentified} without an id`
        : 'n/a',
    ),
    '',
    `Reference (${reference.conditions}; given figures, not measured here)`,
    `  Postfix  ~${reference.postfixPerSecond} msg/s`,
    `  Haraka   ~${reference.harakaPerSecond} msg/s`,
    `  target   >= ${reference.targetPerSecond} delivered msg/s, delivery state committed per recipient`,
    drain
      ? `  Rebound  ${format(result.deliveredPerSecond, 0, ' msg/s')} delivery alone (--drain): not comparable, the references are end to end`
      : `  Rebound  ${format(result.deliveredPerSecond, 0, ' msg/s')} (${settings.connection === 'per-message' ? 'one connection per message' : 'connections reused'}) = ` +
        `${format(reference.ratioToPostfix, 2)} x Postfix, ` +
        `${format(reference.ratioToHaraka, 2)} x Haraka (target ${reference.targetMet ? 'met' : 'NOT met'})`,
  );
  lines.push(...failureLines('Failures', result.failures), ...failureLines('Warm-up failures', result.warmup.failures));
  if (relay.logProblems.length > 0) {
    lines.push('', 'Relay log, warn and above');
    for (const problem of relay.logProblems) {
      lines.push(`  ${problem.count} x ${problem.level}: ${problem.msg}`, `      e.g. ${problem.example.slice(0, 400)}`);
    }
  }
  if (relay.stderr.trim()) lines.push('', 'Relay stderr', ...relay.stderr.trim().split('\n').slice(0, 20).map((l) => `  ${l}`));
  if (result.cpuProfile) lines.push('', ...profileLines(result.cpuProfile));
  const cautions = warnings(result);
  if (cautions.length > 0) lines.push('', 'Warnings', ...cautions.map((w) => `  - ${w}`));
  const problems = anomalies(result);
  if (problems.length > 0) lines.push('', 'Problems', ...problems.map((p) => `  - ${p}`));
  console.log(lines.join('\n'));
}

function readProfile(profileDir: string | null): { summary: ProfileSummary | null; error: string | null } {
  if (!profileDir) return { summary: null, error: null };
  const files = readdirSync(profileDir).filter((name) => name.endsWith('.cpuprofile'));
  const [file] = files;
  if (!file) return { summary: null, error: `no .cpuprofile in ${profileDir} (the relay writes it only when it exits cleanly)` };
  try {
    return { summary: summarizeCpuProfile(join(profileDir, file), PROJECT_ROOT), error: null };
  } catch (error) {
    return { summary: null, error: `cannot read ${file}: ${(error as Error).message}` };
  }
}

async function main(argv = process.argv.slice(2)): Promise<number> {
  const options = parseOptions(argv);
  if (options === 'help') {
    console.log(HELP);
    return 0;
  }
  if (options.strace && !commandExists('strace')) throw new BenchError('--strace given but strace is not on PATH');

  prepareRelayBuild(PROJECT_ROOT, options.build, progress);

  const workDir = mkdtempSync(join(tmpdir(), 'rebound-e2e-'));
  // Kept after the run, unlike the work dir, so the profile can be opened in a viewer.
  const profileDir = options.cpuProf ? mkdtempSync(join(tmpdir(), 'rebound-e2e-profile-')) : null;
  const relays: RelayProcess[] = [];
  let sink: SinkProcess | null = null;
  const cleanUp = (): void => {
    for (const relay of relays) relay.kill();
    sink?.kill();
    rmSync(workDir, { recursive: true, force: true });
  };
  const onSignal = (name: NodeJS.Signals): void => {
    progress(`${name}: killing the relay and the sink and removing ${workDir}`);
    cleanUp();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const deadlineMs = monotonicMs() + options.timeLimitSeconds * 1000;
  const timeLimit = new AbortController();
  const timer = setTimeout(() => {
    progress(`time limit of ${options.timeLimitSeconds} s reached; stopping the load`);
    timeLimit.abort();
  }, options.timeLimitSeconds * 1000);
  try {
    progress('starting the sink');
    // Ids are sequence numbers: warm-up 0..W-1, then the measured messages.
    sink = await SinkProcess.start(options.warmup + options.messages);
    progress(`sink pid ${sink.pid} listening on 127.0.0.1:${sink.port}`);
    const sinkPort = sink.port;
    const launch: LaunchRelay = async (delivering) => {
      progress(`starting the relay${delivering ? '' : ' with delivery off'}`);
      const relay = await startRelay({
        projectRoot: PROJECT_ROOT,
        workDir,
        synchronous: options.synchronous,
        maxRecipients: 1000,
        maxClients: Math.max(1000, options.concurrency + 10),
        strace: options.strace,
        ...(delivering ? { delivery: deliveryConfig(options, sinkPort) } : {}),
        // Only the relay that delivers is profiled (with --drain, the queueing one is not).
        ...(profileDir && delivering ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profileDir] } : {}),
      });
      relays.push(relay);
      progress(`relay pid ${relay.relayPid} listening on 127.0.0.1:${relay.port}${delivering ? ', delivering to the sink' : ''}`);
      return relay;
    };
    const storeFilesystem = filesystemType(workDir);
    const run = await measure(options, launch, sink, timeLimit.signal, deadlineMs, storePath(workDir));
    clearTimeout(timer);
    const profile = readProfile(profileDir);
    if (profileDir) progress(`relay CPU profile kept in ${profileDir}`);
    const result = summarize(options, storeFilesystem, run, profile);
    if (options.json) console.log(JSON.stringify({ ...result, warnings: warnings(result), problems: anomalies(result) }, null, 2));
    else printText(result);
    return anomalies(result).length === 0 ? 0 : 1;
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    cleanUp();
  }
}

// Run when started as a script; bench/main.ts imports this file only for E2E_OPTIONS.
if (isEntryPoint(import.meta.url)) runMain(main);
