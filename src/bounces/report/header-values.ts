/**
 * Header values libmime reads for the report parser: the parameters of a Content-Type and RFC 2047
 * encoded words. libmime (with iconv-lite and encoding-japanese) takes ~50 ms to load, more than a
 * `rebound parse` of a few reports takes in all, so the forms almost every report uses are read
 * here with what Node has, giving exactly what libmime gives (test/header-values.test.ts compares
 * the two); anything else (RFC 2231 continuations, escapes, a charset beyond UTF-8 and ASCII text)
 * goes to libmime, loaded on that first use.
 */
import { createRequire } from 'node:module';
import { TextDecoder } from 'node:util';
import type Libmime from 'libmime';

let loaded: typeof Libmime | undefined;

/** libmime, loaded on first use; synchronous (the parser is), hence require() rather than import(). */
export function lazyLibmime(): typeof Libmime {
  loaded ??= createRequire(import.meta.url)('libmime') as typeof Libmime;
  return loaded;
}

/**
 * `type/subtype; name=token; name="quoted"; word`: the form read natively. Names without `*` (no
 * RFC 2231 continuation), no backslash in a value (no quoted-pair), nothing after a closing quote,
 * ASCII only: libmime's reading of such a value is plain, the same as this one. A segment without
 * "=" is a name of empty value, as libmime reads it ("inline" in "attachment; inline").
 */
const SIMPLE_PARAMS =
  /^[^;"\\]*(?:;[ \t]*(?:[A-Za-z0-9!#$%&'+.^_`{|}~-]+[ \t]*=[ \t]*(?:"[^"\\]*"|[^\s;"\\]+)[ \t]*|[^;=*\r\n\f\v\u0080-\uffff]*))*$/;
const PARAM = /;[ \t]*(?:([A-Za-z0-9!#$%&'+.^_`{|}~-]+)[ \t]*=[ \t]*(?:"([^"\\]*)"|([^\s;"\\]+))[ \t]*|([^;=*\r\n\f\v\u0080-\uffff]*))/g;

/**
 * The parameters of a Content-Type-like value, names in lower case, as libmime's
 * parseHeaderValue() gives them (the first of a repeated name wins). Throws what libmime throws.
 */
export function headerParams(value: string): Record<string, string> {
  // Without a ";" libmime never leaves the media type, whatever quotes it holds: no parameters.
  if (!value.includes(';')) return {};
  if (!SIMPLE_PARAMS.test(value)) return libmimeParams(value);
  const params: Record<string, string> = {};
  for (const match of value.matchAll(PARAM)) {
    const word = match[4];
    const name = (word === undefined ? (match[1] as string) : word.replace(/^[ \t]+|[ \t]+$/g, '')).toLowerCase();
    if (name === '') continue;
    if (name === '__proto__') return libmimeParams(value); // libmime defines it as an own property
    if (!Object.hasOwn(params, name)) params[name] = word === undefined ? (match[2] ?? (match[3] as string)) : '';
  }
  return params;
}

function libmimeParams(value: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const [key, param] of Object.entries(lazyLibmime().parseHeaderValue(value).params)) params[key.toLowerCase()] = String(param);
  return params;
}

/**
 * The charsets decoded natively, by the name libmime gives each (its normalizeCharset()): words of
 * the same name next to each other are joined before decoding, as libmime joins them. UTF-8 is
 * decoded by Buffer, as libmime does; windows-1252 (libmime's name for Latin-1 and ASCII too) as
 * latin1 where the two agree; ISO-8859-15 and ISO-2022-JP (its plain form, see decodeJis) by
 * TextDecoder.
 */
const NATIVE_CHARSETS: ReadonlyMap<string, string> = new Map([
  ['iso-2022-jp', 'ISO-2022-JP'],
  ['utf-8', 'UTF-8'],
  ['us-ascii', 'windows-1252'],
  ['ascii', 'windows-1252'],
  ['iso-8859-1', 'windows-1252'],
  ['windows-1252', 'windows-1252'],
  ['iso-8859-15', 'ISO-8859-15'],
]);

/** The widest encoded word libmime's steps look for, tried at each `=?` (sticky). */
const WORD_AT = /=\?([^?]+)\?[QqBb]\?[^?]*\?=/y;

/** Thrown inside the native decoding when a word needs libmime after all (8-bit single-byte text). */
class NeedsLibmime extends Error {}

/** RFC 2047 encoded words decoded, as libmime's decodeWords() decodes them. */
export function decodeWords(text: string): string {
  if (!hasOnlyNativeCharsets(text)) return lazyLibmime().decodeWords(text);
  try {
    return decodeNativeWords(text);
  } catch (error) {
    if (error instanceof NeedsLibmime) return lazyLibmime().decodeWords(text);
    throw error;
  }
}

/**
 * True when every encoded word libmime could find in the text (at any `=?`, overlapping ones too)
 * is in a charset NATIVE_CHARSETS names. A NUL is left to libmime: its steps mark joins with NULs.
 */
function hasOnlyNativeCharsets(text: string): boolean {
  if (text.includes('\x00')) return false;
  for (let at = text.indexOf('=?'); at !== -1; at = text.indexOf('=?', at + 1)) {
    WORD_AT.lastIndex = at;
    const label = WORD_AT.exec(text)?.[1];
    if (label !== undefined && !NATIVE_CHARSETS.has(label.toLowerCase())) return false;
  }
  return true;
}

/**
 * libmime's steps, in its order: adjacent B words of one charset joined, then adjacent Q words,
 * then the white space between the remaining words dropped, then each word decoded.
 */
function decodeNativeWords(text: string): string {
  return text
    .replace(/(=\?([^?]+)\?[Bb]\?[^?]*\?=)\s*(?==\?([^?]+)\?[Bb]\?[^?]*\?=)/g, joinSameCharset)
    .replace(/(=\?([^?]+)\?[Qq]\?[^?]*\?=)\s*(?==\?([^?]+)\?[Qq]\?[^?]*\?=)/g, joinSameCharset)
    .replace(/(\?=)?__\x00JOIN\x00__(=\?([^?]+)\?[QqBb]\?)?/g, '')
    .replace(/(=\?[^?]+\?[QqBb]\?[^?]*\?=)\s+(?==\?[^?]+\?[QqBb]\?[^?]*\?=)/g, '$1')
    .replace(/=\?([\w_\-*]+)\?([QqBb])\?([^?]*)\?=/g, (_match, charset: string, encoding: string, payload: string) =>
      decodeWord(charset, encoding, payload),
    );
}

function joinSameCharset(match: string, left: string, leftCharset: string, rightCharset: string): string {
  return normalizedCharset(leftCharset) === normalizedCharset(rightCharset) ? `${left}__\x00JOIN\x00__` : match;
}

function normalizedCharset(label: string): string {
  const name = NATIVE_CHARSETS.get(label.toLowerCase());
  if (name === undefined) throw new NeedsLibmime(); // cannot happen after hasOnlyNativeCharsets
  return name;
}

function decodeWord(charset: string, encoding: string, payload: string): string {
  const name = normalizedCharset(charset);
  const bytes = encoding.toUpperCase() === 'Q' ? decodeQ(payload) : decodeB(payload);
  if (name === 'UTF-8') return bytes.toString('utf-8');
  if (name === 'ISO-2022-JP') return decodeJis(bytes);
  if (name === 'ISO-8859-15') return decodeLatin9(bytes);
  // windows-1252 is latin1 but for 0x80-0x9F, where libmime (iconv-lite) and Node's decoders differ.
  for (const byte of bytes) if (byte >= 0x80 && byte <= 0x9f) throw new NeedsLibmime();
  return bytes.toString('latin1');
}

const decoders = new Map<string, TextDecoder | null>();

/** Node's decoder for a label, made once; null in a Node built without ICU (then: libmime). */
function nodeDecoder(label: string): TextDecoder {
  let decoder = decoders.get(label);
  if (decoder === undefined) {
    try {
      decoder = new TextDecoder(label);
    } catch {
      decoder = null;
    }
    decoders.set(label, decoder);
  }
  if (decoder === null) throw new NeedsLibmime();
  return decoder;
}

/** ISO-8859-15 by TextDecoder: byte for byte as iconv-lite (the test checks all 256). */
function decodeLatin9(bytes: Buffer): string {
  return nodeDecoder('iso-8859-15').decode(bytes);
}

/**
 * The plain form of ISO-2022-JP: ASCII, then runs of JIS X 0208 characters (ESC $ B, byte pairs
 * 0x21-0x7E) each back to ASCII (ESC ( B), the last run maybe left open. No other escape, no
 * shift, no 8-bit byte, no lone byte.
 */
const PLAIN_JIS = /^[\x00-\x0d\x10-\x1a\x1c-\x7f]*(?:\x1b\$B(?:[\x21-\x7e]{2})+\x1b\(B[\x00-\x0d\x10-\x1a\x1c-\x7f]*)*(?:\x1b\$B(?:[\x21-\x7e]{2})+)?$/;
/**
 * Back to ASCII and at once to JIS again: nothing for encoding-japanese, an error (U+FFFD) for
 * TextDecoder (WHATWG: an escape right after an escape), so dropped before decoding.
 */
const EMPTY_ASCII_RUN = /\x1b\(B\x1b\$B/g;

/** The runs of JIS X 0208 pairs. */
const JIS_RUN = /\x1b\$B((?:[\x21-\x7e]{2})+)/g;
/**
 * The pairs TextDecoder reads as a character and encoding-japanese as "?": NEC's row 13 duplicates
 * of row 2 symbols, and 0x7C7B. Found by the test that tries every pair; left to libmime.
 */
const PAIRS_READ_APART = new Set(['-p', '-q', '-r', '-u', '-v', '-w', '-z', '-{', '-|', '|{']);

/**
 * Plain ISO-2022-JP (see PLAIN_JIS) by TextDecoder: it and encoding-japanese (libmime's decoder)
 * read the other JIS X 0208 characters alike, and where a pair names none TextDecoder gives U+FFFD
 * and encoding-japanese "?", so "?" it is (test/header-values.test.ts tries all 8836 pairs).
 * Anything else goes to libmime.
 */
function decodeJis(bytes: Buffer): string {
  const text = bytes.toString('latin1');
  if (!PLAIN_JIS.test(text)) throw new NeedsLibmime();
  for (const run of text.matchAll(JIS_RUN)) {
    const pairs = run[1] as string;
    for (let i = 0; i < pairs.length; i += 2) if (PAIRS_READ_APART.has(pairs.slice(i, i + 2))) throw new NeedsLibmime();
  }
  const plain = text.includes('\x1b(B\x1b$B') ? Buffer.from(text.replace(EMPTY_ASCII_RUN, ''), 'latin1') : bytes;
  return nodeDecoder('iso-2022-jp').decode(plain).replaceAll('\ufffd', '?');
}

/** The Q encoding as libmime reads it: "_" and white space are spaces, "=" and two hex digits a byte. */
function decodeQ(payload: string): Buffer {
  const buffer = Buffer.from(payload.replace(/=\s+([0-9a-fA-F])/g, '=$1').replace(/[_\s]/g, ' '));
  const bytes: number[] = [];
  for (let i = 0; i < buffer.length; i++) {
    const byte = buffer[i] as number;
    if (i <= buffer.length - 2 && byte === 0x3d && isHex(buffer[i + 1]) && isHex(buffer[i + 2])) {
      bytes.push(parseInt(String.fromCharCode(buffer[i + 1] as number, buffer[i + 2] as number), 16));
      i += 2;
      continue;
    }
    bytes.push(byte);
  }
  return Buffer.from(bytes);
}

function isHex(byte: number | undefined): boolean {
  return byte !== undefined && ((byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) || (byte >= 0x41 && byte <= 0x46));
}

/**
 * The B encoding as libbase64 (libmime's) reads it: characters beyond latin1 skipped, and input
 * padded in several places decoded segment by segment (Buffer stops at the first padding).
 */
function decodeB(payload: string): Buffer {
  const text = /[^\u0000-\u00ff]/.test(payload) ? payload.replace(/[^\u0000-\u00ff]+/g, '') : payload;
  const pad = text.indexOf('=');
  if (pad < 0 || !/[a-zA-Z0-9+/\-_]/.test(text.slice(pad))) return Buffer.from(text, 'base64');
  const output = Buffer.alloc(Math.floor((text.length * 3) / 4));
  let length = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('=', start);
    if (end < 0) end = text.length;
    if (end > start) length += output.write(text.substring(start, end), length, 'base64');
    start = end + 1;
  }
  return Buffer.from(output.subarray(0, length));
}
