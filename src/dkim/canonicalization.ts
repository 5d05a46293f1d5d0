/**
 * The relaxed canonicalisations of RFC 6376 3.4.2 (header) and 3.4.4 (body), over a message
 * whose every line ends in CRLF (see wire-data.ts messageAsReceived: the signer reads the bytes
 * the receiver will read). Strings here are latin1, one character per byte, so 8-bit bytes pass
 * through as they are.
 */

const CRLF = '\r\n';

export interface HeaderField {
  /** The field name, lower case, without the whitespace before the colon: how h= matches it. */
  key: string;
  /** Everything after the colon, folds (CRLF + WSP) included. */
  value: string;
}

export interface MessageParts {
  /** Header fields top to bottom; a line that is no field (no colon) is left out: nothing can sign it. */
  fields: HeaderField[];
  body: Buffer;
}

/** Splits a CRLF message at its first empty line. No empty line: all header, empty body. */
export function splitMessage(message: Buffer): MessageParts {
  const startsWithBody = message[0] === 0x0d && message[1] === 0x0a;
  const end = startsWithBody ? 0 : message.indexOf('\r\n\r\n');
  const headEnd = end === -1 ? message.length : startsWithBody ? 0 : end + 2;
  const bodyStart = end === -1 ? message.length : headEnd + 2;
  return { fields: headerFields(message.subarray(0, headEnd).toString('latin1')), body: message.subarray(bodyStart) };
}

function headerFields(head: string): HeaderField[] {
  const fields: HeaderField[] = [];
  let current: { name: string; value: string } | null = null;
  const keep = (): void => {
    if (current) fields.push({ key: current.name.replace(/[ \t]+$/, '').toLowerCase(), value: current.value });
  };
  for (const line of head.split(CRLF)) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && current) {
      current.value += CRLF + line;
      continue;
    }
    keep();
    const colon = line.indexOf(':');
    current = colon > 0 ? { name: line.slice(0, colon), value: line.slice(colon + 1) } : null;
  }
  keep();
  return fields;
}

/** `key:value` relaxed, with its CRLF: unfolded, runs of WSP made one space, none at either end. */
export function relaxedHeader(key: string, value: string): string {
  return `${key}:${value.replaceAll(CRLF, '').replace(/[ \t]+/g, ' ').replace(/^ | $/g, '')}${CRLF}`;
}

/**
 * The relaxed body: WSP at the end of a line dropped, other runs of WSP made one space, empty
 * lines at the end dropped, and CRLF after the last line; an empty body stays empty. Runs of
 * WSP become one space first and a space before CRLF goes after, two native passes that never
 * backtrack: a pattern like /[ \t]+\r\n/ would retry every shorter run, and a hostile body of a
 * million spaces would take hours. Most bodies need neither pass (one linear test says so).
 */
export function relaxedBody(body: Buffer): Buffer {
  let text = body.toString('latin1');
  if (/\t|  | \r\n/.test(text)) text = text.replace(/[ \t]+/g, ' ').replaceAll(' \r\n', CRLF);
  let end = text.length;
  while (end >= 2 && text.charCodeAt(end - 1) === 0x0a && text.charCodeAt(end - 2) === 0x0d) end -= 2;
  if (end === 0) return Buffer.alloc(0);
  return end === text.length ? Buffer.from(`${text}${CRLF}`, 'latin1') : Buffer.from(text.slice(0, end + 2), 'latin1');
}
