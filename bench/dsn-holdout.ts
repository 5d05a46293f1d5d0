/**
 * The held-out score (`npm run eval:dsn -- --holdout-by family`): how the parser and classifier do
 * on an MTA/provider family whose own rules they do not have, as on bounces from a family never
 * seen. For each family F of the corpus, F's files are scored with the classifier rules tagged
 * `"mta": "F"` (config/bounce-rules.json and the provider rules of config/remote-host-rules.json)
 * and the NDR family `F` (config/ndr-patterns.json
 * `families`) removed; the files of every family, each scored so, add up to the held-out score,
 * printed beside the usual one.
 *
 * A family is the corpus group without its `lhost-`/`rhost-` prefix: lhost-exim → `exim`,
 * rhost-google → `google`; groups without a prefix (`arf`, `rfc3464`) are their own family.
 * A family from which nothing is removed scores the same held out; its files are parsed once.
 */
import { readFileSync } from 'node:fs';
import { compileBounceRules, DEFAULT_BOUNCE_RULES_PATH, DEFAULT_REMOTE_HOST_RULES_PATH, type BounceRules } from '../src/bounces/classifier.js';
import { compileReportPatterns } from '../src/bounces/report/index.js';
import { DEFAULT_REPORT_PATTERNS_PATH } from '../src/bounces/report/patterns.js';
import { emptyScore, readCorpus, scoreEntries, type CorpusEntry, type CorpusScore, type ScoreOptions } from './dsn-corpus.js';

/** The family a corpus group belongs to: the group name without `lhost-`/`rhost-`. */
export function familyOf(group: string): string {
  return group.replace(/^(?:lhost|rhost)-/, '');
}

export interface FamilyHoldout {
  family: string;
  files: number;
  /** Ids of the classifier rules tagged with this family, left out for its files. */
  heldOutRules: string[];
  /** Whether config/ndr-patterns.json has an NDR family with this id, left out for its files. */
  heldOutPatterns: boolean;
  normal: CorpusScore;
  heldOut: CorpusScore;
}

export interface HoldoutScore {
  normal: CorpusScore;
  heldOut: CorpusScore;
  families: FamilyHoldout[];
}

/** The rules and patterns files as parsed JSON (not compiled: a family is removed before compiling). */
export interface HoldoutSources {
  rules: unknown;
  patterns: unknown;
  /** config/remote-host-rules.json, parsed; absent: no provider rules. */
  remoteHostRules?: unknown;
}

export function readHoldoutSources(
  rulesPath: string | URL = DEFAULT_BOUNCE_RULES_PATH,
  patternsPath: string | URL = DEFAULT_REPORT_PATTERNS_PATH,
  remoteHostRulesPath: string | URL | null = DEFAULT_REMOTE_HOST_RULES_PATH,
): HoldoutSources {
  const sources: HoldoutSources = { rules: JSON.parse(readFileSync(rulesPath, 'utf8')), patterns: JSON.parse(readFileSync(patternsPath, 'utf8')) };
  if (remoteHostRulesPath !== null) sources.remoteHostRules = JSON.parse(readFileSync(remoteHostRulesPath, 'utf8'));
  return sources;
}

/** Both rules files without the rules tagged `family` ('' keeps every rule), compiled. */
function rulesHeldOut(sources: HoldoutSources, family: string): { rules: BounceRules; removed: string[] } {
  const generic = rulesWithout(sources.rules, family);
  const remote = sources.remoteHostRules === undefined ? null : rulesWithout(sources.remoteHostRules, family);
  const label = family === '' ? 'bounce rules' : `bounce rules without mta "${family}"`;
  // A family may own every provider rule: then there is no remote-host file left to compile.
  const remoteLeft = remote !== null && ((remote.data as { rules?: unknown[] }).rules?.length ?? 0) > 0;
  const rules = compileBounceRules(generic.data, label, remoteLeft ? { remoteHostRules: { data: remote?.data, source: label } } : {});
  return { rules, removed: [...(remote?.removed ?? []), ...generic.removed] };
}

interface Tagged {
  id?: unknown;
  mta?: unknown;
}

/**
 * The rules file without the rules tagged `mta: family`. The `mta` tag is taken off every rule
 * kept: it says where a rule was learnt, nothing the classifier matches on.
 */
export function rulesWithout(rules: unknown, family: string): { data: unknown; removed: string[] } {
  const file = rules as { rules?: unknown };
  if (!Array.isArray(file.rules)) return { data: rules, removed: [] };
  const removed: string[] = [];
  const kept: unknown[] = [];
  for (const rule of file.rules as unknown[]) {
    const tagged = (rule ?? {}) as Tagged;
    if (tagged.mta === family) {
      removed.push(String(tagged.id));
      continue;
    }
    if (typeof rule === 'object' && rule !== null && 'mta' in rule) {
      const { mta: _mta, ...untagged } = rule as Record<string, unknown>;
      kept.push(untagged);
    } else kept.push(rule);
  }
  return { data: { ...file, rules: kept }, removed };
}

/** The report patterns without the NDR family whose id is `family`. */
export function patternsWithout(patterns: unknown, family: string): { data: unknown; removed: boolean } {
  const file = patterns as { families?: unknown };
  if (!Array.isArray(file.families)) return { data: patterns, removed: false };
  const kept = (file.families as unknown[]).filter((item) => ((item ?? {}) as Tagged).id !== family);
  return { data: { ...file, families: kept }, removed: kept.length !== file.families.length };
}

/** Scores the corpus at `dir` as usual and with each family's own rules and patterns held out. */
export async function scoreHoldoutByFamily(dir: string, sources: HoldoutSources = readHoldoutSources()): Promise<HoldoutScore> {
  const { entries, files } = readCorpus(dir);
  const byFamily = new Map<string, CorpusEntry[]>();
  for (const entry of entries) {
    const family = familyOf(entry.group);
    const list = byFamily.get(family) ?? [];
    list.push(entry);
    byFamily.set(family, list);
  }
  const normalOptions: ScoreOptions = {
    rules: rulesHeldOut(sources, '').rules,
    patterns: compileReportPatterns(sources.patterns, 'report patterns'),
  };
  const families: FamilyHoldout[] = [];
  for (const [family, familyEntries] of [...byFamily].sort(([a], [b]) => a.localeCompare(b))) {
    const normal = await scoreEntries(familyEntries, files, normalOptions);
    const rules = rulesHeldOut(sources, family);
    const patterns = patternsWithout(sources.patterns, family);
    const changed = rules.removed.length > 0 || patterns.removed;
    const heldOut = changed
      ? await scoreEntries(familyEntries, files, {
          rules: rules.rules,
          patterns: compileReportPatterns(patterns.data, `report patterns without family "${family}"`),
        })
      : normal;
    families.push({ family, files: familyEntries.length, heldOutRules: rules.removed, heldOutPatterns: patterns.removed, normal, heldOut });
  }
  return {
    normal: sumScores(families.map((f) => f.normal)),
    heldOut: sumScores(families.map((f) => f.heldOut)),
    families,
  };
}

/** Adds up scores of disjoint sets of files. */
export function sumScores(scores: readonly CorpusScore[]): CorpusScore {
  const total = emptyScore();
  for (const score of scores) {
    total.files += score.files;
    total.parsed += score.parsed;
    total.expectedRecipients += score.expectedRecipients;
    total.foundRecipients += score.foundRecipients;
    total.severityAgree += score.severityAgree;
    total.categoryAgree += score.categoryAgree;
    total.hardOnNotBounce.push(...score.hardOnNotBounce);
    total.misses.push(...score.misses);
    for (const [path, report] of score.reports) total.reports.set(path, report);
  }
  return total;
}
