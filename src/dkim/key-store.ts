import type { Database } from 'better-sqlite3';
import { isStoreShared, queueSharedChange } from '../store/shared-outbox.js';
import { writeTransaction } from '../store/write-lock.js';
import type { DkimKeysChange, SharedDkimKey } from './key-change.js';
import { dkimRecord, newKeyPair, type DkimAlgorithm, type DkimRecord } from './key-pair.js';
import { DkimInputError } from './names.js';

export type DkimKeyState = 'active' | 'pending' | 'retired';

/** A key as the CLI shows it: everything but the private key, which no reader of this gets. */
export interface DkimKeyInfo {
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  state: DkimKeyState;
  createdAt: string;
  activatedAt: string | null;
  retiredAt: string | null;
  record: DkimRecord;
}

interface KeyRow {
  id: number;
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  publicKey: string;
  state: DkimKeyState;
  createdAt: string;
  activatedAt: string | null;
  retiredAt: string | null;
}

const COLUMNS = `id, domain, selector, algorithm, public_key AS publicKey, state, created_at AS createdAt,
                 activated_at AS activatedAt, retired_at AS retiredAt`;

function info(row: KeyRow): DkimKeyInfo {
  const { domain, selector, algorithm, state, createdAt, activatedAt, retiredAt } = row;
  return { domain, selector, algorithm, state, createdAt, activatedAt, retiredAt, record: dkimRecord(domain, selector, algorithm, row.publicKey) };
}

/** The default selector: "rb" and the year and month (rb202612), "ed" after it for Ed25519, then -2, -3 … while taken. */
export function defaultSelector(taken: ReadonlySet<string>, algorithm: DkimAlgorithm, now: Date): string {
  const base = `rb${now.toISOString().slice(0, 7).replace('-', '')}${algorithm === 'ed25519' ? 'ed' : ''}`;
  if (!taken.has(base)) return base;
  for (let n = 2; n <= 100; n++) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
  throw new DkimInputError(`every default selector from ${base} to ${base}-100 is taken; give one with --selector`);
}

/**
 * The dkim_keys table: what the dkim commands change. Keys move pending → active → retired;
 * `add` makes a domain's first key of an algorithm active at once, `rotate` makes a pending one
 * that `activate` switches to once its record is in DNS (the key it replaces is retired, still
 * published until `remove`).
 */
export class DkimKeyStore {
  /** Whether changes are also queued for the shared store (store.shared.url; see store/shared-outbox.ts). */
  private readonly shared: boolean;

  constructor(private readonly db: Database) {
    this.shared = isStoreShared(db);
  }

  list(domain?: string): DkimKeyInfo[] {
    const rows = domain
      ? this.db.prepare(`SELECT ${COLUMNS} FROM dkim_keys WHERE domain = ? ORDER BY id`).all(domain)
      : this.db.prepare(`SELECT ${COLUMNS} FROM dkim_keys ORDER BY domain, id`).all();
    return (rows as KeyRow[]).map(info);
  }

  /** A new key that signs at once; refused when the domain already signs with that algorithm. */
  async add(domain: string, selector: string | null, algorithm: DkimAlgorithm, now = new Date()): Promise<DkimKeyInfo> {
    const active = this.rows(domain).find((row) => row.state === 'active' && row.algorithm === algorithm);
    if (active) {
      throw new DkimInputError(
        `${domain} already signs with an active ${algorithm} key (selector ${active.selector}); to replace it run: rebound dkim rotate ${domain}${algorithm === 'ed25519' ? ' --algorithm ed25519' : ''}`,
      );
    }
    return this.insert(domain, selector, algorithm, 'active', now);
  }

  /** A new key for the domain, pending until `activate`; the current one signs meanwhile. */
  async rotate(domain: string, selector: string | null, algorithm: DkimAlgorithm | null, now = new Date()): Promise<{ key: DkimKeyInfo; replaces: DkimKeyInfo | null }> {
    const rows = this.rows(domain);
    if (rows.length === 0) throw new DkimInputError(`${domain} has no DKIM key to rotate; add one: rebound dkim add ${domain}`);
    const activeAlgorithms = [...new Set(rows.filter((row) => row.state === 'active').map((row) => row.algorithm))];
    if (algorithm === null && activeAlgorithms.length > 1) {
      throw new DkimInputError(`${domain} signs with an rsa-2048 and an ed25519 key; say which to rotate: --algorithm rsa-2048 or --algorithm ed25519`);
    }
    const chosen = algorithm ?? activeAlgorithms[0] ?? (rows[rows.length - 1] as KeyRow).algorithm;
    const waiting = rows.find((row) => row.state === 'pending' && row.algorithm === chosen);
    if (waiting) {
      throw new DkimInputError(
        `${domain} already has a pending ${chosen} key (selector ${waiting.selector}); publish its record and run: rebound dkim activate ${domain} --selector ${waiting.selector} (or remove it: rebound dkim remove ${domain} --selector ${waiting.selector})`,
      );
    }
    const replaces = rows.find((row) => row.state === 'active' && row.algorithm === chosen);
    const key = await this.insert(domain, selector, chosen, 'pending', now);
    return { key, replaces: replaces ? info(replaces) : null };
  }

  /** Makes a pending (or retired) key the one that signs; the active key of its algorithm is retired. */
  activate(domain: string, selector: string, now = new Date()): { key: DkimKeyInfo; retired: DkimKeyInfo | null } {
    return writeTransaction(this.db, () => {
      const target = this.find(domain, selector);
      if (target.state === 'active') throw new DkimInputError(`${selector}._domainkey.${domain} is already the active ${target.algorithm} key`);
      const current = this.rows(domain).find((row) => row.state === 'active' && row.algorithm === target.algorithm);
      const at = now.toISOString();
      if (current) this.db.prepare(`UPDATE dkim_keys SET state = 'retired', retired_at = ? WHERE id = ?`).run(at, current.id);
      this.db.prepare(`UPDATE dkim_keys SET state = 'active', activated_at = ?, retired_at = NULL WHERE id = ?`).run(at, target.id);
      this.queueShared(domain, at);
      const retired = current ? info({ ...current, state: 'retired', retiredAt: at }) : null;
      return { key: info({ ...target, state: 'active', activatedAt: at, retiredAt: null }), retired };
    })();
  }

  /** Deletes one key; without a selector, the domain's only key. */
  remove(domain: string, selector: string | null): DkimKeyInfo {
    return writeTransaction(this.db, () => {
      let target: KeyRow;
      if (selector !== null) {
        target = this.find(domain, selector);
      } else {
        const rows = this.rows(domain);
        if (rows.length === 0) throw new DkimInputError(`${domain} has no DKIM key; rebound dkim list shows the domains that have one`);
        if (rows.length > 1) {
          throw new DkimInputError(`${domain} has ${rows.length} keys (${rows.map((row) => `${row.selector} ${row.state}`).join(', ')}); say which with --selector`);
        }
        target = rows[0] as KeyRow;
      }
      this.db.prepare('DELETE FROM dkim_keys WHERE id = ?').run(target.id);
      this.queueShared(domain, new Date().toISOString());
      return info(target);
    })();
  }

  /**
   * Another node's keys of a domain, as they are after its change: they replace this node's.
   * Call inside the caller's transaction; nothing is queued again.
   */
  applyShared(change: DkimKeysChange): void {
    this.db.prepare('DELETE FROM dkim_keys WHERE domain = ?').run(change.domain);
    const insert = this.db.prepare(
      `INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, state, created_at, activated_at, retired_at)
       VALUES (@domain, @selector, @algorithm, @privateKey, @publicKey, @state, @createdAt, @activatedAt, @retiredAt)`,
    );
    for (const key of change.keys) insert.run({ domain: change.domain, ...key });
  }

  /** Every domain's keys queued for the shared store, when a node joins it; returns how many domains. */
  queueEverything(): number {
    return writeTransaction(this.db, () => {
      const domains = this.db.prepare('SELECT DISTINCT domain FROM dkim_keys ORDER BY domain').pluck().all() as string[];
      const at = new Date().toISOString();
      for (const domain of domains) this.queueShared(domain, at);
      return domains.length;
    })();
  }

  /** The domain's keys as they now are, queued for the other nodes, in the change's transaction. */
  private queueShared(domain: string, at: string): void {
    if (!this.shared) return;
    const keys = this.db
      .prepare(
        `SELECT selector, algorithm, private_key AS privateKey, public_key AS publicKey, state, created_at AS createdAt,
                activated_at AS activatedAt, retired_at AS retiredAt
           FROM dkim_keys WHERE domain = ? ORDER BY id`,
      )
      .all(domain) as SharedDkimKey[];
    const change: DkimKeysChange = { kind: 'dkim-keys', domain, keys };
    queueSharedChange(this.db, change, at);
  }

  private rows(domain: string): KeyRow[] {
    return this.db.prepare(`SELECT ${COLUMNS} FROM dkim_keys WHERE domain = ? ORDER BY id`).all(domain) as KeyRow[];
  }

  private find(domain: string, selector: string): KeyRow {
    const rows = this.rows(domain);
    const row = rows.find((candidate) => candidate.selector === selector);
    if (row) return row;
    if (rows.length === 0) throw new DkimInputError(`${domain} has no DKIM key; rebound dkim list shows the domains that have one`);
    throw new DkimInputError(`${domain} has no key with selector ${selector}; its selectors: ${rows.map((r) => r.selector).join(', ')}`);
  }

  private async insert(domain: string, selector: string | null, algorithm: DkimAlgorithm, state: DkimKeyState, now: Date): Promise<DkimKeyInfo> {
    const taken = new Set(this.rows(domain).map((row) => row.selector));
    const chosen = selector ?? defaultSelector(taken, algorithm, now);
    if (taken.has(chosen)) {
      throw new DkimInputError(`${domain} already has a key with selector ${chosen}; pick another --selector, or remove that key first: rebound dkim remove ${domain} --selector ${chosen}`);
    }
    // Generated before the write transaction: RSA takes 50-500 ms, and the relay shares the lock.
    const pair = await newKeyPair(algorithm);
    const at = now.toISOString();
    const id = writeTransaction(this.db, () => {
      // Checked again inside the transaction: another `rebound dkim` may have run meanwhile.
      if (this.rows(domain).some((row) => row.selector === chosen)) throw new DkimInputError(`${domain} already has a key with selector ${chosen}; pick another --selector`);
      const id = this.db
        .prepare(
          `INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, state, created_at, activated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(domain, chosen, algorithm, pair.privateKeyPem, pair.publicKey, state, at, state === 'active' ? at : null).lastInsertRowid;
      this.queueShared(domain, at);
      return id;
    })();
    const row = this.db.prepare(`SELECT ${COLUMNS} FROM dkim_keys WHERE id = ?`).get(id) as KeyRow;
    return info(row);
  }
}
