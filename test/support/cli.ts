import { execFile } from 'node:child_process';
import { CLI, PROJECT_ROOT } from './child-relay.js';

/** What one run of the `rebound` command printed, and its exit code. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node dist/cli.js ARGS` as an operator at the shell would, never reading REBOUND_CONFIG
 * from the test's own environment; `input` goes to its stdin. Resolves whatever the exit code.
 */
export function runRebound(args: string[], input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { cwd: PROJECT_ROOT, env: { ...process.env, REBOUND_CONFIG: '' }, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin?.end(input ?? '');
  });
}
