import { describe, expect, it } from 'vitest';
import { defaultBounceRules } from '../src/bounces/classifier.js';
import { LiteralIndex, requiredLiterals } from '../src/bounces/regex-literals.js';

/** The literals in a fixed order (the set's order is not part of the contract). */
const literalsOf = (regex: RegExp): string[] | null => {
  const literals = requiredLiterals(regex);
  return literals === null ? null : [...literals].sort();
};

describe('requiredLiterals (the precheck before a rule pattern runs)', () => {
  it('reads a phrase list, optional parts and small classes into the literals every match holds', () => {
    expect(literalsOf(/(?:mailbox (is )?full)|(?:over ?quota)/i)).toEqual(['mailbox full', 'mailbox is full', 'over quota', 'overquota']);
    expect(literalsOf(/\bdoes ?n[o']t exist\b/i)).toEqual(["does n't exist", 'does not exist', "doesn't exist", 'doesnot exist']);
    // Anchors, \b and look-arounds consume nothing: the words around them stay one literal.
    expect(literalsOf(/^\s*user (?=unknown)unknown\b/i)).toEqual(['user unknown']);
    // A repeated part still has to appear once; the longest sure run is kept.
    expect(literalsOf(/(?:spam)+ \d+ (?:blocked by policy)/i)).toEqual([' blocked by policy']);
    expect(literalsOf(/QUEUE\.EXPIRED/)).toEqual(['queue.expired']);
  });

  it('gives null when it cannot prove a literal: the regex then always runs', () => {
    expect(literalsOf(/\d{3} \w+/i)).toBeNull(); // no literal at all
    expect(literalsOf(/user unknown|5\.1\.1|ab/i)).toBeNull(); // one branch too short
    expect(literalsOf(/(?:mailbox)?\s+full/i)).toEqual(['full']); // the optional word proves nothing
    expect(literalsOf(/gr\u00fc\u00dfe/i)).toBeNull(); // non-ASCII letters change case unevenly: not literals
    expect(literalsOf(/\u00fcberf\u00fcllt/i)).toEqual(['berf']);
    expect(literalsOf(/mailbox full/iu)).toBeNull(); // Unicode case folding ("\u017f" is "s")
    expect(literalsOf(/mailbox full/gi)).toBeNull(); // a skipped test would not move lastIndex
    expect(literalsOf(/(a)\1 unknown/i)).toEqual([' unknown']);
  });
});

describe('LiteralIndex', () => {
  const entries = [['mailbox full', 'over quota'], null, ['user unknown'], ['queue.expired']];
  const index = new LiteralIndex(entries);
  const matching = (text: string): number[] => entries.map((_, i) => i).filter((i) => LiteralIndex.has(index.candidates(text), i));

  it('names the entries whose literal the text holds, without case, and always the ones without literals', () => {
    expect(matching('550 5.2.2 MAILBOX FULL')).toEqual([0, 1]);
    expect(matching('550 User Unknown; Over Quota')).toEqual([0, 1, 2]);
    expect(matching('status: queue.expired')).toEqual([1, 3]);
    expect(matching('queue expired')).toEqual([1]);
    expect(matching('')).toEqual([1]);
    // A literal cut by a non-ASCII character is not there; one after it is.
    expect(matching('user\u00a0unknown, mailbox full')).toEqual([0, 1]);
  });

  it('never leaves out a shipped rule whose pattern matches (every rule pattern against phrases it names)', () => {
    const rules = defaultBounceRules().rules;
    const literals = rules.map((rule) => (rule.pattern === null ? null : requiredLiterals(rule.pattern)));
    const ruleIndex = new LiteralIndex(literals);
    // Texts built from each rule's own literals, in odd case and inside other words.
    const texts = literals.flatMap((list) => (list ?? []).map((literal) => `550 5.7.1 X${literal.toUpperCase()}y (#5.0.0)`));
    let checked = 0;
    for (const text of texts) {
      const candidates = ruleIndex.candidates(text);
      rules.forEach((rule, i) => {
        if (rule.pattern?.test(text) === true) {
          checked += 1;
          expect(LiteralIndex.has(candidates, i), `${rule.id} on ${text}`).toBe(true);
        }
      });
    }
    expect(checked).toBeGreaterThan(100);
  });
});
