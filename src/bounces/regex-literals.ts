/**
 * Required literals of a regular expression: a set of lower-case strings one of which every match
 * of the expression contains. A text that holds none of them cannot match, so the regex need not
 * run: most bounce rules are rejected that way (LiteralIndex finds, in one pass over a text, which
 * of many regexes have a literal there). The reading is conservative: any syntax it does not know, a `u`/`v` flag, or literals
 * too short to be worth testing give null, and the caller always runs the regex.
 *
 * Why lower-casing the text is safe: only ASCII characters are taken as literals, and without the
 * `u` flag a case-insensitive ASCII character matches only ASCII characters (ECMA-262
 * Canonicalize), which `toLowerCase` maps to ASCII, one to one. A non-ASCII character that
 * lower-cases to ASCII (the Kelvin sign) can only add a literal, never hide one: the precheck may
 * let a text through, never keep a matching text out.
 */

/** Literals shorter than this make a precheck that lets almost everything through: none is kept. */
const MIN_LITERAL = 3;
/** Bounds the alternatives multiplied out of a run (`(a|b)(c|d)` is 4 strings). */
const MAX_STRINGS = 24;

interface Info {
  /** Every string the node can match, when there are few (lower case); null when unknown. */
  exact: string[] | null;
  /** Strings one of which every match of the node contains; null when unknown. */
  required: string[] | null;
}

const UNKNOWN: Info = { exact: null, required: null };
const EMPTY: Info = { exact: [''], required: null };

class Unsupported extends Error {}

/** The literals (lower case) one of which every match of `regex` holds, or null when none are known. */
export function requiredLiterals(regex: RegExp): readonly string[] | null {
  // Unicode case folding differs (\u017f folds to "s"); a global or sticky regex keeps state a skipped test would not update.
  if (/[uvgy]/.test(regex.flags)) return null;
  try {
    const reader = new Reader(regex.source);
    const info = reader.alternation();
    if (!reader.done()) return null;
    const literals = requiredOf(info);
    if (literals === null || literals.some((literal) => literal.length < MIN_LITERAL)) return null;
    return literals;
  } catch (error) {
    if (error instanceof Unsupported) return null;
    throw error;
  }
}

/** Trigrams hash into this many buckets (a power of two). */
const BUCKET_BITS = 16;
/** Up to this many literals, an index compares them with `includes` (see `few`). */
const FEW_LITERALS = 8;
/**
 * How common each ASCII character is in English mail text, most common first (space, then letter
 * frequency); characters not listed are rare. Only steers which trigram a literal is filed under.
 */
const COMMON_CHARACTERS = ' etaoinsrhldcumfpgwybv.,kx-';

/** A literal filed under one of its trigrams: where that trigram sits in it, and the entries it is a literal of. */
interface Probe {
  readonly literal: string;
  readonly offset: number;
  readonly entries: number[];
}

/**
 * Which of many regexes a text may match, in one pass over the text: the entries one of whose
 * literals the text holds (ASCII letters compared without case), plus those without literals.
 * Each literal is filed under its rarest trigram; a trigram of the text that hits a bucket has the
 * literals filed there compared in place. A multi-literal search in the manner of Rabin-Karp.
 */
export class LiteralIndex {
  private readonly words: number;
  /** Per bucket, 1 + the index of its probes in `probes`, or 0 when no literal hashes there. */
  private readonly slots: Int32Array;
  private readonly probes: Probe[][] = [];
  private readonly always: Int32Array;

  /** With few literals, `includes` on the lower-cased text beats a pass over it: this list, else null. */
  private readonly few: ReadonlyArray<readonly [entry: number, literal: string]> | null;

  /** `entries[i]`: the literals of regex i (requiredLiterals), or null when it has none. */
  constructor(entries: ReadonlyArray<readonly string[] | null>) {
    this.words = Math.max(1, Math.ceil(entries.length / 32));
    this.slots = new Int32Array(1 << BUCKET_BITS);
    this.always = new Int32Array(this.words);
    const all: Array<readonly [number, string]> = [];
    entries.forEach((literals, entry) => {
      if (literals === null) {
        this.always[entry >>> 5] = (this.always[entry >>> 5] ?? 0) | (1 << (entry & 31));
        return;
      }
      for (const literal of literals) {
        if (!/^[\x00-\x7f]{3,}$/.test(literal) || literal !== literal.toLowerCase()) {
          throw new Error(`literal ${JSON.stringify(literal)} is not lower-case ASCII of 3 characters or more`);
        }
        all.push([entry, literal]);
        // Filed under a trigram unlikely in a text and not yet crowded: fewer literals to compare on a hit.
        const keys = trigramKeys(literal);
        const cost = (key: number): number => commonness(key) + 2 * (this.probes[(this.slots[bucketOf(key)] ?? 0) - 1]?.length ?? 0);
        let offset = 0;
        keys.forEach((key, at) => {
          if (cost(key) < cost(keys[offset] ?? 0)) offset = at;
        });
        const bucket = bucketOf(keys[offset] ?? 0);
        if (this.slots[bucket] === 0) this.slots[bucket] = this.probes.push([]);
        const filed = this.probes[(this.slots[bucket] ?? 1) - 1] ?? [];
        const same = filed.find((probe) => probe.literal === literal);
        if (same === undefined) filed.push({ literal, offset, entries: [entry] });
        else if (!same.entries.includes(entry)) same.entries.push(entry);
      }
    });
    this.few = all.length <= FEW_LITERALS ? all : null;
  }

  /** The entries `text` may match, as a bit set (see `has`). */
  candidates(text: string): Int32Array {
    const found = new Int32Array(this.always);
    if (this.few !== null) {
      const lower = this.few.length === 0 ? '' : text.toLowerCase();
      for (const [entry, literal] of this.few) if (lower.includes(literal)) found[entry >>> 5] = (found[entry >>> 5] as number) | (1 << (entry & 31));
      return found;
    }
    const { slots, probes } = this;
    let key = 0;
    let run = 0;
    for (let i = 0; i < text.length; i += 1) {
      let c = text.charCodeAt(i);
      if (c >= 128) {
        run = 0;
        continue;
      }
      if (c >= 65 && c <= 90) c += 32;
      key = ((key << 7) | c) & 0x1fffff;
      run += 1;
      if (run < 3) continue;
      const slot = slots[bucketOf(key)] as number;
      if (slot === 0) continue;
      for (const probe of probes[slot - 1] as Probe[]) {
        if (!foldedAt(text, i - 2 - probe.offset, probe.literal)) continue;
        for (const entry of probe.entries) found[entry >>> 5] = (found[entry >>> 5] as number) | (1 << (entry & 31));
      }
    }
    return found;
  }

  static has(candidates: Int32Array, entry: number): boolean {
    return (((candidates[entry >>> 5] ?? 0) >>> (entry & 31)) & 1) === 1;
  }
}

/** True when `literal` (lower case) stands in `text` at `start`, ASCII letters compared without case. */
function foldedAt(text: string, start: number, literal: string): boolean {
  if (start < 0 || start + literal.length > text.length) return false;
  for (let j = 0; j < literal.length; j += 1) {
    let c = text.charCodeAt(start + j);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== literal.charCodeAt(j)) return false;
  }
  return true;
}

/** The 21-bit keys of a literal's trigrams (7 bits a character: literals are ASCII, lower case). */
function trigramKeys(literal: string): number[] {
  const keys: number[] = [];
  for (let i = 0; i + 3 <= literal.length; i += 1) {
    keys.push((literal.charCodeAt(i) << 14) | (literal.charCodeAt(i + 1) << 7) | literal.charCodeAt(i + 2));
  }
  return keys;
}

/** Lower is rarer: the sum of the ranks of the trigram's characters in COMMON_CHARACTERS, reversed. */
function commonness(key: number): number {
  let score = 0;
  for (const code of [key >>> 14, (key >>> 7) & 0x7f, key & 0x7f]) {
    const rank = COMMON_CHARACTERS.indexOf(String.fromCharCode(code));
    score += rank === -1 ? 0 : COMMON_CHARACTERS.length - rank;
  }
  return score;
}

function bucketOf(key: number): number {
  return Math.imul(key, 0x9e3779b1) >>> (32 - BUCKET_BITS);
}

function requiredOf(info: Info): string[] | null {
  if (info.required !== null) return info.required;
  if (info.exact !== null && !info.exact.includes('')) return minimal(info.exact);
  return null;
}

/** Drops strings that hold another string of the set: a text holding the longer holds the shorter. */
function minimal(strings: readonly string[]): string[] {
  const unique = [...new Set(strings)].sort((a, b) => a.length - b.length);
  const kept: string[] = [];
  for (const s of unique) if (!kept.some((k) => s.includes(k))) kept.push(s);
  return kept;
}

/** The better of two required sets: the longer shortest literal, then the fewer literals. */
function better(a: string[] | null, b: string[] | null): string[] | null {
  if (a === null) return b;
  if (b === null) return a;
  const shortest = (set: string[]): number => Math.min(...set.map((s) => s.length));
  if (shortest(a) !== shortest(b)) return shortest(a) > shortest(b) ? a : b;
  return b.length < a.length ? b : a;
}

/** A recursive-descent reader of the regex source (the syntax without the `u` flag). */
class Reader {
  private at = 0;

  constructor(private readonly source: string) {}

  done(): boolean {
    return this.at >= this.source.length;
  }

  alternation(): Info {
    const branches = [this.sequence()];
    while (this.source[this.at] === '|') {
      this.at += 1;
      branches.push(this.sequence());
    }
    if (branches.length === 1) return branches[0] ?? UNKNOWN;
    let exact: string[] | null = [];
    let required: string[] | null = [];
    for (const branch of branches) {
      exact = exact !== null && branch.exact !== null ? [...exact, ...branch.exact] : null;
      const own = requiredOf(branch);
      required = required !== null && own !== null ? [...required, ...own] : null;
    }
    if (exact !== null && exact.length > MAX_STRINGS) exact = null;
    return { exact: exact === null ? null : [...new Set(exact)], required: required === null ? null : minimal(required) };
  }

  private sequence(): Info {
    let best: string[] | null = null;
    let run: string[] = [''];
    let whole = true;
    const closeRun = (): void => {
      if (!run.includes('')) best = better(best, minimal(run));
    };
    while (!this.done() && this.source[this.at] !== '|' && this.source[this.at] !== ')') {
      const item = this.quantified(this.atom());
      if (item.exact !== null) {
        const product = run.flatMap((head) => (item.exact ?? []).map((tail) => head + tail));
        if (product.length <= MAX_STRINGS) {
          run = [...new Set(product)];
          continue;
        }
        closeRun();
        run = item.exact;
        whole = false;
        continue;
      }
      closeRun();
      best = better(best, item.required);
      run = [''];
      whole = false;
    }
    closeRun();
    return { exact: whole ? run : null, required: best };
  }

  private quantified(atom: Info): Info {
    const c = this.source[this.at];
    let min: number;
    let max: number;
    if (c === '*') [min, max] = [0, Infinity];
    else if (c === '+') [min, max] = [1, Infinity];
    else if (c === '?') [min, max] = [0, 1];
    else if (c === '{') {
      const braces = /^\{(\d+)(,(\d*))?\}/.exec(this.source.slice(this.at));
      if (braces === null) return atom; // a literal "{" (read as the next atom)
      min = Number(braces[1]);
      max = braces[2] === undefined ? min : braces[3] === '' ? Infinity : Number(braces[3]);
      this.at += braces[0].length - 1;
    } else return atom;
    this.at += 1;
    if (this.source[this.at] === '?') this.at += 1; // lazy
    if (min === 1 && max === 1) return atom;
    if (min === 0) return max === 1 && atom.exact !== null ? { exact: [...new Set([...atom.exact, ''])], required: null } : UNKNOWN;
    return { exact: null, required: requiredOf(atom) };
  }

  private atom(): Info {
    const c = this.source[this.at] ?? '';
    this.at += 1;
    switch (c) {
      case '(':
        return this.group();
      case '[':
        return this.characterClass();
      case '\\':
        return this.escape();
      case '.':
        return UNKNOWN;
      case '^':
      case '$':
        return EMPTY;
      case '*':
      case '+':
      case '?':
        throw new Unsupported();
      default:
        return literal(c);
    }
  }

  private group(): Info {
    let lookaround = false;
    if (this.source.startsWith('?:', this.at)) this.at += 2;
    else if (this.source.startsWith('?=', this.at) || this.source.startsWith('?!', this.at)) {
      this.at += 2;
      lookaround = true;
    } else if (this.source.startsWith('?<=', this.at) || this.source.startsWith('?<!', this.at)) {
      this.at += 3;
      lookaround = true;
    } else if (this.source.startsWith('?<', this.at)) {
      const close = this.source.indexOf('>', this.at);
      if (close === -1) throw new Unsupported();
      this.at = close + 1;
    } else if (this.source[this.at] === '?') throw new Unsupported(); // a modifier group, (?i:...)
    const inner = this.alternation();
    if (this.source[this.at] !== ')') throw new Unsupported();
    this.at += 1;
    // A look-around consumes nothing: the text around it is contiguous in the match.
    return lookaround ? EMPTY : inner;
  }

  /** A class of a few plain characters (`[sz]`, `[ée]` is not: ASCII only) is a set of strings. */
  private characterClass(): Info {
    const start = this.at;
    while (!this.done() && this.source[this.at] !== ']') this.at += this.source[this.at] === '\\' ? 2 : 1;
    if (this.done()) throw new Unsupported();
    const body = this.source.slice(start, this.at);
    this.at += 1;
    if (body === '' || !/^[A-Za-z0-9 _'"@.,;:!#%&=<>/~`]+$/.test(body)) return UNKNOWN;
    return { exact: [...new Set([...body].map((ch) => ch.toLowerCase()))], required: null };
  }

  private escape(): Info {
    const c = this.source[this.at] ?? '';
    this.at += 1;
    if (c === 'b' || c === 'B') return EMPTY;
    if (c === 'x' && /^[0-9A-Fa-f]{2}/.test(this.source.slice(this.at, this.at + 2))) {
      this.at += 2;
      return UNKNOWN;
    }
    if (c === 'u' && /^[0-9A-Fa-f]{4}/.test(this.source.slice(this.at, this.at + 4))) {
      this.at += 4;
      return UNKNOWN;
    }
    if (c === 'c' && /^[A-Za-z]/.test(this.source[this.at] ?? '')) {
      this.at += 1;
      return UNKNOWN;
    }
    if (c === 'k' && this.source[this.at] === '<') {
      const close = this.source.indexOf('>', this.at);
      if (close === -1) throw new Unsupported();
      this.at = close + 1;
      return UNKNOWN;
    }
    if (/^[0-9]$/.test(c)) {
      while (/^[0-9]$/.test(this.source[this.at] ?? '')) this.at += 1; // a back-reference or an octal escape
      return UNKNOWN;
    }
    // Classes (\d \w \s ...) and control characters (\n \t ...) are not literals worth reading.
    if (/^[dDwWsSfnrtv]$/.test(c)) return UNKNOWN;
    return literal(c); // an identity escape: \. \- \( \/ ...
  }
}

function literal(c: string): Info {
  // ASCII printable only (see the header): other characters may change case unevenly.
  return /^[\x20-\x7e]$/.test(c) ? { exact: [c.toLowerCase()], required: null } : UNKNOWN;
}
