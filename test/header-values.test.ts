/**
 * header-values.ts reads Content-Type parameters and RFC 2047 encoded words without libmime where
 * it can; it must give exactly what libmime gives. Each test compares the two on the same input:
 * hand-picked values, every byte of the single-byte charsets, every JIS X 0208 pair, and seeded
 * random inputs built from the pieces that change how libmime reads a value.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { decodeWords, headerParams } from '../src/bounces/report/header-values.js';

const libmime = createRequire(import.meta.url)('libmime') as typeof import('libmime').default;

/** What the parser took from libmime before: the params, names in lower case, values as strings. */
function libmimeParams(value: string): Record<string, string> | string {
  try {
    const params: Record<string, string> = {};
    for (const [key, param] of Object.entries(libmime.parseHeaderValue(value).params)) params[key.toLowerCase()] = String(param);
    return params;
  } catch (error) {
    return `throws ${(error as Error).message}`;
  }
}

function ourParams(value: string): Record<string, string> | string {
  try {
    return headerParams(value);
  } catch (error) {
    return `throws ${(error as Error).message}`;
  }
}

function libmimeWords(text: string): string {
  try {
    return libmime.decodeWords(text);
  } catch (error) {
    return `throws ${(error as Error).message}`;
  }
}

function ourWords(text: string): string {
  try {
    return decodeWords(text);
  } catch (error) {
    return `throws ${(error as Error).message}`;
  }
}

/** mulberry32: the same sequence on every run, so a failure can be reproduced. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(next: () => number, list: readonly T[]): T => list[Math.floor(next() * list.length)] as T;

describe('Content-Type parameters read as libmime reads them', () => {
  const values = [
    'multipart/report; report-type=delivery-status; boundary="----=_Part_1_2.3"',
    'text/plain; charset=utf-8',
    'text/plain; charset="ISO-2022-JP"; format=flowed',
    'text/plain;charset=us-ascii;',
    'text/plain; charset = "a b" ; delsp=yes',
    'multipart/mixed; boundary=abc=def',
    'multipart/mixed; boundary="a"; boundary="b"',
    'multipart/mixed; Boundary=A; BOUNDARY=B',
    'text/plain charset="utf-8"',
    'text/plain; charset-encoding-parameter: 8bit',
    'attachment; inline; filename=a.txt',
    'text/plain; ;; charset=x',
    'text/plain; charset=""',
    'text/plain; charset=',
    'text/plain; name*=utf-8\'\'%E2%82%AC',
    'text/plain; name*0="a"; name*1="b"',
    'text/plain; charset="a\\"b"',
    'text/plain; charset="a"b; x=y',
    'text/plain; charset=a b',
    'text/plain; __proto__=x',
    'text/plain; constructor=x; toString=y',
    'text/plain; charset=\u00e9',
    'text/plain; charset="\u00e9\u00a0"',
    'text/"plain; charset=x"',
    'text/plain; (comment) charset=x',
    'message/rfc822',
    '',
  ];
  it.each(values)('%j', (value) => {
    expect(ourParams(value)).toEqual(libmimeParams(value));
  });

  it('agrees on 20000 random values built from the characters that steer libmime', () => {
    const next = random(2047);
    const pieces = ['text/plain', ';', ' ', '\t', '=', '"', '\\', '*', '(', ')', 'charset', 'boundary', 'Name', 'x', 'utf-8', '0', "'", '\u00e9', '\u00a0', '\f', '__proto__', 'a b', '%41', ':'];
    for (let i = 0; i < 20000; i++) {
      const length = 1 + Math.floor(next() * 14);
      let value = '';
      for (let j = 0; j < length; j++) value += pick(next, pieces);
      expect([value, ourParams(value)]).toEqual([value, libmimeParams(value)]);
    }
  });
});

describe('RFC 2047 encoded words decoded as libmime decodes them', () => {
  const b = (charset: string, bytes: Buffer | string): string => `=?${charset}?B?${Buffer.from(bytes).toString('base64')}?=`;
  const words = [
    '=?UTF-8?B?0JLQsNGI0LU=?=. Mail failure.',
    '=?utf-8?Q?caf=C3=A9_au_lait?=',
    '=?utf-8?B?Y2Fm?= =?utf-8?B?w6k=?=',
    '=?utf-8?Q?a?=  =?UTF-8?Q?b?= tail',
    '=?utf-8?B?YQ==?=\t=?us-ascii?B?Yg==?=',
    '=?us-ascii?Q?Delivery_Status_Notification_=28Failure=29?=',
    '=?iso-8859-1?Q?deuxi=E8me_paire?=',
    '=?iso-8859-1?Q?=80=9F?=',
    '=?iso-8859-15?Q?=A4uro?=',
    '=?windows-1252?Q?=93quoted=94?=',
    '=?iso-2022-jp?B?GyRCJUYlOSVIGyhC?=',
    b('iso-2022-jp', '\x1b$B%F%9%H\x1b(B\x1b$B%H\x1b(B'),
    b('iso-2022-jp', '\x1b$B%F%9'),
    b('iso-2022-jp', '\x1b(J\\~'),
    b('iso-2022-jp', '\x1b$@%F'),
    b('iso-2022-jp', '\x1b$B%F%'),
    b('iso-2022-jp', '\x1b$B%F \x1b(B'),
    b('iso-2022-jp', '\x1b$B\x1b(B'),
    '=?koi8-r?B?9MXT1A==?=',
    '=?utf-8*en?Q?x?=',
    '=?utf-8?X?x?=',
    '=?utf-8?Q?broken',
    '=??Q?x?=',
    'no words =? here ?=',
    '=?utf-8?Q?a\u00e9?=',
    '=?utf-8?B?YQ=YQ==?=',
    '=?utf-8?B?Y\u0141Q==?=',
    '=?utf-8?Q?=?utf-8?Q?x?=',
    '=?utf-8?Q?a__\u0000JOIN\u0000__b?=',
  ];
  it.each(words)('%j', (text) => {
    expect(ourWords(text)).toBe(libmimeWords(text));
  });

  it('every byte of the single-byte charsets', () => {
    for (const charset of ['us-ascii', 'ascii', 'iso-8859-1', 'windows-1252', 'iso-8859-15', 'ISO-8859-15']) {
      for (let byte = 0; byte < 256; byte++) {
        const text = b(charset, Buffer.from([0x41, byte, 0x42]));
        expect([text, ourWords(text)]).toEqual([text, libmimeWords(text)]);
      }
    }
  });

  it('every JIS X 0208 pair in ISO-2022-JP, defined or not', () => {
    for (let lead = 0x21; lead <= 0x7e; lead++) {
      for (let trail = 0x21; trail <= 0x7e; trail++) {
        const text = b('iso-2022-jp', Buffer.from([0x41, 0x1b, 0x24, 0x42, lead, trail, 0x1b, 0x28, 0x42, 0x42]));
        expect([text, ourWords(text)]).toEqual([text, libmimeWords(text)]);
      }
    }
  });

  it('agrees on 20000 random runs of words, charsets, payloads and the space between them', () => {
    const next = random(2045);
    const charsets = ['utf-8', 'UTF-8', 'us-ascii', 'iso-8859-1', 'iso-8859-15', 'windows-1252', 'iso-2022-jp', 'ISO-2022-JP', 'koi8-r', 'utf8', 'x'];
    const jisPieces = ['\x1b$B', '\x1b(B', '\x1b(J', '%F', '%9', '\x22\x2f', '\x74\x27', 'ab', ' ', '\n', '\x1b'];
    const randomBytes = (): Buffer => {
      if (next() < 0.3) {
        let jis = '';
        const n = Math.floor(next() * 8);
        for (let i = 0; i < n; i++) jis += pick(next, jisPieces);
        return Buffer.from(jis, 'latin1');
      }
      const bytes = Buffer.alloc(Math.floor(next() * 6));
      for (let i = 0; i < bytes.length; i++) bytes[i] = next() < 0.5 ? 0x20 + Math.floor(next() * 0x5f) : Math.floor(next() * 256);
      return bytes;
    };
    const word = (): string => {
      const charset = pick(next, charsets);
      const bytes = randomBytes();
      const roll = next();
      if (roll < 0.4) return b(charset, bytes);
      if (roll < 0.8) {
        const q = [...bytes].map((byte) => (byte > 0x20 && byte < 0x7f && byte !== 0x3d && byte !== 0x3f && byte !== 0x5f ? String.fromCharCode(byte) : `=${byte.toString(16).padStart(2, '0').toUpperCase()}`)).join('');
        return `=?${charset}?${next() < 0.5 ? 'Q' : 'q'}?${q}?=`;
      }
      return `=?${charset}?${pick(next, ['B', 'b', 'Q'])}?${pick(next, ['YQ==', 'YQ=YQ', '=4', '=\t41', 'a_b', 'x y', '', '=?='])}?=`;
    };
    const between = ['', ' ', '  ', '\t', ' x ', '=?', '?=', ' =? ', '\n '];
    for (let i = 0; i < 20000; i++) {
      const count = 1 + Math.floor(next() * 4);
      let text = pick(next, ['', 'Re: ', '=?']);
      for (let j = 0; j < count; j++) text += word() + pick(next, between);
      expect([text, ourWords(text)]).toEqual([text, libmimeWords(text)]);
    }
  });
});
