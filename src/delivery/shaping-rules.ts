import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError } from '../config/load.js';

/** The traffic shaping rules shipped with Rebound (delivery.shapingFile's default). */
export const DEFAULT_SHAPING_PATH = new URL('../../config/shaping.json', import.meta.url);

const positiveInt = z.number().int().positive();

const reaction = z.strictObject({
  /** What the reply is, in words, for logs and the queue view. */
  name: z.string().min(1),
  /** Basic reply codes that may match (421, 451, ...); omitted: any. */
  codes: z.array(z.number().int().min(400).max(499)).min(1).optional(),
  /** Enhanced status code (RFC 3463) the reply must carry, e.g. "4.7.28"; omitted: any. */
  enhancedCode: z.string().regex(/^4\.\d{1,3}\.\d{1,3}$/, 'write a temporary enhanced status code such as 4.7.28').optional(),
  /** A regular expression (case-insensitive) the reply's text must match; omitted: any text. */
  text: z.string().min(1).optional(),
  /** How long the destination gets no connection at all. */
  pauseSeconds: z.number().positive(),
  /** The rate limits are multiplied by this after the pause (0.5 halves them). */
  rateFactor: z.number().gt(0).max(1),
});

const rule = z
  .strictObject({
    /** Names the destination: every MX host (or domain) the rule matches shares its limits and pauses. */
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'write a short lower-case name such as gmail'),
    /** Where the numbers and reply phrases come from (a provider's page, or "conservative default"). */
    source: z.string().min(1),
    /** MX host names that end with one of these (".google.com", or an exact host name). */
    mxSuffixes: z.array(z.string().min(1)).default([]),
    /** Recipient domains (exactly, or a subdomain of) the rule applies to, whatever their MX. */
    domains: z.array(z.string().min(1)).default([]),
    /** Transactions under way to the destination at once (so also connections in use). */
    maxConnections: positiveInt,
    /** Transactions on one connection before it is closed. */
    messagesPerConnection: positiveInt,
    /** Transactions started per sliding minute and hour; null: no limit. */
    messagesPerMinute: positiveInt.nullable(),
    messagesPerHour: positiveInt.nullable(),
    /** After this long without a throttling reply, a slowed-down rate doubles (up to the rule's). */
    recoverAfterSeconds: z.number().positive(),
    reactions: z.array(reaction),
  })
  .refine((r) => r.mxSuffixes.length + r.domains.length > 0, { message: 'give mxSuffixes or domains (or both): a rule that matches nothing does nothing' });

const shapingFile = z.strictObject({
  $comment: z.string().optional(),
  rules: z.array(rule),
});

export type ShapingReaction = z.infer<typeof reaction>;
export type ShapingRuleData = z.infer<typeof rule>;

/** A rule ready for matching: suffixes and domains lower-cased, reply texts compiled. */
export interface ShapingRule extends Omit<ShapingRuleData, 'reactions'> {
  reactions: Array<ShapingReaction & { pattern: RegExp | null }>;
}

/** Checks parsed JSON against the schema; the error names the file, the rule and the field. */
export function compileShapingRules(data: unknown, source: string): ShapingRule[] {
  const result = shapingFile.safeParse(data);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => `${issue.path.map(String).join('.') || '(top level)'}: ${issue.message}`);
    throw new ConfigError(`invalid shaping rules in ${source}:\n  ${lines.join('\n  ')}`);
  }
  const names = new Set<string>();
  return result.data.rules.map((r, index) => {
    if (names.has(r.name)) throw new ConfigError(`invalid shaping rules in ${source}: rules.${index}.name: "${r.name}" is used twice; each rule names its own destination`);
    names.add(r.name);
    return {
      ...r,
      mxSuffixes: r.mxSuffixes.map((s) => s.toLowerCase().replace(/\.$/, '')),
      domains: r.domains.map((d) => d.toLowerCase().replace(/\.$/, '')),
      reactions: r.reactions.map((reactionData, k) => ({ ...reactionData, pattern: compileText(reactionData.text, `${source}: rules.${index}.reactions.${k}.text`) })),
    };
  });
}

function compileText(text: string | undefined, where: string): RegExp | null {
  if (text === undefined) return null;
  try {
    return new RegExp(text, 'i');
  } catch (error) {
    throw new ConfigError(`invalid shaping rules in ${where}: not a regular expression (${(error as Error).message})`);
  }
}

/** Reads and checks a shaping file (delivery.shapingFile; null: the shipped one). */
export function loadShapingRules(path: string | null): ShapingRule[] {
  const file = path ?? fileURLToPath(DEFAULT_SHAPING_PATH);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read the shaping rules ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}); check delivery.shapingFile`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`the shaping rules ${file} are not valid JSON: ${(error as Error).message}`);
  }
  return compileShapingRules(data, file);
}

/** A host name (or domain) ends with the suffix at a label boundary, or is it. */
export function endsWithLabels(name: string, suffix: string): boolean {
  if (suffix.startsWith('.')) return name.endsWith(suffix) || name === suffix.slice(1);
  return name === suffix || name.endsWith(`.${suffix}`);
}
