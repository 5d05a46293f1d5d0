/**
 * Build step (`npm run build`, after tsc): checks the data files shipped in config/ against their
 * full schemas and writes their SHA-256 to dist/shipped-data.json, so that `rebound parse` and the
 * relay load them without zod (src/bounces/shipped-data.ts), with the literals of each rule's regex
 * (the classifier's precheck) already worked out. A broken shipped file fails the build
 * with the loader's own message (file, index, problem).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compileBounceRules, DEFAULT_BOUNCE_RULES_PATH, DEFAULT_REMOTE_HOST_RULES_PATH } from '../bounces/rules.js';
import { compileReportPatterns, DEFAULT_REPORT_PATTERNS_PATH } from '../bounces/report/patterns.js';
import { requiredLiterals } from '../bounces/regex-literals.js';
import { loadShapingRules } from '../delivery/shaping-rules.js';
import { digestOf, literalsKey, SHIPPED_DATA_STAMP, type ShippedStamp } from '../bounces/shipped-data.js';

/** Parses and fully checks each shipped file; returns the stamp that trusts exactly these contents. */
export function checkShippedData(): ShippedStamp {
  const rules = readFileSync(DEFAULT_BOUNCE_RULES_PATH, 'utf8');
  const remoteHostRules = readFileSync(DEFAULT_REMOTE_HOST_RULES_PATH, 'utf8');
  // Compiled together: ids must be unique across the two files.
  const compiled = compileBounceRules(parseJson(rules, DEFAULT_BOUNCE_RULES_PATH), fileURLToPath(DEFAULT_BOUNCE_RULES_PATH), {
    remoteHostRules: { data: parseJson(remoteHostRules, DEFAULT_REMOTE_HOST_RULES_PATH), source: fileURLToPath(DEFAULT_REMOTE_HOST_RULES_PATH) },
  });
  // The shaping rules are read with zod at every start (delivery needs zod anyway); checked here too,
  // so a broken shipped file fails the build rather than the first start.
  loadShapingRules(null);
  const patterns = readFileSync(DEFAULT_REPORT_PATTERNS_PATH, 'utf8');
  compileReportPatterns(parseJson(patterns, DEFAULT_REPORT_PATTERNS_PATH), fileURLToPath(DEFAULT_REPORT_PATTERNS_PATH));
  const literals: Record<string, readonly string[] | null> = {};
  for (const rule of compiled.rules) {
    for (const regex of [rule.pattern, rule.rawPattern]) if (regex !== null) literals[literalsKey(regex)] = requiredLiterals(regex);
  }
  return { 'bounce-rules': digestOf(rules), 'remote-host-rules': digestOf(remoteHostRules), 'report-patterns': digestOf(patterns), literals };
}

function parseJson(text: string, path: URL): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${fileURLToPath(path)} is not valid JSON: ${(error as Error).message}`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    writeFileSync(SHIPPED_DATA_STAMP, `${JSON.stringify(checkShippedData(), null, 2)}\n`);
  } catch (error) {
    console.error(`shipped data: ${(error as Error).message}`);
    process.exit(1);
  }
}
