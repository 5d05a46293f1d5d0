/**
 * Helpers the benchmark modes share: flag checks, progress lines, percentiles, report formatting,
 * and "am I the script being run".
 */
import { execFileSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { arch, cpus, platform } from 'node:os';
import { pathToFileURL } from 'node:url';
import { BenchError } from './relay-process.js';
import type { FailureSummary } from './smtp-load.js';

export function wholeNumber(text: string, flag: string, minimum: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < minimum) {
    throw new BenchError(`${flag} must be a whole number of at least ${minimum}, got "${text}"`);
  }
  return value;
}

export function commandExists(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Progress goes to stderr so that --json leaves stdout holding nothing but the result. */
export function progress(text: string): void {
  process.stderr.write(`bench: ${text}\n`);
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles. */
export function latencySummary(latenciesMs: Float64Array): LatencySummary | null {
  if (latenciesMs.length === 0) return null;
  const sorted = Float64Array.from(latenciesMs).sort();
  const at = (fraction: number): number => sorted[Math.max(0, Math.ceil(fraction * sorted.length) - 1)] ?? Number.NaN;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] ?? Number.NaN };
}

export function format(value: number | null, digits: number, unit = ''): string {
  return value === null || !Number.isFinite(value) ? 'n/a' : `${value.toFixed(digits)}${unit}`;
}

export function row(label: string, value: string, width = 34): string {
  return `  ${label.padEnd(width)}${value}`;
}

export function failureLines(title: string, failures: FailureSummary): string[] {
  if (failures.total === 0) return [];
  const byStage = Object.entries(failures.byStage)
    .filter(([, count]) => count > 0)
    .map(([stage, count]) => `${stage} ${count}`)
    .join(', ');
  return ['', `${title}: ${failures.total} (${byStage})`, ...failures.examples.map((text) => `  ${text.replace(/\n/g, ' | ')}`)];
}

export interface MachineInfo {
  node: string;
  platform: string;
  cpuCount: number;
  cpuModel: string;
}

export function machineInfo(): MachineInfo {
  return {
    node: process.version,
    platform: `${platform()} ${arch()}`,
    cpuCount: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
  };
}

/** The commit measured, "+ uncommitted src/ changes" when src/ differs from it; null outside git. */
export function sourceRevision(projectRoot: string): string | null {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: projectRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const changed = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: projectRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return changed ? `${commit} + uncommitted src/ changes` : commit;
  } catch {
    return null;
  }
}

/** True when the module with this import.meta.url is the script node was asked to run. */
export function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === moduleUrl;
  } catch {
    return false;
  }
}

/** Runs a benchmark's main and turns its result or error into the exit code. */
export function runMain(main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      if (error instanceof BenchError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        console.error(`bench: ${(error as Error).message}`);
      } else {
        console.error('bench: unexpected error:', error);
      }
      process.exitCode = 1;
    },
  );
}
