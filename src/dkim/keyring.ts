import type { Database, Statement } from 'better-sqlite3';
import type { KeyObject } from 'node:crypto';
import type { DkimConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { keyFileChanged, readKeyFile, readKeyFiles, type FileKey } from './key-files.js';
import { algorithmOfKey, privateKeyFromPem, type DkimAlgorithm } from './key-pair.js';
import { signingDomainCandidates } from './names.js';
import type { SigningKey } from './signature.js';

interface ActiveRow {
  id: number;
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  publicKey: string;
}

/**
 * The keys delivery signs with, in memory: the store's active keys and the dkim.keys files,
 * parsed once. `rebound dkim` writes the store while the relay runs, so every
 * dkim.reloadSeconds (at the next message after that) the active rows are listed again (a few
 * rows, no private key read) and only a changed list is parsed anew; a key file whose mtime
 * changed is read again. A file key wins over a store key of the same domain and algorithm.
 */
export class DkimKeyring {
  private byDomain = new Map<string, SigningKey[]>();
  /** Parsed store keys by id and public key (an id can come back after a remove). */
  private parsed = new Map<string, KeyObject>();
  private fingerprint: string | null = null;
  private nextCheckAt = 0;
  private fileKeys: FileKey[];
  private readonly activeRows: Statement;
  private readonly privateKeyOf: Statement;

  constructor(
    db: Database,
    private readonly settings: DkimConfig,
    private readonly log: Logger,
  ) {
    this.activeRows = db.prepare(`SELECT id, domain, selector, algorithm, public_key AS publicKey FROM dkim_keys WHERE state = 'active' ORDER BY id`);
    this.privateKeyOf = db.prepare('SELECT private_key FROM dkim_keys WHERE id = ?').pluck();
    this.fileKeys = readKeyFiles(settings);
    this.refresh(Date.now());
  }

  /** No key at all: delivery skips signing without looking at the message. */
  isEmpty(now = Date.now()): boolean {
    if (now >= this.nextCheckAt) this.refresh(now);
    return this.byDomain.size === 0;
  }

  /** The keys for mail from this domain: its own, else those of its nearest parent that has any (see signingDomainCandidates). */
  keysFor(fromDomain: string, now = Date.now()): SigningKey[] {
    if (now >= this.nextCheckAt) this.refresh(now);
    for (const candidate of signingDomainCandidates(fromDomain)) {
      const keys = this.byDomain.get(candidate);
      if (keys) return keys;
    }
    return [];
  }

  private refresh(now: number): void {
    this.nextCheckAt = now + this.settings.reloadSeconds * 1000;
    let rows: ActiveRow[];
    try {
      rows = this.activeRows.all() as ActiveRow[];
    } catch (error) {
      this.log.error({ err: error }, 'could not read the DKIM keys from the store; signing on with the keys read before');
      return;
    }
    const filesChanged = this.rereadChangedFiles();
    const fingerprint = rows.map((row) => `${row.id}:${row.publicKey}`).join(',');
    if (fingerprint === this.fingerprint && !filesChanged) return;
    this.fingerprint = fingerprint;

    const byDomain = new Map<string, SigningKey[]>();
    const parsed = new Map<string, KeyObject>();
    const add = (key: SigningKey): void => {
      const keys = byDomain.get(key.domain) ?? [];
      byDomain.set(key.domain, [...keys.filter((other) => other.algorithm !== key.algorithm), key]);
    };
    for (const row of rows) {
      const id = `${row.id}:${row.publicKey}`;
      let privateKey = this.parsed.get(id);
      try {
        privateKey ??= privateKeyFromPem(this.privateKeyOf.get(row.id) as string);
      } catch (error) {
        this.log.error({ domain: row.domain, selector: row.selector, err: error }, 'a stored DKIM key cannot be read; mail for its domain goes out without it');
        continue;
      }
      if (algorithmOfKey(privateKey) !== row.algorithm) {
        this.log.error({ domain: row.domain, selector: row.selector, algorithm: row.algorithm }, 'a stored DKIM key is not of its algorithm; mail for its domain goes out without it');
        continue;
      }
      parsed.set(id, privateKey);
      add({ domain: row.domain, selector: row.selector, algorithm: row.algorithm, privateKey });
    }
    for (const key of this.fileKeys) {
      const replaced = byDomain.get(key.domain)?.find((other) => other.algorithm === key.algorithm);
      if (replaced) this.log.warn({ domain: key.domain, file: key.file, storeSelector: replaced.selector, fileSelector: key.selector }, 'dkim.keys names a key for a domain and algorithm the store has an active key for; the file key signs');
      add(key);
    }
    this.parsed = parsed;
    this.byDomain = byDomain;
    const keys = [...byDomain.values()].flat().map(({ domain, selector, algorithm }) => ({ domain, selector, algorithm }));
    this.log.info({ keys }, keys.length === 0 ? 'no DKIM keys: relayed mail is not signed' : 'DKIM keys loaded');
  }

  /** Reads again the key files whose mtime changed; a file that cannot be read now keeps its old key. */
  private rereadChangedFiles(): boolean {
    let changed = false;
    this.fileKeys = this.fileKeys.map((key, index) => {
      if (!keyFileChanged(key)) return key;
      const entry = this.settings.keys[index];
      if (!entry) return key;
      try {
        const reread = readKeyFile(entry, index);
        changed = true;
        return reread;
      } catch (error) {
        // Tried again at every reload until it reads (NaN equals no mtime).
        this.log.error({ file: key.file, err: error }, 'a changed DKIM key file cannot be read; signing on with the key read before');
        return { ...key, mtimeMs: Number.NaN };
      }
    });
    return changed;
  }
}
