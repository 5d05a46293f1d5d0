/**
 * The report patterns: a data file (config/ndr-patterns.json) with one signature per MTA family
 * for plain-text NDRs (Sisimai's lhost modules, as data), the markers of a returned original, and
 * the signs of auto-replies and non-ARF complaints. Checked with zod (at build time for the shipped
 * file, shipped-data.ts) and compiled once at load;
 * docs/report-parser.md explains how to add a family.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import type { SmtpStage } from '../classifier.js';
import { lazyZod } from '../lazy-zod.js';
import { validatedAtBuild } from '../shipped-data.js';

export const DEFAULT_REPORT_PATTERNS_PATH = new URL('../../../config/ndr-patterns.json', import.meta.url);

/** A patterns file that cannot be used; the message names the file, the place and the problem. */
export class ReportPatternsError extends Error {
  override name = 'ReportPatternsError';
}

/**
 * `{addr}` in a pattern stands for a mailbox address, so the data stays readable. The domain needs
 * a dot; letters beyond ASCII are allowed for internationalised addresses (RFC 6531).
 */
const ADDRESS = String.raw`[^\s<>"'(),;:@\[\]]+@(?:[A-Za-z0-9\u00a0-\uffff_-]+\.)+[A-Za-z0-9\u00a0-\uffff-]+`;

/**
 * The schema of a patterns file. Built on first use with zod loaded then (lazy-zod.ts): the shipped
 * file was checked at build time, so only an operator's own patterns pay for zod.
 */
function buildSchemas(z: typeof import('zod').z) {
  const regexList = z.array(z.string().min(1)).min(1);
  const optionalRegexList = z.array(z.string().min(1)).optional();
  const id = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lower-case words joined by "-"');

  const familySchema = z.strictObject({
    id,
    why: z.string().trim().min(1, 'must say which MTA writes this and where the wording comes from'),
    /** The signature: the family applies when at least `min` of the stated kinds of marker match. */
    match: z
      .strictObject({
        from: optionalRegexList,
        subject: optionalRegexList,
        body: optionalRegexList,
        header: z.array(z.string().regex(/^[a-z0-9-]+$/, 'a lower-case header name')).optional(),
        messageId: optionalRegexList,
        min: z.number().int().min(1).optional(),
      })
      .refine((m) => m.from ?? m.subject ?? m.body ?? m.header ?? m.messageId, {
        message: 'needs at least one of from, subject, body, header, messageId',
      }),
    /**
     * The error section begins at the first line that matches the first of these that matches any
     * line (so the list is in order of preference); default: the top of the text.
     */
    start: optionalRegexList,
    /** More lines where the returned original begins, besides the common `original` markers. */
    end: optionalRegexList,
    /** Lines that name a failed recipient: group `rcpt`, optional group `reason`. */
    recipient: optionalRegexList,
    /** Also try the common recipient lines (default true). */
    commonRecipients: z.boolean().optional(),
    /** `above`: the family writes the reason before the recipient lines (default: after). */
    reason: z.enum(['above', 'below']).optional(),
    /** Wording that says the MTA is still trying: the recipients are `delayed`, not `failed`. */
    temporary: optionalRegexList,
    /**
     * The RFC 3463 status this family's report always means when it quotes none (Google Groups: a
     * post refused, X.7.1). Given to the classifier only; the recipient's `status` stays null.
     */
    impliedStatus: z.string().regex(/^[45]\.\d{1,3}\.\d{1,3}$/, 'must be an enhanced status code like "5.7.1"').optional(),
  });

  const fileSchema = z.strictObject({
    about: z.union([z.string(), z.array(z.string())]).optional(),
    /** From and Subject of a bounce in no known family (the generic reader's signature). */
    bounce: z.strictObject({ from: regexList, subject: regexList, body: regexList }),
    /** Lines where the returned original message begins, in any family. */
    original: regexList,
    /** Common recipient lines (group `rcpt`, optional `reason`). */
    recipient: regexList,
    /** Addresses named inside a sentence; never the report's own To (our return path). */
    recipientInProse: regexList,
    /** Boilerplate lines that end a recipient's reason. */
    reasonStop: regexList,
    /**
     * Words an NDR puts before the remote server's own reply ("Remote host said:"): the reply after
     * them is the diagnostic, without the NDR's prose around it.
     */
    replyIntroducer: regexList,
    /** Wording that says a delay notice, in any family. */
    temporary: regexList,
    /** Wording that says the MTA gave up on a failure that was itself temporary (an expiry). */
    transient: regexList,
    /** Where a remote host is named in a reason: group `host`. */
    remoteMta: regexList,
    /**
     * Which SMTP command a quoted reply answered, as each MTA words it. A phrase family either
     * states its `stage` or captures the command in a `(?<command>...)` group (see stage.ts).
     */
    stage: z
      .array(
        z.strictObject({
          source: z.string().trim().min(1, 'must name the MTA source or document the wording comes from'),
          stage: z.enum(['connection', 'mail', 'rcpt', 'data']).optional(),
          /** Words (case-insensitive, plain text) one of which every text the patterns match holds: a cheap test first. */
          markers: z.array(z.string().min(1)).min(1),
          patterns: regexList,
        }),
      )
      .min(1),
    /**
     * Delay notices (warnings, not failures) in plain text: a subject or a line of the report text
     * before the returned message says the MTA is still trying. One entry per MTA family.
     */
    warning: z
      .array(
        z.strictObject({
          source: z.string().trim().min(1, 'must name the MTA source or document the wording comes from'),
          subject: optionalRegexList,
          body: optionalRegexList,
        }),
      )
      .min(1),
    families: z.array(z.unknown()).min(1),
    autoReply: z.strictObject({
      /** Header name → pattern its value must match ("" matches any value). */
      headers: z.record(z.string().regex(/^[a-z0-9-]+$/), z.string()),
      subject: regexList,
      /** A message from these senders is never an auto-reply (Exim bounces say Auto-Submitted too). */
      notFrom: regexList,
    }),
    complaint: z.strictObject({
      /** Header name → pattern: an unsubscribe request (opt-out) from the From address. */
      unsubscribe: z.record(z.string().regex(/^[a-z0-9-]+$/), z.string()),
      subject: regexList,
      /** Headers of the returned message (or the report) that name the complaining recipient. */
      recipientHeaders: z.array(z.string().regex(/^[a-z0-9-]+$/)).min(1),
    }),
  });
  return { familySchema, fileSchema };
}

type Schemas = ReturnType<typeof buildSchemas>;
let schemas: Schemas | undefined;

function patternSchemas(): Schemas {
  schemas ??= buildSchemas(lazyZod());
  return schemas;
}

type FileSource = z.infer<Schemas['fileSchema']>;
type FamilySource = z.infer<Schemas['familySchema']>;

export interface FamilyPatterns {
  readonly id: string;
  readonly from: RegExp | null;
  readonly subject: RegExp | null;
  readonly body: RegExp | null;
  readonly headers: readonly string[];
  readonly messageId: RegExp | null;
  readonly min: number;
  readonly start: readonly RegExp[];
  readonly end: RegExp | null;
  readonly recipient: readonly RegExp[];
  readonly commonRecipients: boolean;
  readonly reasonAbove: boolean;
  readonly temporary: RegExp | null;
  readonly impliedStatus: string | null;
}

/** One family of stage phrases: a fixed stage, or the command its `command` group names. */
export interface StagePatterns {
  readonly source: string;
  readonly stage: SmtpStage | null;
  /** Lower-case words one of which a text must hold before the patterns are tried. */
  readonly markers: readonly string[];
  readonly patterns: readonly RegExp[];
}

export interface ReportPatterns {
  readonly source: string;
  readonly bounce: { readonly from: RegExp; readonly subject: RegExp; readonly body: RegExp };
  readonly original: RegExp;
  readonly recipient: readonly RegExp[];
  readonly recipientInProse: readonly RegExp[];
  readonly reasonStop: RegExp;
  readonly replyIntroducer: RegExp;
  readonly temporary: RegExp;
  readonly transient: RegExp;
  readonly remoteMta: readonly RegExp[];
  readonly stage: readonly StagePatterns[];
  /** Every stage pattern as one alternation (a line-by-line test). */
  readonly anyStage: RegExp;
  /** Every family's markers as one case-insensitive alternation of literals. */
  readonly stageMarker: RegExp;
  readonly warning: { readonly subject: RegExp; readonly body: RegExp };
  readonly families: readonly FamilyPatterns[];
  readonly autoReply: {
    readonly headers: ReadonlyArray<readonly [string, RegExp]>;
    readonly subject: RegExp;
    readonly notFrom: RegExp;
  };
  readonly complaint: {
    readonly unsubscribe: ReadonlyArray<readonly [string, RegExp]>;
    readonly subject: RegExp;
    readonly recipientHeaders: readonly string[];
  };
}

export function loadReportPatterns(path: string | URL = DEFAULT_REPORT_PATTERNS_PATH): ReportPatterns {
  const source = path instanceof URL ? fileURLToPath(path) : path;
  let raw: string;
  let data: unknown;
  try {
    raw = readFileSync(path, 'utf8');
    data = JSON.parse(raw);
  } catch (error) {
    throw new ReportPatternsError(`cannot read report patterns ${source}: ${(error as Error).message}`);
  }
  // The shipped file, as it was when the build checked it: compiled without the schema check.
  if (validatedAtBuild('report-patterns', raw)) return compilePatterns(data as FileSource, source, true, (item) => item as FamilySource);
  return compileReportPatterns(data, source);
}

let defaultPatterns: ReportPatterns | undefined;

/** config/ndr-patterns.json, read and compiled on first use, then kept. */
export function defaultReportPatterns(): ReportPatterns {
  defaultPatterns ??= loadReportPatterns();
  return defaultPatterns;
}

/** Checks and compiles patterns already parsed from JSON. */
export function compileReportPatterns(data: unknown, source = '(in memory)'): ReportPatterns {
  const { fileSchema, familySchema } = patternSchemas();
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) throw new ReportPatternsError(`report patterns ${source}:\n  ${formatIssues(parsed.error.issues)}`);
  return compilePatterns(parsed.data, source, false, (item, label, problems) => {
    const family = familySchema.safeParse(item);
    if (family.success) return family.data;
    problems.push(...family.error.issues.map((issue) => `${label}: ${describeIssue(issue)}`));
    return null;
  });
}

/** A family as the schema gives it, or null after adding its problems to `problems`. */
type FamilyReader = (item: unknown, label: string, problems: string[]) => FamilySource | null;

/**
 * `checked`: the file passed the full check at build time, so each alternative of a list is not
 * compiled alone first to say which one is broken (none is).
 */
function compilePatterns(file: FileSource, source: string, checked: boolean, readFamily: FamilyReader): ReportPatterns {
  const problems: string[] = [];
  const compiler = new Compiler(problems, checked);
  const families: FamilyPatterns[] = [];
  const seen = new Set<string>();
  file.families.forEach((item, index) => {
    const label = `families[${index}]`;
    const f = readFamily(item, label, problems);
    if (f === null) return;
    if (seen.has(f.id)) problems.push(`${label}: id "${f.id}" is already used`);
    seen.add(f.id);
    const where = `${label} (${f.id})`;
    families.push({
      id: f.id,
      from: compiler.alternation(f.match.from, `${where}.match.from`),
      subject: compiler.alternation(f.match.subject, `${where}.match.subject`),
      body: compiler.alternation(f.match.body, `${where}.match.body`),
      headers: f.match.header ?? [],
      messageId: compiler.alternation(f.match.messageId, `${where}.match.messageId`),
      min: f.match.min ?? 1,
      start: (f.start ?? []).map((item, index) => compiler.one(item, `${where}.start[${index}]`)),
      end: compiler.alternation(f.end, `${where}.end`),
      recipient: compiler.each(f.recipient, `${where}.recipient`),
      commonRecipients: f.commonRecipients ?? true,
      reasonAbove: f.reason === 'above',
      temporary: compiler.alternation(f.temporary, `${where}.temporary`),
      impliedStatus: f.impliedStatus ?? null,
    });
  });
  const patterns: ReportPatterns = {
    source,
    bounce: {
      from: compiler.required(file.bounce.from, 'bounce.from'),
      subject: compiler.required(file.bounce.subject, 'bounce.subject'),
      body: compiler.required(file.bounce.body, 'bounce.body'),
    },
    original: compiler.required(file.original, 'original'),
    recipient: compiler.each(file.recipient, 'recipient'),
    recipientInProse: compiler.each(file.recipientInProse, 'recipientInProse'),
    reasonStop: compiler.required(file.reasonStop, 'reasonStop'),
    replyIntroducer: compiler.required(file.replyIntroducer, 'replyIntroducer'),
    temporary: compiler.required(file.temporary, 'temporary'),
    transient: compiler.required(file.transient, 'transient'),
    remoteMta: compiler.each(file.remoteMta, 'remoteMta', 'host'),
    stage: file.stage.map((entry, index) => ({
      source: entry.source.trim(), // as the schema trims it
      stage: entry.stage ?? null,
      markers: entry.markers.map((marker) => marker.toLowerCase()),
      patterns: entry.stage === undefined ? compiler.each(entry.patterns, `stage[${index}].patterns`, 'command') : entry.patterns.map((item, i) => compiler.one(item, `stage[${index}].patterns[${i}]`)),
    })),
    anyStage: compiler.required(
      file.stage.flatMap((entry) => entry.patterns.map((item) => item.replace(/\(\?<[A-Za-z]+>/g, '('))),
      'stage',
    ),
    stageMarker: new RegExp(
      file.stage.flatMap((entry) => entry.markers.map((marker) => marker.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('|'),
      'i',
    ),
    warning: {
      subject: compiler.required(file.warning.flatMap((entry) => entry.subject ?? []), 'warning.subject'),
      body: compiler.required(file.warning.flatMap((entry) => entry.body ?? []), 'warning.body'),
    },
    families,
    autoReply: {
      headers: compiler.headerPatterns(file.autoReply.headers, 'autoReply.headers'),
      subject: compiler.required(file.autoReply.subject, 'autoReply.subject'),
      notFrom: compiler.required(file.autoReply.notFrom, 'autoReply.notFrom'),
    },
    complaint: {
      unsubscribe: compiler.headerPatterns(file.complaint.unsubscribe, 'complaint.unsubscribe'),
      subject: compiler.required(file.complaint.subject, 'complaint.subject'),
      recipientHeaders: file.complaint.recipientHeaders,
    },
  };
  if (problems.length > 0) throw new ReportPatternsError(`report patterns ${source}:\n  ${problems.join('\n  ')}`);
  return patterns;
}

/** Compiles the regexes of the file, collecting every problem instead of stopping at the first. */
class Compiler {
  constructor(
    private readonly problems: string[],
    /** The file passed the full check at build time: alternatives need no test one by one. */
    private readonly checked: boolean,
  ) {}

  one(source: string, where: string, flags = ''): RegExp {
    try {
      return new RegExp(source.replaceAll('{addr}', ADDRESS), `i${flags}`);
    } catch (error) {
      this.problems.push(`${where}: not a valid regular expression: ${(error as Error).message}`);
      return /(?!)/;
    }
  }

  /** Header name → pattern its value must match ("" matches any value). */
  headerPatterns(record: Readonly<Record<string, string>>, where: string): Array<readonly [string, RegExp]> {
    return Object.entries(record).map(([name, pattern]) => [name, this.one(pattern, `${where}.${name}`)] as const);
  }

  /** A list of alternatives as one regex (one phrase per line reads better in the data). */
  alternation(list: readonly string[] | undefined, where: string, flags = ''): RegExp | null {
    if (list === undefined || list.length === 0) return null;
    if (!this.checked) list.forEach((item, index) => this.one(item, `${where}[${index}]`, flags));
    return this.one(list.map((item) => `(?:${item})`).join('|'), where, flags);
  }

  required(list: readonly string[], where: string, flags = ''): RegExp {
    return this.alternation(list, where, flags) ?? /(?!)/;
  }

  /** Patterns tried one by one, each with a named group the reader takes its value from. */
  each(list: readonly string[] | undefined, where: string, group = 'rcpt'): RegExp[] {
    return (list ?? []).map((item, index) => {
      if (!item.includes(`(?<${group}>`)) this.problems.push(`${where}[${index}]: needs a (?<${group}>...) group`);
      return this.one(item, `${where}[${index}]`);
    });
  }
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key(s) ${issue.keys.map((key) => JSON.stringify(key)).join(', ')}`;
  const field = issue.path.map(String).join('.');
  return field === '' ? issue.message : `${field}: ${issue.message}`;
}

function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map(describeIssue).join('\n  ');
}
