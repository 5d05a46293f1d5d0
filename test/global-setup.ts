import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Tests that run `rebound` as a child process use dist/; build it from the current source first. */
export default function buildOnce(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, [fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', '.'], {
    cwd: root,
    stdio: 'inherit',
  });
}
