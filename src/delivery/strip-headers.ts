const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;

/** Mailgun's control headers, always meant for the relay and never for the recipient. */
export const MAILGUN_CONTROL_HEADERS = ['X-Mailgun-Tag', 'X-Mailgun-Variables'] as const;

/**
 * The header fields left out of the bytes sent: `delivery.stripHeaders`, or when that is null,
 * Mailgun's control headers and the campaign header. Lower-cased, resolved once at start-up.
 */
export function headersToStrip(stripHeaders: readonly string[] | null, campaignHeader: string): ReadonlySet<string> {
  const names = stripHeaders ?? [...MAILGUN_CONTROL_HEADERS, campaignHeader];
  return new Set(names.map((name) => name.toLowerCase()));
}

/**
 * `raw` without the header fields named in `names` (each with its folded continuation lines),
 * the rest byte for byte; `raw` itself when it has none of them, so most mail is not copied.
 * Only the header section is read: the body's lines are never taken for fields.
 */
export function stripHeaderFields(raw: Buffer, names: ReadonlySet<string>): Buffer {
  if (names.size === 0) return raw;
  const kept: Buffer[] = [];
  let keptFrom = 0;
  let dropping = false;
  let stripped = false;
  let start = 0;
  // Each turn reads one line, so the loop ends within raw's line count.
  while (start < raw.length) {
    const first = raw[start];
    if (first === LF || (first === CR && raw[start + 1] === LF)) break; // the empty line: the body follows
    const lf = raw.indexOf(LF, start);
    const end = lf === -1 ? raw.length : lf + 1;
    if (first !== SPACE && first !== TAB) {
      const colon = raw.indexOf(0x3a, start);
      const name = colon !== -1 && colon < end ? raw.toString('latin1', start, colon).trim().toLowerCase() : null;
      const drop = name !== null && names.has(name);
      if (drop && !dropping) {
        kept.push(raw.subarray(keptFrom, start));
        stripped = true;
      } else if (!drop && dropping) {
        keptFrom = start;
      }
      dropping = drop;
    }
    start = end;
  }
  if (!stripped) return raw;
  // Still dropping: the last field was stripped, and what follows is the empty line and the body.
  kept.push(raw.subarray(dropping ? start : keptFrom));
  return Buffer.concat(kept);
}
