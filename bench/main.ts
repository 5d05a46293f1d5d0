/**
 * One entry point for every benchmark (`npm run bench`):
 *
 *   npm run bench                               submission: accepted msg/s (bench/submit.ts)
 *   npm run bench -- --mode e2e                 end to end: delivered msg/s to a local sink (bench/e2e.ts)
 *   npm run bench -- --mode classify            the bounce classifier (bench/classify.ts)
 *   npm run bench -- --mode all                 the three in turn, each report printed
 *   npm run bench -- --connection per-message   submit (or e2e, or all) with a new connection per message
 *   npm run bench -- --mode e2e --help          a mode's own flags
 *
 * Each mode runs in its own process (with the same tsx loader), so one mode's heap, handles and
 * CPU accounting cannot color the next, and each can still be run alone with `npx tsx bench/X.ts`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { E2E_OPTIONS } from './e2e.js';
import { SUBMIT_OPTIONS } from './submit.js';

type Mode = 'submit' | 'e2e' | 'classify';
const MODES: readonly Mode[] = ['submit', 'e2e', 'classify'];

interface FlagSpec {
  type: 'string' | 'boolean';
  default?: string | boolean;
}

/** bench/classify.ts is someone else's file and runs on import, so its flags are listed here. */
const CLASSIFY_OPTIONS: Record<string, FlagSpec> = {
  iterations: { type: 'string' },
  'time-limit': { type: 'string', default: '20' },
  json: { type: 'boolean' },
  help: { type: 'boolean' },
};

const SCRIPTS: Record<Mode, { file: string; options: Record<string, FlagSpec>; title: string }> = {
  submit: { file: 'submit.ts', options: SUBMIT_OPTIONS, title: 'submission benchmark' },
  e2e: { file: 'e2e.ts', options: E2E_OPTIONS, title: 'end-to-end benchmark' },
  classify: { file: 'classify.ts', options: CLASSIFY_OPTIONS, title: 'classifier benchmark' },
};

/** Beyond a mode's own --time-limit: build, relay start and a clean stop (the relay gets 40 s). */
const HARD_LIMIT_MARGIN_SECONDS = 180;
const KILL_GRACE_MS = 15_000;

const HELP = `Usage: npm run bench -- [--mode MODE] [options]

Modes:
  submit     (default) accepted messages/s over SMTP, each 250 on disk     bench/submit.ts
  e2e        delivered messages/s: submission, store, delivery to a local
             SMTP sink on 127.0.0.1, every outcome committed               bench/e2e.ts
  classify   bounce classifier classifications/s                           bench/classify.ts
  all        the three in turn; each gets the options it knows, --json gives one object

Connections (submit and e2e; --mode all passes it to both):
  --connection reused        (default) each client keeps one session for all its messages
  --connection per-message   a new connection, greeting, EHLO, MAIL, RCPT, DATA, QUIT for every
                             message, as apps without a pool send (nodemailer without pool,
                             PHPMailer, smtplib, cron jobs); adds connect-to-250 latency

npm run bench -- --mode MODE --help lists a mode's options.`;

function bench(file: string): string {
  return fileURLToPath(new URL(`./${file}`, import.meta.url));
}

function progress(text: string): void {
  process.stderr.write(`bench: ${text}\n`);
}

/** Takes --mode out of the arguments; the rest go to the mode. */
function splitMode(argv: string[]): { mode: string | null; rest: string[] } {
  const rest: string[] = [];
  let mode: string | null = null;
  for (let k = 0; k < argv.length; k++) {
    const arg = argv[k] ?? '';
    if (arg === '--mode') {
      mode = argv[++k] ?? '';
    } else if (arg.startsWith('--mode=')) {
      mode = arg.slice('--mode='.length);
    } else rest.push(arg);
  }
  return { mode, rest };
}

/** For --mode all: the arguments each mode knows; a flag no mode knows is an error. */
function argumentsFor(rest: string[]): Record<Mode, string[]> | string {
  const perMode: Record<Mode, string[]> = { submit: [], e2e: [], classify: [] };
  for (let k = 0; k < rest.length; k++) {
    const arg = rest[k] ?? '';
    const match = /^--([^=]+)(?:=(.*))?$/.exec(arg);
    if (!match) return `unexpected argument "${arg}"`;
    const name = match[1] ?? '';
    const knowing = MODES.filter((mode) => name in SCRIPTS[mode].options);
    if (knowing.length === 0) return `no mode knows --${name}`;
    const takesValue = knowing.some((mode) => SCRIPTS[mode].options[name]?.type === 'string');
    const tokens = takesValue && match[2] === undefined ? [arg, rest[++k] ?? ''] : [arg];
    for (const mode of knowing) perMode[mode].push(...tokens);
  }
  return perMode;
}

function timeLimitOf(mode: Mode, args: string[]): number {
  let value: string | undefined;
  for (let k = 0; k < args.length; k++) {
    if (args[k] === '--time-limit') value = args[k + 1];
    else if (args[k]?.startsWith('--time-limit=')) value = args[k]?.slice('--time-limit='.length);
  }
  const parsed = Number(value ?? SCRIPTS[mode].options['time-limit']?.default);
  return Number.isFinite(parsed) && parsed > 0 ? parsed : 300;
}

let running: ChildProcess | null = null;

/** Runs one mode in its own process; resolves with its exit code and, when captured, its stdout. */
function runMode(mode: Mode, args: string[], captureStdout: boolean): Promise<{ code: number; stdout: string }> {
  const file = bench(SCRIPTS[mode].file);
  if (!existsSync(file)) {
    console.error(`bench: bench/${SCRIPTS[mode].file} not found; the ${SCRIPTS[mode].title} cannot run`);
    return Promise.resolve({ code: 1, stdout: '' });
  }
  const child = fork(file, args, {
    // fork passes on this process's execArgv: the tsx loader that runs .ts files.
    stdio: ['inherit', captureStdout ? 'pipe' : 'inherit', 'inherit', 'ipc'],
  });
  running = child;
  let stdout = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (text: string) => (stdout += text));
  const limitSeconds = timeLimitOf(mode, args) + HARD_LIMIT_MARGIN_SECONDS;
  let kill: NodeJS.Timeout | null = null;
  const hardLimit = setTimeout(() => {
    progress(`${mode} is still running after ${limitSeconds} s; stopping it (SIGTERM)`);
    child.kill('SIGTERM');
    kill = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
  }, limitSeconds * 1000);
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      clearTimeout(hardLimit);
      if (kill) clearTimeout(kill);
      running = null;
      resolve({ code: code ?? (signal ? 1 : 0), stdout });
    });
    child.once('error', (error) => {
      clearTimeout(hardLimit);
      running = null;
      console.error(`bench: cannot run bench/${SCRIPTS[mode].file}: ${error.message}`);
      resolve({ code: 1, stdout });
    });
  });
}

function forwardSignals(): void {
  // SIGINT from a terminal reaches the whole process group (the mode and its relay) by itself;
  // a SIGINT or SIGTERM sent to this process alone is passed on so nothing is left running.
  const pass = (name: NodeJS.Signals): void => {
    const child = running;
    if (!child) process.exit(130);
    setTimeout(() => child.kill('SIGTERM'), name === 'SIGINT' ? 2000 : 0).unref();
    child.once('exit', () => process.exit(130));
  };
  process.on('SIGINT', pass);
  process.on('SIGTERM', pass);
}

async function runAll(rest: string[]): Promise<number> {
  const perMode = argumentsFor(rest);
  if (typeof perMode === 'string') {
    console.error(`bench: ${perMode}\n\n${HELP}`);
    return 1;
  }
  const json = rest.includes('--json');
  const help = rest.includes('--help');
  const results: Record<string, unknown> = {};
  const exitCodes: Record<string, number> = {};
  for (const mode of MODES) {
    if (!json) console.log(`${help ? '' : '\n'}==== ${mode}: ${SCRIPTS[mode].title} (bench/${SCRIPTS[mode].file}) ====\n`);
    else progress(`running ${mode}`);
    const { code, stdout } = await runMode(mode, perMode[mode], json);
    exitCodes[mode] = code;
    if (json) {
      try {
        results[mode] = stdout.trim() ? JSON.parse(stdout) : null;
      } catch {
        results[mode] = { unparsedOutput: stdout };
      }
    } else if (code !== 0) console.log(`\n(${mode} exited with code ${code})`);
  }
  if (json) console.log(JSON.stringify({ ...results, exitCodes }, null, 2));
  else if (!help) console.log(`\n==== all: exit codes ${MODES.map((mode) => `${mode} ${exitCodes[mode]}`).join(', ')} ====`);
  return Object.values(exitCodes).some((code) => code !== 0) ? 1 : 0;
}

async function main(): Promise<number> {
  const { mode, rest } = splitMode(process.argv.slice(2));
  forwardSignals();
  if (mode === null && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(`${HELP}\n\n---- default mode: submit ----\n`);
    return (await runMode('submit', ['--help'], false)).code;
  }
  const chosen = mode ?? 'submit';
  if (chosen === 'all') return runAll(rest);
  const single = chosen === 'submission' ? 'submit' : chosen;
  if (!MODES.includes(single as Mode)) {
    console.error(`bench: unknown --mode "${chosen}"; expected submit, e2e, classify or all\n\n${HELP}`);
    return 1;
  }
  return (await runMode(single as Mode, rest, false)).code;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error('bench: unexpected error:', error);
    process.exit(1);
  },
);
