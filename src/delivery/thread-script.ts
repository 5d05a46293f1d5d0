import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OperatorError } from '../errors.js';

/**
 * A delivery worker thread's built script: beside this file in dist/delivery/, or dist's copy when
 * the relay runs from source (tests, tsx), since a worker thread cannot load TypeScript.
 * `setting` names the config key that runs without it.
 */
export function threadScript(fileName: string, setting: string): string {
  for (const candidate of [`./${fileName}`, `../../dist/delivery/${fileName}`]) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new OperatorError(`dist/delivery/${fileName} is missing: run \`npm run build\`, or set ${setting} to false`);
}
