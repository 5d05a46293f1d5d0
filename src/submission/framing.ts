const DOT = 0x2e;
const CR = 0x0d;
const LF = 0x0a;

/**
 * SMTP smuggling (CVE-2023-51764 and kin): a lone "." line ended or started by a bare LF or bare CR
 * ends DATA on some servers and not on others, so a message that holds one could be split into
 * two by the next hop. Such a line has no legitimate use; the message is refused whole.
 *
 * `data` is the DATA payload after dot-unstuffing, so a properly stuffed "." line appears here as
 * CRLF "." CRLF and is fine. Returns the byte offset of the first ambiguous dot, or -1.
 */
export function findAmbiguousDotLine(data: Buffer): number {
  for (let i = data.indexOf(DOT); i !== -1; i = data.indexOf(DOT, i + 1)) {
    const atLineStart = i === 0 || data[i - 1] === LF || data[i - 1] === CR;
    if (!atLineStart) continue;
    const after = data[i + 1];
    const lineIsLoneDot = after === CR || after === LF || after === undefined;
    if (!lineIsLoneDot) continue;
    const crlfBefore = i === 0 || (data[i - 1] === LF && data[i - 2] === CR);
    const crlfAfter = after === CR && data[i + 2] === LF;
    if (!crlfBefore || !crlfAfter) return i;
  }
  return -1;
}

/**
 * RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF, so 998 before it. A
 * longer line is refused rather than folded: Rebound relays the bytes it stored unchanged, and
 * folding would break the sender's DKIM signature. A line ends at LF; a CR before it is not counted.
 * Returns the byte offset where the first line longer than `maxLength` starts, or -1.
 */
export function findOverlongLine(data: Buffer, maxLength: number): number {
  let start = 0;
  while (start < data.length) {
    const lf = data.indexOf(LF, start);
    const end = lf === -1 ? data.length : lf;
    const length = end - start - (lf !== -1 && end > start && data[end - 1] === CR ? 1 : 0);
    if (length > maxLength) return start;
    if (lf === -1) break;
    start = lf + 1;
  }
  return -1;
}
