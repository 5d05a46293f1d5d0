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
