// `node --import ./record-imports.mjs`: writes the URL of every module the process imports, one a
// line, to the file named by REBOUND_IMPORT_LOG. The CLI tests use it to see what a command loads.
// Modules loaded with require() (createRequire: the lazy zod and libmime) do not pass the import
// hooks, so the require cache is added when the process exits.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';

const log = process.env.REBOUND_IMPORT_LOG;
register('./record-imports-hooks.mjs', import.meta.url, { data: log });
if (log) {
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => {
    const required = Object.keys(cache).map((path) => pathToFileURL(path).href);
    if (required.length > 0) appendFileSync(log, `${required.join('\n')}\n`);
  });
}
