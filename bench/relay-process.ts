/**
 * Runs the built relay (`node dist/cli.js start`) as a child process for the benchmark, and reads
 * what it reports about itself: the listening port, its memory and CPU from /proc, and at shutdown
 * its commit counts (and, under strace, the real fsync calls).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type Synchronous = 'FULL' | 'NORMAL';

/** A problem that ends the benchmark with a one-line message rather than a stack trace. */
export class BenchError extends Error {
  override name = 'BenchError';
}

export interface RelaySettings {
  projectRoot: string;
  /** Scratch directory for the config, store, log and strace output. */
  workDir: string;
  synchronous: Synchronous;
  maxRecipients: number;
  maxClients: number;
  strace: boolean;
  /**
   * The relay's `delivery` config. Absent: `{ enabled: false }` (the submission benchmark, whose
   * mail goes to made-up domains). When delivery is on, routes must send everything to
   * 127.0.0.1 (see checkLoopbackOnly): the benchmark never relays anywhere else.
   */
  delivery?: BenchDeliveryConfig;
  /** More arguments for the relay's node, before the script (e.g. --cpu-prof). */
  nodeArgs?: string[];
}

export interface BenchDeliveryConfig {
  enabled: true;
  routes: Record<string, string>;
  [key: string]: unknown;
}

/** Counts the relay logs at shutdown. */
export interface StoreCounts {
  messages: number;
  /** The spool's group commits. */
  commits: number;
  /** fdatasyncs of the WAL made off the event loop (spool and delivery commits together); null under NORMAL or with the delivery thread (its commits sync inside COMMIT). */
  walSyncs: number | null;
}

export interface SyncCalls {
  fsync: number;
  fdatasync: number;
  /** Wall-clock time spent inside both calls (strace -w), in seconds. */
  seconds: number;
}

/** Log lines at warn level or above, grouped by message. */
export interface LogProblem {
  level: string;
  msg: string;
  count: number;
  /** The first such line, whole, so its fields (err, client, ...) can be read. */
  example: string;
}

export interface LogSummary {
  /** "message queued" lines: one per message the relay says it stored. */
  queued: number;
  problems: LogProblem[];
  /** From "delivery stopped": recipients claimed but not sent at shutdown, queued again. */
  deliveryRequeued: number | null;
}

export interface StopReport {
  exitCode: number | null;
  exitSignal: NodeJS.Signals | null;
  /** False when the relay did not stop within STOP_TIMEOUT_MS and was killed. */
  stoppedCleanly: boolean;
  store: StoreCounts | null;
  syncCalls: SyncCalls | null;
  log: LogSummary;
  stderr: string;
}

export interface CpuTime {
  /** All threads: JavaScript, libuv pool, GC. */
  totalSeconds: number;
  /** The main thread alone, where JavaScript and better-sqlite3's synchronous commits run. */
  mainThreadSeconds: number;
}

const LISTEN_TIMEOUT_MS = 20_000;
/** Above submission.shutdownTimeoutSeconds (30 s by default) so a clean stop is never cut short. */
const STOP_TIMEOUT_MS = 40_000;
const POLL_MS = 20;
const STDERR_LIMIT = 64 * 1024;
const PINO_LEVELS: Record<number, string> = { 40: 'warn', 50: 'error', 60: 'fatal' };

/** Compiles src/ to dist/ so the benchmark never measures a stale build. */
export function buildRelay(projectRoot: string): void {
  const tsc = join(projectRoot, 'node_modules', '.bin', 'tsc');
  try {
    execFileSync(tsc, ['-p', '.'], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: Buffer; stderr?: Buffer };
    const output = `${stdout?.toString() ?? ''}${stderr?.toString() ?? ''}`.trim();
    throw new BenchError(`the build failed (tsc -p .); fix it or run \`npm run build\` to see why:\n${output}`);
  }
  // As `npm run build` does: the stamp lets the relay load the shipped rules without the schema check.
  try {
    execFileSync(process.execPath, [join(projectRoot, 'dist', 'build', 'stamp-shipped-data.js')], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const { stderr } = error as { stderr?: Buffer };
    throw new BenchError(`the shipped-data check failed after tsc; run \`npm run build\` to see why:\n${stderr?.toString().trim() ?? ''}`);
  }
  if (!existsSync(join(projectRoot, 'dist', 'cli.js'))) {
    throw new BenchError('dist/cli.js is missing after the build; run `npm run build`');
  }
}

/** For --no-build: dist/ is used as it is, but it must be there. */
export function checkBuilt(projectRoot: string): void {
  if (!existsSync(join(projectRoot, 'dist', 'cli.js'))) {
    throw new BenchError('--no-build given but dist/cli.js is missing; run `npm run build` first');
  }
}

/** Builds dist/ (the default), or with --no-build checks that it is there. */
export function prepareRelayBuild(projectRoot: string, build: boolean, progress: (text: string) => void): void {
  if (build) {
    progress('building dist/ (npm run build)');
    buildRelay(projectRoot);
  } else {
    checkBuilt(projectRoot);
    progress('--no-build: using dist/ as it is');
  }
}

/** The store file startRelay's config points at, in the work dir. */
export function storePath(workDir: string): string {
  return join(workDir, 'bench.sqlite');
}

/**
 * Benchmark mail goes to made-up domains: with delivery on, every domain must be routed by "*"
 * (no DNS, no per-domain route) to a host on 127.0.0.1, or the relay is not started at all.
 */
function checkLoopbackOnly(delivery: BenchDeliveryConfig): void {
  const entries = Object.entries(delivery.routes);
  const [only] = entries;
  if (entries.length !== 1 || only === undefined || only[0] !== '*' || !/^127\.0\.0\.1:\d{1,5}$/.test(only[1])) {
    throw new BenchError(`refusing to start the relay: delivery.routes must be { "*": "127.0.0.1:<port>" }, got ${JSON.stringify(delivery.routes)}`);
  }
}

function writeConfig(settings: RelaySettings): string {
  const file = join(settings.workDir, 'bench-config.json');
  if (settings.delivery) checkLoopbackOnly(settings.delivery);
  const config = {
    store: { path: storePath(settings.workDir), synchronous: settings.synchronous },
    submission: { port: 0, maxRecipients: settings.maxRecipients, maxClients: settings.maxClients },
    // The submission bench measures accepting mail only; the benched mail goes to made-up domains.
    delivery: settings.delivery ?? { enabled: false },
    log: { level: 'info' },
    // Other listeners the relay has (the inbound one for delayed bounces) take any free port, so a
    // benchmark never fails on, or takes, a port that something else on the machine uses.
    ...(hasDefault(settings.projectRoot, 'inbound') ? { inbound: { port: 0 } } : {}),
    ...(hasDefault(settings.projectRoot, 'admin') ? { admin: { port: 0 } } : {}),
  };
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  return file;
}

/** Whether config/default.json has this top-level key (the config schema refuses unknown keys). */
function hasDefault(projectRoot: string, key: string): boolean {
  try {
    const defaults = JSON.parse(readFileSync(join(projectRoot, 'config', 'default.json'), 'utf8')) as Record<string, unknown>;
    return key in defaults;
  } catch {
    return false;
  }
}

/** REBOUND_* variables override the config file; dropping them keeps the run what the flags say. */
function environmentWithoutOverrides(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('REBOUND_')));
}

/** The node flags `npm start` runs the relay with (package.json), so the bench measures that relay. */
function npmStartNodeFlags(): string[] {
  const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts;
  const match = /\bnode((?: --[^ ]+)*) dist\/cli\.js start\b/.exec(scripts.start ?? '');
  if (!match) throw new Error(`package.json's start script no longer runs "node [flags] dist/cli.js start": update bench/relay-process.ts`);
  return (match[1] ?? '').trim().split(' ').filter(Boolean);
}

export async function startRelay(settings: RelaySettings): Promise<RelayProcess> {
  const configFile = writeConfig(settings);
  const logFile = join(settings.workDir, 'relay.log');
  const straceFile = join(settings.workDir, 'strace.txt');
  const relayCommand = [process.execPath, ...npmStartNodeFlags(), ...(settings.nodeArgs ?? []), join('dist', 'cli.js'), 'start', '--config', configFile];
  const command = settings.strace
    ? // --seccomp-bpf stops only on the traced calls, so strace costs little on the rest;
      // -w times the calls by wall clock, which is what a commit waits, not kernel CPU time.
      ['strace', '-f', '-c', '-w', '--seccomp-bpf', '-e', 'trace=fsync,fdatasync', '-o', straceFile, ...relayCommand]
    : relayCommand;

  // The log goes to a file, not a pipe: pino writes synchronously, and a pipe that the busy
  // load generator drains late would stall the relay and distort the measurement.
  const logFd = openSync(logFile, 'w');
  const [executable, ...args] = command as [string, ...string[]];
  const child = spawn(executable, args, {
    cwd: settings.projectRoot,
    env: environmentWithoutOverrides(),
    stdio: ['ignore', logFd, 'pipe'],
  });
  closeSync(logFd);
  const relay = new RelayProcess(child, logFile, settings.strace ? straceFile : null);
  try {
    await relay.waitUntilListening();
  } catch (error) {
    relay.kill();
    throw error;
  }
  return relay;
}

export class RelayProcess {
  port = 0;
  /** The node process itself; under strace it is strace's child, not `child`. */
  relayPid = 0;
  private stderr = '';
  private exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private readonly exited: Promise<void>;

  constructor(
    private readonly child: ChildProcess,
    private readonly logFile: string,
    private readonly straceFile: string | null,
  ) {
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      if (this.stderr.length < STDERR_LIMIT) this.stderr += text;
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
      child.once('error', (error) => {
        this.stderr += `cannot run ${String(child.spawnfile)}: ${error.message}\n`;
        this.exit = { code: null, signal: null };
        resolve();
      });
    });
  }

  /** Follows the log until "submission listening" gives the port. */
  async waitUntilListening(): Promise<void> {
    const deadline = Date.now() + LISTEN_TIMEOUT_MS;
    const follower = new LogFollower(this.logFile);
    while (Date.now() < deadline) {
      for (const entry of follower.newEntries()) {
        if (entry.msg === 'submission listening' && typeof entry.port === 'number') {
          this.port = entry.port;
          this.relayPid = this.straceFile ? findChildPid(this.child.pid ?? 0) : (this.child.pid ?? 0);
          return;
        }
      }
      if (this.exit) {
        throw new BenchError(
          `the relay exited before listening (code ${String(this.exit.code)}):\n${this.stderr}${follower.tail()}`.trim(),
        );
      }
      await sleep(POLL_MS);
    }
    throw new BenchError(`the relay did not log "submission listening" within ${LISTEN_TIMEOUT_MS / 1000} s:\n${this.stderr}${follower.tail()}`.trim());
  }

  /** VmHWM: the most resident memory the relay has had, in bytes. */
  peakRssBytes(): number | null {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readProc(`/proc/${this.relayPid}/status`) ?? '');
    return match ? Number(match[1]) * 1024 : null;
  }

  cpuTime(): CpuTime | null {
    return processCpuTime(this.relayPid);
  }

  /** SIGTERM, as an operator would; waits for the relay to flush and log its store counts. */
  async stop(): Promise<StopReport> {
    let stoppedCleanly = true;
    if (!this.exit) {
      signal(this.relayPid, 'SIGTERM');
      const timedOut = await Promise.race([this.exited.then(() => false), sleep(STOP_TIMEOUT_MS, false).then(() => true)]);
      if (timedOut) {
        stoppedCleanly = false;
        this.kill();
        await this.exited;
      }
    }
    const log = readLog(this.logFile);
    return {
      exitCode: this.exit?.code ?? null,
      exitSignal: this.exit?.signal ?? null,
      stoppedCleanly,
      store: log.store,
      syncCalls: this.straceFile ? parseStraceSummary(readProc(this.straceFile) ?? '') : null,
      log: log.summary,
      stderr: this.stderr,
    };
  }

  /** Last resort on errors and Ctrl-C: no clean shutdown, just make sure nothing is left running. */
  kill(): void {
    if (this.exit) return;
    if (this.relayPid) signal(this.relayPid, 'SIGKILL');
    if (this.child.pid) signal(this.child.pid, 'SIGKILL');
  }
}

type LogEntry = Record<string, unknown>;

function parseLogLine(line: string): LogEntry | null {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as LogEntry) : null;
  } catch {
    return null;
  }
}

/** Reads a growing log file from where it last stopped, returning only complete lines. */
class LogFollower {
  private offset = 0;
  private partial = '';
  private lastLines: string[] = [];

  constructor(private readonly file: string) {}

  newEntries(): LogEntry[] {
    const fd = openSync(this.file, 'r');
    const chunk = Buffer.alloc(64 * 1024);
    let text = '';
    try {
      let read: number;
      while ((read = readSync(fd, chunk, 0, chunk.length, this.offset)) > 0) {
        this.offset += read;
        text += chunk.toString('utf8', 0, read);
      }
    } finally {
      closeSync(fd);
    }
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    this.lastLines = [...this.lastLines, ...lines].slice(-10);
    return lines.map(parseLogLine).filter((entry): entry is LogEntry => entry !== null);
  }

  tail(): string {
    return this.lastLines.length ? `\nlast log lines:\n${this.lastLines.join('\n')}` : '';
  }
}

function readLog(file: string): { store: StoreCounts | null; summary: LogSummary } {
  let store: StoreCounts | null = null;
  let queued = 0;
  let deliveryRequeued: number | null = null;
  const problems = new Map<string, LogProblem>();
  for (const line of (readProc(file) ?? '').split('\n')) {
    const entry = parseLogLine(line);
    if (!entry) continue;
    const msg = typeof entry.msg === 'string' ? entry.msg : '(no msg)';
    if (msg === 'message queued') queued++;
    if (msg === 'rebound stopped; store closed' && typeof entry.messages === 'number' && typeof entry.commits === 'number') {
      store = { messages: entry.messages, commits: entry.commits, walSyncs: typeof entry.walSyncs === 'number' ? entry.walSyncs : null };
    }
    if (msg === 'delivery stopped' && typeof entry.requeued === 'number') deliveryRequeued = entry.requeued;
    const level = typeof entry.level === 'number' ? PINO_LEVELS[entry.level] : undefined;
    if (level === undefined) continue;
    const key = `${level} ${msg}`;
    const problem = problems.get(key);
    if (problem) problem.count++;
    else problems.set(key, { level, msg, count: 1, example: line });
  }
  return { store, summary: { queued, problems: [...problems.values()], deliveryRequeued } };
}

/** Sums the calls and seconds columns of `strace -c` for fsync and fdatasync. */
export function parseStraceSummary(text: string): SyncCalls | null {
  const calls: SyncCalls = { fsync: 0, fdatasync: 0, seconds: 0 };
  let found = false;
  // "% time  seconds  usecs/call  calls  errors  syscall"; the errors column is blank when zero.
  const row = /^\s*[\d.]+\s+([\d.]+)\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$/;
  for (const line of text.split('\n')) {
    const match = row.exec(line);
    if (!match) continue;
    calls[match[3] as 'fsync' | 'fdatasync'] += Number(match[2]);
    calls.seconds += Number(match[1]);
    found = true;
  }
  // strace omits calls that never happened, so a summary table without rows still means zero.
  return found || /\btotal\s*$/m.test(text) ? calls : null;
}

/** Under strace the relay is strace's only child. */
function findChildPid(parentPid: number): number {
  const children = readProc(`/proc/${parentPid}/task/${parentPid}/children`)?.trim().split(/\s+/).filter(Boolean) ?? [];
  const pid = Number(children[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new BenchError(`cannot find the relay process under strace (pid ${parentPid})`);
  return pid;
}

let clockTicksPerSecond: number | null = null;

/** CPU a process has used so far, from /proc; null once it has exited. */
export function processCpuTime(pid: number): CpuTime | null {
  const total = cpuSecondsOf(`/proc/${pid}/stat`);
  const main = cpuSecondsOf(`/proc/${pid}/task/${pid}/stat`);
  return total === null || main === null ? null : { totalSeconds: total, mainThreadSeconds: main };
}

function cpuSecondsOf(statFile: string): number | null {
  const stat = readProc(statFile);
  if (stat === null) return null;
  // Fields after "(comm)", which may itself hold spaces; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return Number.isFinite(ticks) ? ticks / clockTicksPerSecond : null;
}

/** The whole machine's CPU time so far, from /proc/stat (all cores added up), in seconds. */
export interface MachineCpuTime {
  /** user, nice, system, irq, softirq and steal: time some process (or the hypervisor) had the CPU. */
  busySeconds: number;
  idleSeconds: number;
  iowaitSeconds: number;
  stealSeconds: number;
  /** Interrupt and softirq time (loopback TCP is mostly softirq), which no process is charged for. */
  interruptSeconds: number;
}

export function machineCpuTime(): MachineCpuTime | null {
  const line = (readProc('/proc/stat') ?? '').split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return null;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const seconds = (ticks: number): number => ticks / (clockTicksPerSecond ?? 100);
  return {
    busySeconds: seconds(user + nice + system + irq + softirq + steal),
    idleSeconds: seconds(idle),
    iowaitSeconds: seconds(iowait),
    stealSeconds: seconds(steal),
    interruptSeconds: seconds(irq + softirq),
  };
}

/** The type of the filesystem holding `path` (fsync on tmpfs is free, which would flatter us). */
export function filesystemType(path: string): string {
  const real = realpathSync(path);
  let best = { mountPoint: '', type: 'unknown' };
  for (const line of (readProc('/proc/self/mounts') ?? '').split('\n')) {
    const [, rawMountPoint, type] = line.split(' ');
    if (rawMountPoint === undefined || type === undefined) continue;
    const mountPoint = rawMountPoint.replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
    const contains = mountPoint === '/' || real === mountPoint || real.startsWith(`${mountPoint}/`);
    if (contains && mountPoint.length >= best.mountPoint.length) best = { mountPoint, type };
  }
  return best.type;
}

function readProc(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

/** `keepAlive: false` for timeouts that lose a race: they must not hold the process open after. */
function sleep(ms: number, keepAlive = true): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (!keepAlive) timer.unref();
  });
}
