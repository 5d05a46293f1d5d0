/**
 * The bounce classifier: what a remote MTA said, in; `{ severity, type, category, ... }` out.
 * One classifier serves immediate replies (nodemailer's `responseCode` + `response`) and delayed
 * bounces (a DSN's `Status:` + `Diagnostic-Code:`). Pure: the only I/O is reading the rules file,
 * once, on first use (or when the caller loads rules itself at start-up).
 * docs/bounce-classification.md gives the rule order and the disputed cases.
 */
import { typeOfCategory, type BounceType, type Category, type Severity } from './categories.js';
import { normalizeEnhancedCode, normalizeReplyCode, parseReply, type ParsedReply } from './reply-text.js';
import { findRule, hostNamedByRules, loadBounceRules, type BounceRule, type BounceRules, type RuleSubject, type SmtpStage } from './rules.js';

export { BounceRulesError, compileBounceRules, DEFAULT_BOUNCE_RULES_PATH, DEFAULT_REMOTE_HOST_RULES_PATH, loadBounceRules, SMTP_STAGES } from './rules.js';
export type { BounceRule, BounceRules, CompileOptions, LoadOptions } from './rules.js';

/**
 * The SMTP command a reply answered, when known: `connection` (greeting, EHLO, TLS), `mail`
 * (MAIL FROM), `rcpt` (RCPT TO) or `data` (the DATA command or the end of the message). A refusal
 * at `data` came after the address was accepted at RCPT, so it is about the message, not the address.
 */
export type { SmtpStage };

export interface ReplyInput {
  code?: number | null;
  enhancedCode?: string | null;
  text: string;
  /** Which command the reply answered, when the caller knows it (delivery, or an NDR that says so). */
  stage?: SmtpStage | null;
  /**
   * The host that said it: the MX delivery connected to, a DSN's Remote-MTA, the host an NDR
   * names. Provider rules (config/remote-host-rules.json) match only when it is known.
   */
  remoteHost?: string | null;
}

export interface Classification {
  severity: Severity;
  type: BounceType;
  category: Category;
  code: number | null;
  enhancedCode: string | null;
  /** The human text: codes and a DSN diagnostic type stripped, lines joined with a space. */
  text: string;
  /**
   * The server refused this recipient only because the transaction already had as many as it
   * takes (RFC 5321 §4.5.3.1.10, RFC 3463 X.5.3): send it again in a new transaction. Always
   * comes with severity `temporary`, whatever the reply code said.
   */
  retryInNewTransaction?: boolean;
  /** The id of the rule that decided the category, or `default` when none matched. */
  rule?: string;
}

let defaultRules: BounceRules | undefined;

/** The rules from config/remote-host-rules.json and config/bounce-rules.json, read and compiled on first use, then kept. */
export function defaultBounceRules(): BounceRules {
  defaultRules ??= loadBounceRules();
  return defaultRules;
}

/**
 * `parsed`: the caller's own `parseReply(input.text)`, when it has one already (a report reader
 * parses the diagnostic for its codes first); saves reading the same text twice.
 */
export function classifyReply(input: ReplyInput | string, rules: BounceRules = defaultBounceRules(), parsed?: ParsedReply): Classification {
  const reply = normalizeInput(input, parsed);
  const enhanced = splitEnhancedCode(reply.enhancedCode);
  const raw = typeof input === 'string' ? input : input.text;
  // The caller's stage (delivery knows the command; a report reader may) wins over one the text names.
  const stage = (typeof input === 'string' ? null : (input.stage ?? null)) ?? reply.stage;
  const remoteHost = typeof input === 'string' ? null : hostNamedByRules(rules, remoteHostName(input.remoteHost));
  const subject: RuleSubject = { code: reply.code, enhanced, text: reply.text, raw, stage, remoteHost };
  const rule = findRule(rules, subject);
  const severity = decideSeverity(reply.code, enhanced, rule);
  const category = rule?.category ?? rules.defaults[severity];
  const classification: Classification = {
    severity,
    type: typeOfCategory(category),
    category,
    code: reply.code,
    enhancedCode: reply.enhancedCode,
    text: reply.text,
    rule: rule?.id ?? 'default',
  };
  if (rule?.retryInNewTransaction === true) classification.retryInNewTransaction = true;
  return classification;
}

/**
 * A host name as the rules compare it: lower case, without a trailing dot, brackets or what a
 * report adds after it ("mx.example.net. (192.0.2.1, the server for the domain example.net.)").
 * An IP literal is kept (no provider rule names one); empty is unknown.
 */
export function remoteHostName(value: string | null | undefined): string | null {
  if (value == null) return null;
  const first = value.trim().replace(/^dns;\s*/i, '').split(/[\s(]/, 1)[0] ?? '';
  const host = first.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  return host === '' ? null : host;
}

/** Codes given by the caller win; codes found in the text fill in what the caller did not give. */
function normalizeInput(input: ReplyInput | string, known?: ParsedReply): ParsedReply {
  if (typeof input === 'string') return known ?? parseReply(input);
  const parsed = known ?? parseReply(input.text);
  return {
    code: normalizeReplyCode(input.code) ?? parsed.code,
    enhancedCode: normalizeEnhancedCode(input.enhancedCode) ?? parsed.enhancedCode,
    text: parsed.text,
    stage: parsed.stage,
  };
}

function splitEnhancedCode(enhancedCode: string | null): readonly [number, number, number] | null {
  if (enhancedCode === null) return null;
  // Already validated as class.subject.detail by the parser; split without allocating arrays.
  const first = enhancedCode.indexOf('.');
  const second = enhancedCode.indexOf('.', first + 1);
  return [
    Number(enhancedCode.slice(0, first)),
    Number(enhancedCode.slice(first + 1, second)),
    Number(enhancedCode.slice(second + 1)),
  ];
}

/**
 * The reply code's class first (RFC 5321 §4.2.1: 4yz transient, 5yz permanent), then the enhanced
 * code's class (RFC 3463 §3.1), then what the rule says, else temporary: without a code nothing
 * proves the failure permanent. A recipient-limit refusal is temporary whatever its code
 * (RFC 5321 §4.5.3.1.10: a 552 there is to be treated as temporary).
 */
function decideSeverity(
  code: number | null,
  enhanced: readonly [number, number, number] | null,
  rule: BounceRule | null,
): Severity {
  if (rule?.retryInNewTransaction === true) return 'temporary';
  const fromCode = severityOfClass(code === null ? null : Math.floor(code / 100));
  if (fromCode !== null) return fromCode;
  const fromEnhanced = severityOfClass(enhanced === null ? null : enhanced[0]);
  if (fromEnhanced !== null) return fromEnhanced;
  return rule?.severity ?? 'temporary';
}

function severityOfClass(cls: number | null): Severity | null {
  if (cls === 4) return 'temporary';
  if (cls === 5) return 'permanent';
  return null;
}
