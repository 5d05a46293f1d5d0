/**
 * The shipped config/bounce-rules.json and config/ndr-patterns.json pass their full schemas: the
 * build step that lets `rebound parse` load them without zod (src/build/stamp-shipped-data.ts)
 * runs this same check and fails the build on a broken file.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkShippedData } from '../src/build/stamp-shipped-data.js';
import { requiredLiterals } from '../src/bounces/regex-literals.js';
import { BounceRulesError, compileBounceRules, DEFAULT_BOUNCE_RULES_PATH, DEFAULT_REMOTE_HOST_RULES_PATH, loadBounceRules } from '../src/bounces/rules.js';
import { DEFAULT_REPORT_PATTERNS_PATH } from '../src/bounces/report/patterns.js';
import { digestOf, literalsKey } from '../src/bounces/shipped-data.js';

describe('shipped rules and patterns', () => {
  it('pass the full check, and the stamp holds the digest of each file as it is', () => {
    const stamp = checkShippedData();
    expect(stamp['bounce-rules']).toBe(digestOf(readFileSync(DEFAULT_BOUNCE_RULES_PATH, 'utf8')));
    expect(stamp['report-patterns']).toBe(digestOf(readFileSync(DEFAULT_REPORT_PATTERNS_PATH, 'utf8')));
    expect(stamp['remote-host-rules']).toBe(digestOf(readFileSync(DEFAULT_REMOTE_HOST_RULES_PATH, 'utf8')));
  });

  it('the stamp holds the literals of every shipped rule\'s regex, as the precheck would read them', () => {
    const { literals = {} } = checkShippedData();
    const regexes = loadBounceRules().rules.flatMap((rule) => [rule.pattern, rule.rawPattern]).filter((regex) => regex !== null);
    expect(regexes.length).toBeGreaterThan(100);
    for (const regex of regexes) expect(literals[literalsKey(regex)], regex.source).toEqual(requiredLiterals(regex));
    // Most phrase families have literals: the stamp is not a table of nulls.
    expect(Object.values(literals).filter((found) => found !== null).length).toBeGreaterThan(regexes.length / 2);
  });

  it('a shipped rule broken the way an edit could break it is reported with its index', () => {
    const shipped = JSON.parse(readFileSync(DEFAULT_BOUNCE_RULES_PATH, 'utf8')) as { rules: Array<Record<string, unknown>> };
    shipped.rules[3] = { ...shipped.rules[3], category: 'no-such-category' };
    expect(() => compileBounceRules(shipped, 'edited.json')).toThrow(BounceRulesError);
    expect(() => compileBounceRules(shipped, 'edited.json')).toThrow(/edited\.json:\n {2}rules\[3\] \(".+"\): category: unknown category "no-such-category"/);
  });

  it('the digest changes with any edit, so an edited file is checked in full', () => {
    const text = readFileSync(DEFAULT_BOUNCE_RULES_PATH, 'utf8');
    expect(digestOf(`${text} `)).not.toBe(digestOf(text));
  });
});
