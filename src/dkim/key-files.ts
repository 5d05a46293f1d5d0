import { readFileSync, statSync } from 'node:fs';
import type { DkimConfig } from '../config/schema.js';
import { OperatorError } from '../errors.js';
import { algorithmOfKey, privateKeyFromPem } from './key-pair.js';
import { selectorOrThrow, signingDomainOrThrow } from './names.js';
import type { SigningKey } from './signature.js';

/** A dkim.keys entry that cannot sign: printed like a configuration error (exit code 2). */
export class DkimKeyFileError extends OperatorError {
  override name = 'DkimKeyFileError';
}

/** A key named in dkim.keys, read from its file. */
export interface FileKey extends SigningKey {
  file: string;
  /** The file's mtime when read: a change is read again at the next reload. */
  mtimeMs: number;
}

/** Reads one dkim.keys entry; the error names the entry and never quotes the file's contents. */
export function readKeyFile(entry: DkimConfig['keys'][number], index: number): FileKey {
  const where = `dkim.keys[${index}]`;
  let domain: string;
  let selector: string;
  try {
    domain = signingDomainOrThrow(entry.domain);
    selector = selectorOrThrow(entry.selector, domain);
  } catch (error) {
    throw new DkimKeyFileError(`invalid configuration:\n  ${where}: ${(error as Error).message}`);
  }
  let pem: string;
  let mtimeMs: number;
  try {
    mtimeMs = statSync(entry.privateKeyFile).mtimeMs;
    pem = readFileSync(entry.privateKeyFile, 'utf8');
  } catch (error) {
    throw new DkimKeyFileError(`invalid configuration:\n  ${where}.privateKeyFile: cannot read ${entry.privateKeyFile} (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  let privateKey;
  try {
    privateKey = privateKeyFromPem(pem);
  } catch (error) {
    throw new DkimKeyFileError(`invalid configuration:\n  ${where}.privateKeyFile: ${entry.privateKeyFile} is ${(error as Error).message}; give an RSA-2048 or Ed25519 key in PEM`);
  }
  const algorithm = algorithmOfKey(privateKey);
  if (!algorithm) {
    throw new DkimKeyFileError(
      `invalid configuration:\n  ${where}.privateKeyFile: ${entry.privateKeyFile} holds a key of type ${privateKey.asymmetricKeyType ?? 'unknown'}${privateKey.asymmetricKeyDetails?.modulusLength ? ` and ${privateKey.asymmetricKeyDetails.modulusLength} bits` : ''}; DKIM here signs with RSA-2048 or Ed25519 (make one with rebound dkim add, or openssl genpkey -algorithm ed25519)`,
    );
  }
  return { domain, selector, algorithm, privateKey, file: entry.privateKeyFile, mtimeMs };
}

/** Every dkim.keys entry read; at start, so a bad entry stops the relay with exit code 2 and the entry named. */
export function readKeyFiles(settings: DkimConfig): FileKey[] {
  return settings.keys.map((entry, index) => readKeyFile(entry, index));
}

/** The entry's file changed since `key` was read (or cannot be looked at now). */
export function keyFileChanged(key: FileKey): boolean {
  try {
    return statSync(key.file).mtimeMs !== key.mtimeMs;
  } catch {
    return true;
  }
}
