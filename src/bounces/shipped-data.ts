/**
 * The data files shipped in config/ (bounce rules, remote-host rules, report patterns) are validated once, when the
 * project is built (src/build/stamp-shipped-data.ts), and their SHA-256 written next to the built
 * code. A loader that reads a file with that exact content can skip the schema check: the file is
 * the one that passed it. Any other content (an operator's own file, a shipped file edited after the
 * build, a run from the sources without a build) is checked in full.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** dist/shipped-data.json beside dist/bounces/; absent when running from src/ (tests, tsx). */
export const SHIPPED_DATA_STAMP = new URL('../shipped-data.json', import.meta.url);

/** Which schema a file passed: the same text is trusted only by the loader that checked it. */
export type ShippedKind = 'bounce-rules' | 'remote-host-rules' | 'report-patterns';

export type ShippedStamp = Partial<Record<ShippedKind, string>> & {
  /**
   * The literals every match of a shipped rule's regex holds (regex-literals.ts), keyed by
   * `literalsKey`: worked out at build time, because reading ~450 regexes costs about 50 ms at
   * every start of `rebound parse`. null: the regex has none.
   */
  literals?: Record<string, readonly string[] | null>;
};

let stamp: ShippedStamp | undefined;

function readStamp(): ShippedStamp {
  if (stamp === undefined) {
    try {
      stamp = JSON.parse(readFileSync(SHIPPED_DATA_STAMP, 'utf8')) as ShippedStamp;
    } catch {
      stamp = {}; // no stamp: nothing was validated at build, check everything
    }
  }
  return stamp;
}

export function digestOf(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The key of a regex in the stamp's `literals`: its flags and source, which alone decide them. */
export function literalsKey(regex: RegExp): string {
  return `${regex.flags}/${regex.source}`;
}

/** The literals the build worked out for `regex`, or undefined when it did not (any other regex). */
export function literalsAtBuild(regex: RegExp): readonly string[] | null | undefined {
  return readStamp().literals?.[literalsKey(regex)];
}

/** True when `text` is exactly the `kind` file that passed the full check at build time. */
export function validatedAtBuild(kind: ShippedKind, text: string): boolean {
  const digest = readStamp()[kind];
  return typeof digest === 'string' && digest === digestOf(text);
}
