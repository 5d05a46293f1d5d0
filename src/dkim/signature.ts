import { createHash, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { relaxedBody, relaxedHeader, type HeaderField, type MessageParts } from './canonicalization.js';
import type { DkimAlgorithm } from './key-pair.js';

export interface SigningKey {
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  privateKey: KeyObject;
}

/**
 * The fields a signature covers when the message has them: those RFC 6376 5.4.1 recommends,
 * and List-Unsubscribe with List-Unsubscribe-Post, which RFC 8058 3.1 wants signed before a
 * receiver offers one-click unsubscribe. From is listed once more than it occurs (RFC 6376
 * 8.15, "oversigning"): a From added on the way invalidates the signature.
 */
export const SIGNED_FIELDS = [
  'From',
  'To',
  'Cc',
  'Subject',
  'Date',
  'Message-ID',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
  'Reply-To',
  'In-Reply-To',
  'References',
  'List-Unsubscribe',
  'List-Unsubscribe-Post',
] as const;
const OVERSIGNED = new Set(['from']);

const signAsync = promisify(sign);

/**
 * h=: each listed name once per field of that name (the verifier takes them bottom up, RFC
 * 6376 5.4.2), plus one more for an oversigned name.
 */
export function signedFieldNames(fields: readonly HeaderField[]): string[] {
  const counts = new Map<string, number>();
  for (const field of fields) counts.set(field.key, (counts.get(field.key) ?? 0) + 1);
  const names: string[] = [];
  for (const name of SIGNED_FIELDS) {
    const key = name.toLowerCase();
    const occurs = (counts.get(key) ?? 0) + (OVERSIGNED.has(key) ? 1 : 0);
    for (let i = 0; i < occurs; i++) names.push(name);
  }
  return names;
}

/** The canonical header data for h=: for each name, the bottom-most field of it not used yet; a name with none left adds nothing. */
function canonicalSignedFields(fields: readonly HeaderField[], names: readonly string[]): string {
  const used = new Set<number>();
  let data = '';
  for (const name of names) {
    const key = name.toLowerCase();
    for (let i = fields.length - 1; i >= 0; i--) {
      const field = fields[i] as HeaderField;
      if (field.key !== key || used.has(i)) continue;
      used.add(i);
      data += relaxedHeader(field.key, field.value);
      break;
    }
  }
  return data;
}

/** A tag value cut into pieces a fold may go between (FWS is allowed inside h= and b=, RFC 6376 3.5). */
function pieces(value: string, size: number): string[] {
  const out: string[] = [];
  for (let at = 0; at < value.length; at += size) out.push(value.slice(at, at + size));
  return out;
}

/** h= cut after colons into pieces of at most `size` characters (one name longer than that stays whole), for folding. */
function atColons(tag: string, size: number): string[] {
  const out: string[] = [];
  let piece = '';
  for (const part of tag.split(/(?<=:)/)) {
    if (piece !== '' && piece.length + part.length > size) {
      out.push(piece);
      piece = '';
    }
    piece += part;
  }
  if (piece !== '') out.push(piece);
  return out;
}

/** Words joined by a space, folded (CRLF SP) before a word that would take the line past 76 characters; the first line already holds `firstLineStart`. */
function folded(words: readonly string[], firstLineStart: number): string {
  let text = '';
  let lineLength = firstLineStart;
  for (const word of words) {
    if (text === '') {
      text = word;
      lineLength += word.length;
    } else if (lineLength + 1 + word.length > 76) {
      text += `\r\n ${word}`;
      lineLength = 1 + word.length;
    } else {
      text += ` ${word}`;
      lineLength += 1 + word.length;
    }
  }
  return text;
}

/**
 * DKIM-Signature fields (each ending in CRLF), one per key, for a CRLF message: relaxed/relaxed,
 * SHA-256, the body hash computed once for all. RSA signs with PKCS#1 v1.5 over the SHA-256 of
 * the header data; Ed25519 signs that SHA-256 digest with PureEdDSA (RFC 8463 3), as dkimpy and
 * OpenDKIM verify it. RSA signs on libuv's thread pool (crypto.sign with a callback), off the
 * delivery thread's event loop.
 */
export async function dkimSignatureFields(message: MessageParts, keys: readonly SigningKey[], signedAt: Date): Promise<string[]> {
  if (keys.length === 0) return [];
  const bodyHash = createHash('sha256').update(relaxedBody(message.body)).digest('base64');
  const names = signedFieldNames(message.fields);
  const signedData = canonicalSignedFields(message.fields, names);
  const time = Math.floor(signedAt.getTime() / 1000);
  return Promise.all(
    keys.map(async (key) => {
      const algorithm = key.algorithm === 'ed25519' ? 'ed25519-sha256' : 'rsa-sha256';
      const unsigned = `DKIM-Signature: ${folded([
        'v=1;',
        `a=${algorithm};`,
        'c=relaxed/relaxed;',
        `d=${key.domain};`,
        `s=${key.selector};`,
        `t=${time};`,
        ...atColons(`h=${names.join(':')};`, 70),
        `bh=${bodyHash};`,
      ], 'DKIM-Signature: '.length)}\r\n b=`;
      const colon = unsigned.indexOf(':');
      // The signature field itself is hashed last, relaxed, with b= empty and without its CRLF (RFC 6376 3.7).
      const ownField = relaxedHeader('dkim-signature', unsigned.slice(colon + 1)).slice(0, -2);
      const data = Buffer.from(signedData + ownField, 'latin1');
      // Ed25519 signs in about 35 µs, less than a trip to the thread pool costs; RSA-2048 takes
      // about 0.3 ms, which the pool takes off the event loop.
      const signature =
        key.algorithm === 'ed25519' ? sign(null, createHash('sha256').update(data).digest(), key.privateKey) : await signAsync('sha256', data, key.privateKey);
      return `${unsigned}${pieces(signature.toString('base64'), 72)
        .map((piece, i) => (i === 0 ? piece : `\r\n ${piece}`))
        .join('')}\r\n`;
    }),
  );
}
