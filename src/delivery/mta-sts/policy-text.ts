/** An MTA-STS policy (RFC 8461 section 3.2), as parsed from https://mta-sts.DOMAIN/.well-known/mta-sts.txt. */
export interface StsPolicy {
  mode: 'enforce' | 'testing' | 'none';
  /** MX patterns, lower case: "mx.example.com" or "*.example.com" (the wildcard stands for one leftmost label). */
  mx: string[];
  maxAgeSeconds: number;
}

/** RFC 8461 3.2: max_age is at most 31557600 (one year). */
const MAX_AGE_LIMIT = 31_557_600;
const MX_PATTERN = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+\.?$/;

/**
 * Parses a policy body strictly: "key: value" lines ended by CRLF or LF, version STSv1 first,
 * exactly one mode and max_age, at least one mx unless mode is none. Unknown keys are ignored
 * (3.2: for extension). Returns the reason as a string when the body is not a valid policy, which
 * the caller treats as no policy (3.3).
 */
export function parseStsPolicy(text: string): StsPolicy | string {
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  const fields: Array<[string, string]> = [];
  for (const [index, line] of lines.entries()) {
    const match = /^([A-Za-z0-9_.-]+):[ \t]*(.*?)[ \t]*$/.exec(line);
    if (!match) return `line ${index + 1} is not "key: value"`;
    fields.push([match[1] as string, match[2] as string]);
  }
  if (fields[0]?.[0] !== 'version' || fields[0][1] !== 'STSv1') return 'the first line is not "version: STSv1"';
  const values = (key: string): string[] => fields.filter(([k]) => k === key).map(([, v]) => v);
  const modes = values('mode');
  if (modes.length !== 1) return `${modes.length} mode lines (one is needed)`;
  const mode = modes[0] as string;
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return `mode "${mode}" is not enforce, testing or none`;
  const maxAges = values('max_age');
  if (maxAges.length !== 1) return `${maxAges.length} max_age lines (one is needed)`;
  const maxAgeText = maxAges[0] as string;
  if (!/^[0-9]{1,10}$/.test(maxAgeText) || Number(maxAgeText) > MAX_AGE_LIMIT) return `max_age "${maxAgeText}" is not a number of seconds up to ${MAX_AGE_LIMIT}`;
  const mx = values('mx').map((pattern) => pattern.toLowerCase());
  const badPattern = mx.find((pattern) => !MX_PATTERN.test(pattern));
  if (badPattern !== undefined) return `mx "${badPattern}" is not a host name or *.host name`;
  if (mx.length === 0 && mode !== 'none') return 'no mx line';
  return { mode, mx, maxAgeSeconds: Number(maxAgeText) };
}

/** RFC 8461 4.1: "*.example.com" matches "mx.example.com" but not "example.com" nor "a.b.example.com". */
export function mxMatchesPolicy(host: string, patterns: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((raw) => {
    const pattern = raw.replace(/\.$/, '');
    if (!pattern.startsWith('*.')) return name === pattern;
    const dot = name.indexOf('.');
    return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
  });
}

/**
 * The id of a `_mta-sts` TXT record (RFC 8461 3.1): "v=STSv1; id=...;", id 1-32 alphanumerics.
 * null when no record is a valid STSv1 record (or more than one is: 3.1 says treat as none).
 */
export function stsRecordId(records: string[][]): string | null {
  const sts = records.map((strings) => strings.join('')).filter((record) => /^v=STSv1\s*(;|$)/.test(record));
  if (sts.length !== 1) return null;
  const id = /(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(;|$)/.exec(sts[0] as string);
  return id ? (id[1] as string) : null;
}
