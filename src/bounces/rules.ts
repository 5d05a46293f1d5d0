/**
 * The bounce rules: a data file (config/bounce-rules.json) that an operator reads and extends,
 * checked and compiled once at load (KumoMTA's bounce_classifier, PowerMTA's
 * bounce-category-patterns). The mechanism here is small on purpose: ordered rules, first match
 * wins; each condition a rule states must hold. docs/bounce-classification.md explains the order.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { CATEGORIES, type Category, type Severity } from './categories.js';
import { lazyZod } from './lazy-zod.js';
import { LiteralIndex, requiredLiterals } from './regex-literals.js';
import { literalsAtBuild, validatedAtBuild } from './shipped-data.js';

export const DEFAULT_BOUNCE_RULES_PATH = new URL('../../config/bounce-rules.json', import.meta.url);
/**
 * Provider rules keyed on the remote host (Sisimai's Rhost modules): tried before the generic
 * rules, because a provider's own code means what that provider says it means.
 */
export const DEFAULT_REMOTE_HOST_RULES_PATH = new URL('../../config/remote-host-rules.json', import.meta.url);

/** A rules file that cannot be used; the message names the file, the rule index and the problem. */
export class BounceRulesError extends Error {
  override name = 'BounceRulesError';
}

/** `5.1.1`, `*.1.1` / `X.1.1` (any class, RFC 3463's notation), `5.7.*`. */
const ENHANCED_PATTERN = /^([245*xX])\.(\d{1,3}|\*)\.(\d{1,3}|\*)$/;

/** The SMTP command a reply answered (classifier.ts `SmtpStage`). */
export const SMTP_STAGES = ['connection', 'mail', 'rcpt', 'data'] as const;
export type SmtpStage = (typeof SMTP_STAGES)[number];

/**
 * The schema of a rules file. Built on first use with zod loaded then (lazy-zod.ts): the shipped
 * file was checked at build time, so only an operator's own rules pay for zod.
 */
function buildSchemas(z: typeof import('zod').z) {
  const enhancedPatternSchema = z
    .string()
    .regex(ENHANCED_PATTERN, 'must look like "5.1.1", "*.1.1", "X.1.1" or "5.7.*" (class 2, 4 or 5)');
  const replyCodeSchema = z.number().int().min(200).max(599);
  const severitySchema = z.enum(['permanent', 'temporary'], {
    error: (issue) => `unknown severity ${JSON.stringify(issue.input)}; expected "permanent" or "temporary"`,
  });
  const stageSchema = z.enum(SMTP_STAGES, {
    error: (issue) => `unknown stage ${JSON.stringify(issue.input)}; expected one of ${SMTP_STAGES.join(', ')}`,
  });
  const categorySchema = z.enum(CATEGORIES, {
    error: (issue) => `unknown category ${JSON.stringify(issue.input)}; expected one of ${CATEGORIES.join(', ')}`,
  });
  /** A host name or domain, matched as a suffix on label boundaries: `secureserver.net`, `.qq.com`. */
  const remoteHostSchema = z
    .string()
    .regex(/^\.?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*$/, 'must be a host name or domain such as "secureserver.net" (matched as a suffix)');

  const ruleSchema = z
    .strictObject({
      id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lower-case words joined by "-"'),
      why: z.string().trim().min(1, 'must say why the rule exists'),
      // Optional for an operator's own rules; every rule shipped in config/ names one (a test checks).
      source: z.string().trim().min(1, 'must name where the phrases come from (an RFC section, a provider document, an MTA source file)').optional(),
      mta: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be a lower-case MTA or provider name, e.g. "exim", "office365"').optional(),
      stage: z.union([stageSchema, z.array(stageSchema).min(1)]).optional(),
      remoteHost: z.union([remoteHostSchema, z.array(remoteHostSchema).min(1)]).optional(),
      code: z.union([replyCodeSchema, z.array(replyCodeSchema).min(1)]).optional(),
      enhancedCode: z.union([enhancedPatternSchema, z.array(enhancedPatternSchema).min(1)]).optional(),
      pattern: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
      rawPattern: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
      category: categorySchema,
      severity: severitySchema.optional(),
      retryInNewTransaction: z.literal(true).optional(),
    })
    .refine(
      (rule) =>
        rule.code !== undefined || rule.enhancedCode !== undefined || rule.pattern !== undefined || rule.rawPattern !== undefined || rule.stage !== undefined,
      {
        message: 'needs at least one of code, enhancedCode, pattern, rawPattern, stage (a rule without conditions would match everything)',
      },
    );

  const fileSchema = z.strictObject({
    about: z.union([z.string(), z.array(z.string())]).optional(),
    defaults: z.strictObject({ permanent: categorySchema, temporary: categorySchema }),
    rules: z.array(z.unknown()).min(1, 'must hold at least one rule'),
  });
  /** The remote-host rules file: no defaults of its own (the generic file's apply). */
  const remoteHostFileSchema = z.strictObject({
    about: z.union([z.string(), z.array(z.string())]).optional(),
    rules: z.array(z.unknown()).min(1, 'must hold at least one rule'),
  });
  return { ruleSchema, fileSchema, remoteHostFileSchema };
}

type Schemas = ReturnType<typeof buildSchemas>;
let schemas: Schemas | undefined;

function rulesSchemas(): Schemas {
  schemas ??= buildSchemas(lazyZod());
  return schemas;
}

type RuleSource = z.infer<Schemas['ruleSchema']>;
type FileSource = z.infer<Schemas['fileSchema']>;
type RemoteHostFileSource = z.infer<Schemas['remoteHostFileSchema']>;

/** One part of an enhanced-code pattern; null is a wildcard. */
type EnhancedPart = number | null;
type EnhancedPattern = readonly [EnhancedPart, EnhancedPart, EnhancedPart];

export interface BounceRule {
  readonly id: string;
  readonly why: string;
  /** Where the rule's phrases come from: an RFC section, a provider's document, an MTA source file. */
  readonly source: string | null;
  /** The one MTA or provider whose wording the rule exists for (corpus family name), or null when generic. */
  readonly mta: string | null;
  /** The SMTP stages the reply must have answered; a reply of unknown stage never matches. */
  readonly stages: ReadonlySet<SmtpStage> | null;
  /**
   * Domains (lower case, no leading dot) one of which the remote host must be or end in; a reply
   * of unknown remote host never matches.
   */
  readonly remoteHosts: readonly string[] | null;
  readonly category: Category;
  readonly severity: Severity | null;
  readonly retryInNewTransaction: boolean;
  readonly codes: ReadonlySet<number> | null;
  readonly enhancedCodes: readonly EnhancedPattern[] | null;
  readonly pattern: RegExp | null;
  /** Like `pattern`, on the reply as received (diagnostic type and codes left in). */
  readonly rawPattern: RegExp | null;
}

export interface BounceRules {
  /** Where the rules came from, for messages and the benchmark. */
  readonly source: string;
  /** Where the remote-host rules came from, when any were loaded. */
  readonly remoteHostSource?: string | null;
  readonly rules: readonly BounceRule[];
  readonly defaults: Readonly<Record<Severity, Category>>;
  /** Every domain a rule's `remoteHost` names; absent: not collected (every host is looked at). */
  readonly remoteHostDomains?: ReadonlySet<string>;
}

/** What a rule is matched against: the parsed reply, enhanced code split into numbers. */
export interface RuleSubject {
  readonly code: number | null;
  readonly enhanced: readonly [number, number, number] | null;
  readonly text: string;
  /** The reply as received, before codes and a DSN diagnostic type were stripped. */
  readonly raw: string;
  /** The SMTP command the reply answered, when known. */
  readonly stage: SmtpStage | null;
  /** The remote MTA's host name, lower case without a trailing dot, when known. */
  readonly remoteHost?: string | null;
}

export interface CompileOptions {
  /**
   * Leave out the rules tagged with this `mta` (one name or several): what the rules would do on
   * an MTA's bounces had they never been written from its wording (`eval:dsn --holdout-by family`).
   */
  withoutMta?: string | readonly string[];
  /**
   * The remote-host rules (config/remote-host-rules.json, parsed) and where they came from: they
   * are checked like the generic rules, each must state `remoteHost`, and they are tried first.
   * `checked`: the file passed the full check at build time.
   */
  remoteHostRules?: { data: unknown; source: string; checked?: boolean };
}

export interface LoadOptions extends Omit<CompileOptions, 'remoteHostRules'> {
  /** The remote-host rules file; default config/remote-host-rules.json; null loads none. */
  remoteHostRules?: string | URL | null;
}

/**
 * Reads and compiles the generic rules file and the remote-host rules file (by default both
 * shipped files; an operator may point to their own). A broken file of either kind is refused
 * with every problem named.
 */
export function loadBounceRules(path: string | URL = DEFAULT_BOUNCE_RULES_PATH, options: LoadOptions = {}): BounceRules {
  const { remoteHostRules: remotePath = DEFAULT_REMOTE_HOST_RULES_PATH, ...compileOptions } = options;
  const generic = readRulesJson(path, 'bounce rules');
  const remote = remotePath === null ? undefined : readRulesJson(remotePath, 'remote-host rules');
  const withRemote: CompileOptions = {
    ...compileOptions,
    ...(remote ? { remoteHostRules: { data: remote.data, source: remote.source, checked: validatedAtBuild('remote-host-rules', remote.raw) } } : {}),
  };
  // The shipped file, as it was when the build checked it: compiled without the schema check.
  if (validatedAtBuild('bounce-rules', generic.raw)) {
    return compileRules(generic.data as FileSource, generic.source, withRemote, true, (item) => item as RuleSource);
  }
  return compileBounceRules(generic.data, generic.source, withRemote);
}

function readRulesJson(path: string | URL, what: string): { data: unknown; source: string; raw: string } {
  const source = path instanceof URL ? fileURLToPath(path) : path;
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (error) {
    throw new BounceRulesError(`cannot read ${what} ${source}: ${(error as Error).message}`);
  }
  try {
    return { data: JSON.parse(raw) as unknown, source, raw };
  } catch (error) {
    throw new BounceRulesError(`${what} ${source} are not valid JSON: ${(error as Error).message}`);
  }
}

/** Checks and compiles rules already parsed from JSON (tests and tools build them in memory). */
export function compileBounceRules(data: unknown, source = '(in memory)', options: CompileOptions = {}): BounceRules {
  const { fileSchema, ruleSchema } = rulesSchemas();
  const file = fileSchema.safeParse(data);
  if (!file.success) throw new BounceRulesError(`bounce rules ${source}:\n  ${formatIssues(file.error.issues)}`);
  return compileRules(file.data, source, options, false, checkedRuleReader(ruleSchema));
}

function checkedRuleReader(ruleSchema: Schemas['ruleSchema']): RuleReader {
  return (item, label, problems) => {
    const parsed = ruleSchema.safeParse(item);
    if (parsed.success) return parsed.data;
    problems.push(...parsed.error.issues.map((issue) => `${label}: ${describeIssue(issue)}`));
    return null;
  };
}

/** A rule as the schema gives it, or null after adding its problems to `problems`. */
type RuleReader = (item: unknown, label: string, problems: string[]) => RuleSource | null;

/** `checked`: the file passed the full check at build time (see compilePattern). */
function compileRules(file: FileSource, source: string, options: CompileOptions, checked: boolean, readRule: RuleReader): BounceRules {
  const without = new Set(typeof options.withoutMta === 'string' ? [options.withoutMta] : (options.withoutMta ?? []));
  const generic = compileRuleList(file.rules, { readRule, checked, without });
  if (generic.problems.length > 0) throw new BounceRulesError(`bounce rules ${source}:\n  ${generic.problems.join('\n  ')}`);
  const remote = options.remoteHostRules === undefined ? [] : compileRemoteHostRules(options.remoteHostRules, without, generic.ids);
  const all = [...remote, ...generic.rules];
  return {
    source,
    ...(options.remoteHostRules === undefined ? {} : { remoteHostSource: options.remoteHostRules.source }),
    rules: all,
    defaults: file.defaults,
    remoteHostDomains: new Set(all.flatMap((rule) => rule.remoteHosts ?? [])),
  };
}

interface RuleListOptions {
  readRule: RuleReader;
  checked: boolean;
  /** `mta` tags whose rules are left out (compiled and checked all the same). */
  without: ReadonlySet<string>;
  /** A check of the file's own on each rule read: a problem to report, or null. */
  ruleProblem?: (rule: RuleSource) => string | null;
}

/** One file's rules, compiled in order; every problem is collected, ids must be unique in the file. */
function compileRuleList(items: readonly unknown[], options: RuleListOptions): { rules: BounceRule[]; ids: Map<string, number>; problems: string[] } {
  const problems: string[] = [];
  const rules: BounceRule[] = [];
  const ids = new Map<string, number>();
  items.forEach((item, index) => {
    const label = ruleLabel(index, item);
    const rule = options.readRule(item, label, problems);
    if (rule === null) return;
    const problem = options.ruleProblem?.(rule) ?? null;
    if (problem !== null) problems.push(`${label}: ${problem}`);
    const earlier = ids.get(rule.id);
    if (earlier !== undefined) problems.push(`${label}: id is already used by rules[${earlier}]`);
    ids.set(rule.id, index);
    const compiled = compileRule(rule, label, problems, options.checked);
    if (compiled !== null && (compiled.mta === null || !options.without.has(compiled.mta))) rules.push(compiled);
  });
  return { rules, ids, problems };
}

/**
 * The remote-host rules: the same rule format, each rule stating `remoteHost`, ids unique across
 * both files (a classification's `rule` names one rule). Tried before the generic rules.
 */
function compileRemoteHostRules(
  input: NonNullable<CompileOptions['remoteHostRules']>,
  without: ReadonlySet<string>,
  genericIds: ReadonlyMap<string, number>,
): BounceRule[] {
  const { data, source } = input;
  const checked = input.checked === true;
  let file: RemoteHostFileSource;
  let readRule: RuleReader;
  if (checked) {
    file = data as RemoteHostFileSource;
    readRule = (item) => item as RuleSource;
  } else {
    const { remoteHostFileSchema, ruleSchema } = rulesSchemas();
    const parsed = remoteHostFileSchema.safeParse(data);
    if (!parsed.success) throw new BounceRulesError(`remote-host rules ${source}:\n  ${formatIssues(parsed.error.issues)}`);
    file = parsed.data;
    readRule = checkedRuleReader(ruleSchema);
  }
  const compiled = compileRuleList(file.rules, {
    readRule,
    checked,
    without,
    ruleProblem(rule) {
      if (rule.remoteHost === undefined) return "needs remoteHost (the rules of this file apply to one provider's hosts)";
      const generic = genericIds.get(rule.id);
      return generic === undefined ? null : `id is already used by rules[${generic}] of the bounce rules`;
    },
  });
  if (compiled.problems.length > 0) throw new BounceRulesError(`remote-host rules ${source}:\n  ${compiled.problems.join('\n  ')}`);
  return compiled.rules;
}

function compileRule(source: RuleSource, label: string, problems: string[], checked: boolean): BounceRule | null {
  const pattern = source.pattern === undefined ? null : compilePattern(source.pattern, label, problems, 'pattern', checked);
  const rawPattern = source.rawPattern === undefined ? null : compilePattern(source.rawPattern, label, problems, 'rawPattern', checked);
  if (pattern === undefined || rawPattern === undefined) return null;
  return {
    id: source.id,
    // The schema trims these; the same here for the shipped file, compiled without it.
    why: source.why.trim(),
    source: source.source?.trim() ?? null,
    mta: source.mta ?? null,
    stages: source.stage === undefined ? null : new Set(asArray(source.stage)),
    remoteHosts: source.remoteHost === undefined ? null : asArray(source.remoteHost).map((host) => host.toLowerCase().replace(/^\./, '')),
    category: source.category,
    severity: source.severity ?? null,
    retryInNewTransaction: source.retryInNewTransaction === true,
    codes: source.code === undefined ? null : new Set(asArray(source.code)),
    enhancedCodes: source.enhancedCode === undefined ? null : asArray(source.enhancedCode).map(parseEnhancedPattern),
    pattern,
    rawPattern,
  };
}

/**
 * A pattern is one regular expression or a list of alternatives (one phrase per line reads better
 * in a long rule); a list compiles to one alternation. Undefined when it does not compile. Each
 * alternative is compiled alone first to name the broken one, unless the build already `checked`.
 */
function compilePattern(pattern: string | string[], label: string, problems: string[], field: string, checked: boolean): RegExp | undefined {
  const alternatives = asArray(pattern);
  let valid = true;
  if (!checked) {
    alternatives.forEach((alternative, index) => {
      const where = Array.isArray(pattern) ? `${field}[${index}]` : field;
      const problem = regexProblem(alternative);
      if (problem === null) return;
      problems.push(`${label}: ${where} is not a valid regular expression: ${problem}`);
      valid = false;
    });
  }
  if (!valid) return undefined;
  // Case-insensitive: providers capitalise freely ("User Unknown", "USER UNKNOWN").
  return new RegExp(alternatives.map((alternative) => `(?:${alternative})`).join('|'), 'i');
}

function regexProblem(source: string): string | null {
  try {
    new RegExp(source, 'i');
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

function parseEnhancedPattern(text: string): EnhancedPattern {
  const [, cls = '*', subject = '*', detail = '*'] = ENHANCED_PATTERN.exec(text) ?? [];
  return [wildcardOrNumber(cls), wildcardOrNumber(subject), wildcardOrNumber(detail)];
}

function wildcardOrNumber(part: string): EnhancedPart {
  return part === '*' || part === 'x' || part === 'X' ? null : Number(part);
}

function asArray<T>(value: T | T[]): T[] {
  return Array.isArray(value) ? value : [value];
}

/** The first rule whose every stated condition holds, or null. */
export function findRule(rules: BounceRules, subject: RuleSubject): BounceRule | null {
  const precheck = new Precheck(prechecksOf(rules.rules), subject);
  for (let index = 0; index < rules.rules.length; index += 1) {
    const rule = rules.rules[index] as BounceRule;
    if (ruleMatches(rule, subject, precheck, index)) return rule;
  }
  return null;
}

function ruleMatches(rule: BounceRule, subject: RuleSubject, precheck: Precheck, index: number): boolean {
  if (rule.stages !== null && (subject.stage === null || !rule.stages.has(subject.stage))) return false;
  if (rule.remoteHosts !== null && !remoteHostMatches(rule.remoteHosts, subject.remoteHost ?? null)) return false;
  if (rule.codes !== null && (subject.code === null || !rule.codes.has(subject.code))) return false;
  if (rule.enhancedCodes !== null) {
    const enhanced = subject.enhanced;
    if (enhanced === null || !rule.enhancedCodes.some((pattern) => enhancedMatches(pattern, enhanced))) return false;
  }
  if (rule.pattern !== null && !(precheck.textMayMatch(index) && rule.pattern.test(subject.text))) return false;
  return rule.rawPattern === null || (precheck.rawMayMatch(index) && rule.rawPattern.test(subject.raw));
}

/**
 * Per rule list, an index of the literals one of which a text must hold before each rule's pattern
 * (and rawPattern) can match (regex-literals.ts). Most rules are phrase lists: one pass over the
 * reply rules most of them out, instead of running each alternation over the text.
 */
interface RulePrechecks {
  readonly pattern: LiteralIndex;
  readonly rawPattern: LiteralIndex;
  readonly length: number;
}

/** Worked out once per rule list (whoever built it) and kept as long as the list is. */
const prechecks = new WeakMap<readonly BounceRule[], RulePrechecks>();

function prechecksOf(rules: readonly BounceRule[]): RulePrechecks {
  let built = prechecks.get(rules);
  if (built === undefined || built.length !== rules.length) {
    built = {
      pattern: new LiteralIndex(rules.map((rule) => (rule.pattern === null ? null : literalsOf(rule.pattern)))),
      rawPattern: new LiteralIndex(rules.map((rule) => (rule.rawPattern === null ? null : literalsOf(rule.rawPattern)))),
      length: rules.length,
    };
    prechecks.set(rules, built);
  }
  return built;
}

/** The regex's required literals: from the build's stamp for the shipped rules, else read now. */
function literalsOf(regex: RegExp): readonly string[] | null {
  const known = literalsAtBuild(regex);
  return known === undefined ? requiredLiterals(regex) : known;
}

/** One search's prechecks: each text is scanned once, and only when a rule gets as far as its pattern. */
class Precheck {
  private text: Int32Array | undefined;
  private raw: Int32Array | undefined;

  constructor(
    private readonly index: RulePrechecks,
    private readonly subject: RuleSubject,
  ) {}

  textMayMatch(rule: number): boolean {
    this.text ??= this.index.pattern.candidates(this.subject.text);
    return LiteralIndex.has(this.text, rule);
  }

  rawMayMatch(rule: number): boolean {
    this.raw ??= this.index.rawPattern.candidates(this.subject.raw);
    return LiteralIndex.has(this.raw, rule);
  }
}

function enhancedMatches(pattern: EnhancedPattern, code: readonly [number, number, number]): boolean {
  return (
    (pattern[0] === null || pattern[0] === code[0]) &&
    (pattern[1] === null || pattern[1] === code[1]) &&
    (pattern[2] === null || pattern[2] === code[2])
  );
}

function ruleLabel(index: number, item: unknown): string {
  const id = typeof item === 'object' && item !== null && 'id' in item ? item.id : undefined;
  return typeof id === 'string' ? `rules[${index}] (${JSON.stringify(id)})` : `rules[${index}]`;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key(s) ${issue.keys.map((key) => JSON.stringify(key)).join(', ')}`;
  const field = issue.path.map(String).join('.');
  return field === '' ? issue.message : `${field}: ${issue.message}`;
}

function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => {
      const [first, second] = issue.path;
      if (first === 'rules' && typeof second === 'number') return `rules[${second}]: ${issue.message}`;
      return describeIssue(issue);
    })
    .join('\n  ');
}

/**
 * The host when some rule names it or a domain it is under, else null: most replies come from
 * hosts no rule names, and a null host lets every provider rule fail at its first check.
 */
export function hostNamedByRules(rules: BounceRules, host: string | null): string | null {
  const domains = rules.remoteHostDomains;
  if (host === null || domains === undefined) return host;
  for (let at = 0; at !== -1; at = host.indexOf('.', at) + 1 || -1) {
    if (domains.has(at === 0 ? host : host.slice(at))) return host;
  }
  return null;
}

/** The host is one of the domains or a host under one (`p3smtp.secureserver.net` under `secureserver.net`). */
function remoteHostMatches(domains: readonly string[], host: string | null): boolean {
  if (host === null) return false;
  // A plain loop: this runs for every provider rule of every reply whose host is known.
  for (const domain of domains) {
    if (host.length === domain.length ? host === domain : host.length > domain.length && host.charCodeAt(host.length - domain.length - 1) === 46 && host.endsWith(domain)) {
      return true;
    }
  }
  return false;
}
