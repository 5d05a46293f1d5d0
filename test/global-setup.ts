import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Tests that run `rebound` as a child process use dist/; build it from the current source first,
 * as `npm run build` does: tsc, then the check of the shipped rules and patterns that lets the
 * built code load them without zod (src/build/stamp-shipped-data.ts).
 */
export default function buildOnce(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, [fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', '.'], {
    cwd: root,
    stdio: 'inherit',
  });
  execFileSync(process.execPath, ['dist/build/stamp-shipped-data.js'], { cwd: root, stdio: 'inherit' });
}
