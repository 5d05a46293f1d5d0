/**
 * A small MIME reader for reports: headers, the multipart tree, embedded messages, transfer
 * decoding and charsets. Reports are read often and attackers can send anything to a return-path
 * domain, so the work is bounded: the input is cut at MAX_INPUT_BYTES, the tree at MAX_PARTS parts
 * and MAX_DEPTH levels. mailparser would do more (and allocate more) than a report needs; this
 * reader keeps the raw bytes as a latin1 string and decodes only the parts that are read.
 */
import { TextDecoder } from 'node:util';
import { decodeWords, headerParams } from './header-values.js';

export const MAX_INPUT_BYTES = 8 * 1024 * 1024;
const MAX_DEPTH = 6;
const MAX_PARTS = 256;
const MAX_HEADER_BYTES = 256 * 1024;

export type Headers = ReadonlyMap<string, readonly string[]>;

export interface Entity {
  /** Lower-case names; values unfolded, still raw (latin1 bytes), in order of appearance. */
  readonly headers: Headers;
  /** Lower-case media type; `text/plain` when absent (RFC 2045 §5.2). */
  readonly type: string;
  readonly params: Readonly<Record<string, string>>;
  /** The body as received, transfer encoding not yet undone, as a latin1 string. */
  readonly body: string;
  /** Children of a multipart. */
  readonly parts: readonly Entity[];
  /** The message inside message/rfc822, message/global or text/rfc822-headers. */
  readonly message: Entity | null;
}

interface Budget {
  parts: number;
}

const EMPTY_HEADERS: Headers = new Map();

/** Parses a whole message; `raw` is a latin1 string (one char per byte), CRLF already made LF. */
export function parseEntity(raw: string): Entity {
  return readEntity(raw, 0, { parts: 0 });
}

/** The input as a latin1 string with CRLF (and lone CR) line ends made LF, cut at the limit. */
export function toBinaryText(input: Buffer): string {
  const bytes = input.length > MAX_INPUT_BYTES ? input.subarray(0, MAX_INPUT_BYTES) : input;
  const text = bytes.toString('latin1');
  return text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text;
}

function readEntity(raw: string, depth: number, budget: Budget, defaultType = 'text/plain'): Entity {
  budget.parts += 1;
  const split = splitHeaderSection(raw);
  const headers = parseHeaderSection(split.head);
  const contentType = first(headers, 'content-type');
  let type = defaultType;
  let params: Record<string, string> = {};
  if (contentType !== undefined) {
    const parsed = parseContentType(contentType);
    if (parsed.type.includes('/')) type = parsed.type;
    params = parsed.params;
  }
  const body = split.body;
  let parts: Entity[] = [];
  let message: Entity | null = null;
  if (depth < MAX_DEPTH && budget.parts < MAX_PARTS) {
    if (type.startsWith('multipart/')) {
      parts = readMultipart(body, params.boundary, depth, budget, type === 'multipart/digest');
    } else if (type === 'message/rfc822' || type === 'message/global' || type === 'message/partial') {
      message = readEntity(decodeTransfer(headers, body), depth + 1, budget);
    } else if (type === 'text/rfc822-headers' || type === 'message/global-headers') {
      message = readEntity(decodeTransfer(headers, body), depth + 1, budget);
    }
  }
  return { headers, type, params, body, parts, message };
}

interface HeaderSplit {
  head: string;
  body: string;
}

function splitHeaderSection(raw: string): HeaderSplit {
  if (raw.startsWith('\n')) return { head: '', body: raw.slice(1) };
  const end = raw.indexOf('\n\n');
  if (end === -1) {
    // Headers only (text/rfc822-headers), or a body without a blank line before it.
    return looksLikeHeaderLine(raw) ? { head: raw, body: '' } : { head: '', body: raw };
  }
  if (end > MAX_HEADER_BYTES) return { head: raw.slice(0, MAX_HEADER_BYTES), body: raw.slice(end + 2) };
  return { head: raw.slice(0, end), body: raw.slice(end + 2) };
}

const HEADER_LINE = /^[!-9;-~]+[ \t]*:/;

function looksLikeHeaderLine(text: string): boolean {
  return HEADER_LINE.test(text) || text.startsWith('From ');
}

/** RFC 5322 §2.2: name ":" value, continuation lines start with white space (unfolded here). */
export function parseHeaderSection(head: string): Headers {
  if (head === '') return EMPTY_HEADERS;
  const headers = new Map<string, string[]>();
  let name: string | null = null;
  let value = '';
  // Line by line without splitting the section into an array first: this runs for every part.
  for (let start = 0; start <= head.length; ) {
    let end = head.indexOf('\n', start);
    if (end === -1) end = head.length;
    const line = head.slice(start, end);
    start = end + 1;
    const first = line.charCodeAt(0);
    if (first === 0x20 || first === 0x09) {
      if (name !== null) value += ` ${line.trim()}`;
      continue;
    }
    if (name !== null) addHeader(headers, name, value);
    name = null;
    const colon = line.indexOf(':');
    if (colon <= 0) continue; // an mbox "From " line or garbage
    const candidate = line.slice(0, colon).trim().toLowerCase();
    if (candidate === '' || candidate.includes(' ')) continue;
    name = candidate;
    value = line.slice(colon + 1);
  }
  if (name !== null) addHeader(headers, name, value);
  return headers;
}

function addHeader(headers: Map<string, string[]>, name: string, value: string): void {
  const list = headers.get(name);
  if (list === undefined) headers.set(name, [value.trim()]);
  else list.push(value.trim());
}

export function first(headers: Headers, name: string): string | undefined {
  return headers.get(name)?.[0];
}

interface ContentType {
  type: string;
  params: Record<string, string>;
}

const MEDIA_TYPE = /^\s*([A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+)/;

export function parseContentType(value: string): ContentType {
  // The type is read alone first: "text/plain charset=..." (a missing ";") still says text/plain.
  const type = MEDIA_TYPE.exec(value)?.[1]?.toLowerCase() ?? '';
  try {
    const params = headerParams(value);
    if (params.charset === undefined) {
      const charset = /charset\s*=\s*"?([\w.:-]+)/i.exec(value)?.[1];
      if (charset !== undefined) params.charset = charset;
    }
    return { type, params };
  } catch {
    return { type, params: {} };
  }
}

/**
 * RFC 2046 §5.1.1: delimiter lines are "--" boundary, the last one "--" boundary "--". When the
 * declared boundary never occurs (some MTAs rewrite it), the first line that looks like a delimiter
 * is used instead, so the report inside is still found.
 */
function readMultipart(
  body: string,
  declared: string | undefined,
  depth: number,
  budget: Budget,
  digest: boolean,
): Entity[] {
  let boundary = declared;
  if (boundary === undefined || boundary === '' || findDelimiter(body, `--${boundary}`, 0) === -1) {
    boundary = guessBoundary(body);
    if (boundary === undefined) return [];
  }
  const delimiter = `--${boundary}`;
  const parts: Entity[] = [];
  let at = findDelimiter(body, delimiter, 0);
  while (at !== -1 && budget.parts < MAX_PARTS) {
    const after = at + delimiter.length;
    if (body.startsWith('--', after)) break; // close delimiter
    const lineEnd = body.indexOf('\n', after);
    if (lineEnd === -1) break;
    const next = findDelimiter(body, delimiter, lineEnd);
    const content = next === -1 ? body.slice(lineEnd + 1) : body.slice(lineEnd + 1, Math.max(lineEnd + 1, next - 1));
    // RFC 2046 §5.1.5: in a digest the default type of a part is message/rfc822.
    parts.push(readEntity(content, depth + 1, budget, digest ? 'message/rfc822' : 'text/plain'));
    at = next;
  }
  return parts;
}

/** Index of a delimiter line at or after `from`, or -1. */
function findDelimiter(body: string, delimiter: string, from: number): number {
  let at = from === 0 && body.startsWith(delimiter) ? 0 : body.indexOf(`\n${delimiter}`, from);
  while (at !== -1) {
    const start = body[at] === '\n' ? at + 1 : at;
    const next = body[start + delimiter.length];
    if (next === undefined || next === '\n' || next === '-' || next === ' ' || next === '\t') return start;
    at = body.indexOf(`\n${delimiter}`, start + 1);
  }
  return -1;
}

const DELIMITER_GUESS = /^--([^\s]{6,70})[ \t]*$/m;

function guessBoundary(body: string): string | undefined {
  const match = DELIMITER_GUESS.exec(body.length > 65536 ? body.slice(0, 65536) : body);
  const boundary = match?.[1];
  if (boundary === undefined) return undefined;
  // A close delimiter seen first still names the boundary.
  return boundary.endsWith('--') && !body.includes(`\n--${boundary}--`) ? boundary.slice(0, -2) : boundary;
}

/** Undoes Content-Transfer-Encoding (RFC 2045 §6); returns a latin1 string. */
export function decodeTransfer(headers: Headers, body: string): string {
  const encoding = first(headers, 'content-transfer-encoding')?.trim().toLowerCase();
  if (encoding === 'base64') {
    const decoded = Buffer.from(body, 'base64').toString('latin1');
    return decoded.includes('\r') ? decoded.replace(/\r\n?/g, '\n') : decoded;
  }
  if (encoding === 'quoted-printable') return decodeQuotedPrintable(body);
  return body;
}

const QP_SOFT_BREAK = /=[ \t]*\n/g;

/** Soft line breaks out, then each `=XX` octet, left to right (a callback per octet was slow). */
function decodeQuotedPrintable(body: string): string {
  if (!body.includes('=')) return body;
  const text = body.replace(QP_SOFT_BREAK, '');
  let decoded = '';
  let copied = 0;
  for (let at = text.indexOf('='); at !== -1; at = text.indexOf('=', at + 1)) {
    const high = hexDigit(text.charCodeAt(at + 1));
    const low = high === -1 ? -1 : hexDigit(text.charCodeAt(at + 2));
    if (low === -1) continue;
    decoded += text.slice(copied, at) + String.fromCharCode(high * 16 + low);
    copied = at + 3;
    at += 2;
  }
  return copied === 0 ? text : decoded + text.slice(copied);
}

/** The value of an ASCII hex digit, or -1 (NaN past the end of the text gives -1 too). */
function hexDigit(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 65 && code <= 70) return code - 55;
  if (code >= 97 && code <= 102) return code - 87;
  return -1;
}

const decoders = new Map<string, TextDecoder | null>();

function decoderFor(charset: string): TextDecoder | null {
  let decoder = decoders.get(charset);
  if (decoder === undefined) {
    try {
      decoder = new TextDecoder(charset);
    } catch {
      decoder = null; // a label TextDecoder does not know; treated as UTF-8 below
    }
    decoders.set(charset, decoder);
  }
  return decoder;
}

const UTF8 = new TextDecoder('utf-8');
const NON_ASCII = /[^\x00-\x7f]/;
const ISO_2022_ESCAPE = /\x1b[$(]/;

/** latin1 bytes → text in `charset`; UTF-8 when the charset is absent or unknown. */
export function decodeCharset(bytes: string, charset: string | undefined): string {
  const label = charset?.trim().toLowerCase();
  const hasEscape = ISO_2022_ESCAPE.test(bytes);
  if (!NON_ASCII.test(bytes) && !hasEscape) return bytes;
  let decoder: TextDecoder | null = null;
  if (label !== undefined && label !== '' && label !== 'us-ascii' && label !== 'ascii') decoder = decoderFor(label);
  // ISO-2022-JP is 7-bit: without a declared charset its escapes are the only clue.
  if (decoder === null && hasEscape) decoder = decoderFor('iso-2022-jp');
  return (decoder ?? UTF8).decode(Buffer.from(bytes, 'latin1'));
}

/** A text part's content as a string: transfer decoding, then its charset. */
export function textOf(entity: Entity): string {
  return decodeCharset(decodeTransfer(entity.headers, entity.body), entity.params.charset);
}

/** A header value as text: raw 8-bit bytes read as UTF-8, then RFC 2047 encoded words. */
export function headerText(value: string | undefined): string {
  if (value === undefined) return '';
  const text = NON_ASCII.test(value) ? decodeCharset(value, 'utf-8') : value;
  if (!text.includes('=?')) return text;
  try {
    return decodeWords(text);
  } catch {
    return text;
  }
}

/** Every entity of the tree, depth first, including messages inside message/rfc822 parts. */
export function* walk(entity: Entity): Generator<Entity> {
  yield entity;
  for (const part of entity.parts) yield* walk(part);
  if (entity.message !== null) yield* walk(entity.message);
}

/** The entities of the tree without descending into embedded messages. */
export function* walkOwn(entity: Entity): Generator<Entity> {
  yield entity;
  for (const part of entity.parts) yield* walkOwn(part);
}

/** The human-readable text of a report: its first text/plain part, else its HTML as text. */
export function readableText(container: Entity): string {
  for (const entity of walkOwn(container)) {
    if (entity.type === 'text/plain' && entity.parts.length === 0 && entity.body.trim() !== '') return textOf(entity);
  }
  for (const entity of walkOwn(container)) {
    if (entity.type === 'text/html') return stripHtml(textOf(entity));
  }
  return container.parts.length === 0 && container.message === null ? textOf(container) : '';
}

/** An HTML-only report as text: line breaks where blocks end, tags dropped (linear, no nesting). */
function stripHtml(html: string): string {
  return html
    .replace(/<br\s*\/?>|<\/(?:p|div|tr|li|h\d)>/gi, '\n')
    .replace(/<[^<>]*>/g, ' ')
    .replace(/&nbsp;/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/[ \t]+\n/g, '\n');
}
