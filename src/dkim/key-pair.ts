import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';

/** The key kinds Rebound makes: RSA-SHA256 (RFC 6376) and Ed25519-SHA256 (RFC 8463). */
export const DKIM_ALGORITHMS = ['rsa-2048', 'ed25519'] as const;
export type DkimAlgorithm = (typeof DKIM_ALGORITHMS)[number];

export interface DkimKeyPair {
  algorithm: DkimAlgorithm;
  /** PKCS#8 PEM. Kept in the store; never logged, printed or returned by an API. */
  privateKeyPem: string;
  /** The p= value of the DNS record. */
  publicKey: string;
}

const generate = promisify(generateKeyPair);

/** A fresh key pair from node:crypto (OpenSSL). RSA at 2048 bits: what Gmail and Yahoo ask of bulk senders, and what fits a TXT record. */
export async function newKeyPair(algorithm: DkimAlgorithm): Promise<DkimKeyPair> {
  const pair = algorithm === 'ed25519' ? await generate('ed25519') : await generate('rsa', { modulusLength: 2048 });
  return { algorithm, privateKeyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicKey: publicKeyValue(pair.publicKey) };
}

/**
 * p= of the record: for RSA the DER SubjectPublicKeyInfo in base64 (RFC 6376 3.6.1); for
 * Ed25519 the bare 32-byte key in base64 (RFC 8463 4.2), which is the SPKI without its 12-byte
 * algorithm prefix.
 */
export function publicKeyValue(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return publicKey.asymmetricKeyType === 'ed25519' ? der.subarray(der.length - 32).toString('base64') : der.toString('base64');
}

/** The algorithm of a PEM private key that can sign DKIM, or null (a P-256 key, RSA of another size, not a key). */
export function algorithmOfKey(key: KeyObject): DkimAlgorithm | null {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'rsa' && key.asymmetricKeyDetails?.modulusLength === 2048) return 'rsa-2048';
  return null;
}

/** Reads a PEM private key (PKCS#8 or PKCS#1); the error never quotes the key. */
export function privateKeyFromPem(pem: string): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (error) {
    throw new Error(`not a PEM private key (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}

export function publicKeyValueOfPrivate(key: KeyObject): string {
  return publicKeyValue(createPublicKey(key));
}

/** The TXT record a domain publishes for a key: where, and its text. */
export interface DkimRecord {
  /** selector._domainkey.domain */
  name: string;
  /** The record's text as one string: what a resolver gives back. */
  text: string;
  /** The text cut in strings of at most 255 bytes (RFC 1035 3.3.14), for a zone file or a DNS panel that wants them apart. */
  strings: string[];
  /** `NAME TXT "..." "..."`: the line `rebound dkim add` prints. */
  line: string;
}

const TXT_STRING_MAX = 255;

export function dkimRecord(domain: string, selector: string, algorithm: DkimAlgorithm, publicKey: string): DkimRecord {
  const name = `${selector}._domainkey.${domain}`;
  const text = `v=DKIM1; k=${algorithm === 'ed25519' ? 'ed25519' : 'rsa'}; p=${publicKey}`;
  const strings: string[] = [];
  for (let at = 0; at < text.length; at += TXT_STRING_MAX) strings.push(text.slice(at, at + TXT_STRING_MAX));
  return { name, text, strings, line: `${name} TXT ${strings.map((s) => `"${s}"`).join(' ')}` };
}
