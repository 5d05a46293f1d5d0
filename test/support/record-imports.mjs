// `node --import ./record-imports.mjs`: writes the URL of every module the process imports, one a
// line, to the file named by REBOUND_IMPORT_LOG. The CLI tests use it to see what a command loads.
import { register } from 'node:module';

register('./record-imports-hooks.mjs', import.meta.url, { data: process.env.REBOUND_IMPORT_LOG });
