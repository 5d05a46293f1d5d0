import type { Database, Statement } from 'better-sqlite3';
import { domainToASCII } from 'node:url';
import { normalizeAddress } from '../address.js';
import type { Classification } from '../bounces/classifier.js';
import { isStoreShared, queueSharedChange } from '../store/shared-outbox.js';
import { writeTransaction } from '../store/write-lock.js';
import type { ListChange } from './list-change.js';

export const SUPPRESSION_TYPES = ['bounces', 'complaints', 'unsubscribes'] as const;
export type SuppressionType = (typeof SUPPRESSION_TYPES)[number];
export type SuppressionSource = 'immediate' | 'delayed' | 'manual' | 'import' | 'unsubscribe';

export interface SuppressionEntry {
  address: string;
  type: SuppressionType;
  source: SuppressionSource;
  category: string | null;
  code: number | null;
  enhancedCode: string | null;
  text: string | null;
  reason: string | null;
  queueId: string | null;
  firstAt: string;
  lastAt: string;
  count: number;
}

export interface AllowlistEntry {
  value: string;
  kind: 'address' | 'domain';
  reason: string | null;
  createdAt: string;
  createdBy: string;
}

export interface AuditEntry {
  at: string;
  action: 'add' | 'remove';
  list: string;
  address: string;
  actor: string;
  reason: string | null;
}

export interface Evidence {
  code?: number | null;
  enhancedCode?: string | null;
  text?: string | null;
  category?: string | null;
}

export interface AddSuppression {
  address: string;
  type: SuppressionType;
  source: SuppressionSource;
  evidence?: Evidence | Classification;
  reason?: string | null;
  queueId?: string | null;
  at?: string;
  /** Who asked: `relay` for bounces and complaints, `cli`, `api:<token name>`, `import`. */
  actor: string;
}

export class SuppressionInputError extends Error {
  override name = 'SuppressionInputError';
}

const COLUMNS = `address, type, source, category, code, enhanced_code AS enhancedCode, text, reason, queue_id AS queueId,
                 first_at AS firstAt, last_at AS lastAt, count`;

/** Normalises an address the one way Rebound stores it, or throws a message naming it. */
export function addressOrThrow(input: string): string {
  const normalized = normalizeAddress(input.trim());
  if (!normalized) throw new SuppressionInputError(`"${input}" is not an email address (local@domain)`);
  return normalized.address;
}

const DOMAIN_SYNTAX = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

/** A domain as the allowlist and the searches hold it (lower case, punycode, no final dot), or null. */
export function domainOrNull(input: string): string | null {
  const domain = domainToASCII(input.trim().toLowerCase().replace(/\.$/, ''));
  return DOMAIN_SYNTAX.test(domain) ? domain : null;
}

/** An allowlist value: an address (normalised) or a domain; anything else throws a message naming it. */
export function allowValueOrThrow(value: string): string {
  if (value.includes('@')) return addressOrThrow(value);
  const domain = domainOrNull(value);
  if (domain === null) throw new SuppressionInputError(`"${value}" is neither an email address (local@domain) nor a domain`);
  return domain;
}

/** `LIKE` text matching `text` anywhere, its own wildcards taken literally (ESCAPE with a backslash). */
function likeContaining(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** `LIKE` text matching every address at this domain (and none at a subdomain or a longer name). */
function likeAtDomain(domain: string): string {
  return `%@${domain.replace(/[\\%_]/g, (c) => `\\${c}`)}`;
}

/** Which entries a listing shows: every one, those containing a text, or those at one domain. */
export interface ListFilter {
  /** Addresses that contain this text (case-insensitive for ASCII). */
  search?: string;
  /** Addresses at exactly this domain (as domainOrNull gives it); on the allowlist, also the domain's own entry. */
  domain?: string;
}

/**
 * The suppression lists (bounces, complaints, unsubscribes) and the allowlist that overrides
 * them. Mail to a suppressed address is dropped before it is sent; only an operator removes an
 * entry; every add and removal is written to suppression_audit in the same transaction.
 */
export class SuppressionLists {
  private readonly find: Statement;
  private readonly allowed: Statement;
  private readonly upsert: Statement;
  private readonly audit: Statement;
  private readonly deleteOne: Statement;
  private readonly deleteAll: Statement;
  private readonly typesOf: Statement;
  private readonly byAddress: Statement;
  private readonly auditOf: Statement;
  private readonly allowInsert: Statement;
  private readonly allowDelete: Statement;
  private readonly allowOne: Statement;
  private readonly allowExact: Statement;
  private readonly addInTransaction: (entries: readonly AddSuppression[]) => void;
  private readonly entryOf: Statement;
  private readonly replace: Statement;
  /**
   * Whether changes are also queued for the shared store (store.shared.url): the relay says so in
   * the store's settings at start, so the CLI's changes are shipped too, by the running relay.
   */
  private readonly shared: boolean;

  constructor(private readonly db: Database) {
    this.find = db.prepare('SELECT type FROM suppressions WHERE address = ? ORDER BY id LIMIT 1');
    this.allowed = db.prepare(`SELECT 1 FROM allowlist WHERE value = ? OR (kind = 'domain' AND value = ?) LIMIT 1`);
    // A repeat keeps the first time and counts; the evidence is the latest.
    this.upsert = db.prepare(`
      INSERT INTO suppressions (address, type, source, code, enhanced_code, text, category, reason, queue_id, first_at, last_at, count)
      VALUES (@address, @type, @source, @code, @enhancedCode, @text, @category, @reason, @queueId, @at, @at, 1)
      ON CONFLICT (address, type) DO UPDATE SET
        source = excluded.source, code = excluded.code, enhanced_code = excluded.enhanced_code, text = excluded.text,
        category = excluded.category, reason = coalesce(excluded.reason, reason), queue_id = coalesce(excluded.queue_id, queue_id),
        last_at = excluded.last_at, count = count + 1`);
    this.audit = db.prepare('INSERT INTO suppression_audit (at, action, list, address, actor, reason) VALUES (?, ?, ?, ?, ?, ?)');
    this.deleteOne = db.prepare('DELETE FROM suppressions WHERE address = ? AND type = ?');
    this.deleteAll = db.prepare('DELETE FROM suppressions WHERE address = ?');
    this.typesOf = db.prepare('SELECT type FROM suppressions WHERE address = ?');
    this.byAddress = db.prepare(`SELECT ${COLUMNS} FROM suppressions WHERE address = ? ORDER BY type`);
    this.auditOf = db.prepare('SELECT at, action, list, address, actor, reason FROM suppression_audit WHERE address = ? ORDER BY id');
    this.allowInsert = db.prepare(`
      INSERT INTO allowlist (value, kind, reason, created_at, created_by) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (value) DO UPDATE SET reason = excluded.reason`);
    this.allowDelete = db.prepare('DELETE FROM allowlist WHERE value = ?');
    this.allowOne = db.prepare(`SELECT value, kind, reason, created_at AS createdAt, created_by AS createdBy FROM allowlist WHERE value = ? OR (kind = 'domain' AND value = ?)`);
    this.allowExact = db.prepare(`SELECT value, kind, reason, created_at AS createdAt, created_by AS createdBy FROM allowlist WHERE value = ?`);
    this.addInTransaction = writeTransaction(db, (entries: readonly AddSuppression[]) => {
      for (const entry of entries) this.add(entry);
    });
    this.entryOf = db.prepare(`SELECT ${COLUMNS} FROM suppressions WHERE address = ? AND type = ?`);
    // Another node's entry as it is now there: every column, count and times included.
    this.replace = db.prepare(`
      INSERT INTO suppressions (address, type, source, code, enhanced_code, text, category, reason, queue_id, first_at, last_at, count)
      VALUES (@address, @type, @source, @code, @enhancedCode, @text, @category, @reason, @queueId, @firstAt, @lastAt, @count)
      ON CONFLICT (address, type) DO UPDATE SET
        source = excluded.source, code = excluded.code, enhanced_code = excluded.enhanced_code, text = excluded.text,
        category = excluded.category, reason = excluded.reason, queue_id = excluded.queue_id,
        first_at = excluded.first_at, last_at = excluded.last_at, count = excluded.count`);
    this.shared = isStoreShared(db);
  }

  /** The list an address is on, if any and not allowlisted: mail to it is not sent. */
  suppressionFor(address: string): SuppressionType | null {
    const row = this.find.get(address) as { type: SuppressionType } | undefined;
    if (!row) return null;
    return this.allowed.get(address, domainOf(address)) ? null : row.type;
  }

  /** Adds (or refreshes) an entry, with its audit row. Call inside the caller's transaction. */
  add(entry: AddSuppression): void {
    const at = entry.at ?? new Date().toISOString();
    const evidence = entry.evidence ?? {};
    this.upsert.run({
      address: entry.address,
      type: entry.type,
      source: entry.source,
      code: evidence.code ?? null,
      enhancedCode: evidence.enhancedCode ?? null,
      text: evidence.text ?? null,
      category: evidence.category ?? null,
      reason: entry.reason ?? null,
      queueId: entry.queueId ?? null,
      at,
    });
    const why = entry.reason ?? ([entry.source, evidence.code, evidence.enhancedCode, evidence.category].filter((part) => part !== null && part !== undefined).join(' ') || null);
    this.audit.run(at, 'add', entry.type, entry.address, entry.actor, why);
    if (this.shared) this.queueChange({ kind: 'suppress', entry: this.entryOf.get(entry.address, entry.type) as SuppressionEntry, actor: entry.actor, why }, at);
  }

  /** Adds (or refreshes) entries, with their audit rows, in one write transaction of its own. */
  addAll(entries: readonly AddSuppression[]): void {
    if (entries.length > 0) this.addInTransaction(entries);
  }

  /** Removes an address from one list, or from all; returns the lists it was removed from. */
  remove(address: string, type: SuppressionType | undefined, actor: string, reason: string | null): SuppressionType[] {
    return writeTransaction(this.db, () => {
      const on = (this.typesOf.all(address) as Array<{ type: SuppressionType }>).map((row) => row.type).filter((t) => type === undefined || t === type);
      if (type === undefined) this.deleteAll.run(address);
      else this.deleteOne.run(address, type);
      const at = new Date().toISOString();
      for (const list of on) {
        this.audit.run(at, 'remove', list, address, actor, reason);
        if (this.shared) this.queueChange({ kind: 'unsuppress', address, type: list, actor, reason }, at);
      }
      return on;
    })();
  }

  entriesFor(address: string): SuppressionEntry[] {
    return this.byAddress.all(address) as SuppressionEntry[];
  }

  auditFor(address: string): AuditEntry[] {
    return this.auditOf.all(address) as AuditEntry[];
  }

  allowlistFor(address: string): AllowlistEntry[] {
    return this.allowOne.all(address, domainOf(address)) as AllowlistEntry[];
  }

  /** A page of entries, newest first, and how many match in all. */
  list(options: { type?: SuppressionType; limit: number; offset?: number } & ListFilter): { total: number; entries: SuppressionEntry[] } {
    const where: string[] = [];
    const params: Array<string | number> = [];
    if (options.type) {
      where.push('type = ?');
      params.push(options.type);
    }
    if (options.search) {
      where.push("address LIKE ? ESCAPE '\\'");
      params.push(likeContaining(options.search));
    }
    if (options.domain) {
      where.push("address LIKE ? ESCAPE '\\'");
      params.push(likeAtDomain(options.domain));
    }
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const { n } = this.db.prepare(`SELECT count(*) AS n FROM suppressions ${clause}`).get(...params) as { n: number };
    const entries = this.db
      .prepare(`SELECT ${COLUMNS} FROM suppressions ${clause} ORDER BY last_at DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...params, options.limit, options.offset ?? 0) as SuppressionEntry[];
    return { total: n, entries };
  }

  /** The allowlist entry for exactly this value (an address or a domain, as allowValueOrThrow gives it); a domain's entry does not cover its addresses here. */
  allowlistEntry(value: string): AllowlistEntry | undefined {
    return this.allowExact.get(value) as AllowlistEntry | undefined;
  }

  /** A page of the allowlist, newest first, and how many entries match in all. */
  allowlist(options: { limit: number; offset?: number } & ListFilter): { total: number; entries: AllowlistEntry[] } {
    const where: string[] = [];
    const params: string[] = [];
    if (options.search) {
      where.push("value LIKE ? ESCAPE '\\'");
      params.push(likeContaining(options.search));
    }
    if (options.domain) {
      where.push("(value = ? OR value LIKE ? ESCAPE '\\')");
      params.push(options.domain, likeAtDomain(options.domain));
    }
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const { n } = this.db.prepare(`SELECT count(*) AS n FROM allowlist ${clause}`).get(...params) as { n: number };
    const entries = this.db
      .prepare(`SELECT value, kind, reason, created_at AS createdAt, created_by AS createdBy FROM allowlist ${clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...params, options.limit, options.offset ?? 0) as AllowlistEntry[];
    return { total: n, entries };
  }

  /** Allowlists an address or a whole domain: mail to it is sent even when it is suppressed. */
  allow(value: string, actor: string, reason: string | null): AllowlistEntry {
    const isDomain = !value.includes('@');
    const normalized = allowValueOrThrow(value);
    const at = new Date().toISOString();
    writeTransaction(this.db, () => {
      this.allowInsert.run(normalized, isDomain ? 'domain' : 'address', reason, at, actor);
      this.audit.run(at, 'add', 'allowlist', normalized, actor, reason);
      if (this.shared) this.queueChange({ kind: 'allow', entry: this.allowOne.get(normalized, normalized) as AllowlistEntry }, at);
    })();
    return { value: normalized, kind: isDomain ? 'domain' : 'address', reason, createdAt: at, createdBy: actor };
  }

  /** Takes an address or a domain off the allowlist; false when it was not on it. */
  disallow(value: string, actor: string, reason: string | null): boolean {
    const normalized = allowValueOrThrow(value);
    return writeTransaction(this.db, () => {
      const removed = this.allowDelete.run(normalized).changes > 0;
      const at = new Date().toISOString();
      if (removed) this.audit.run(at, 'remove', 'allowlist', normalized, actor, reason);
      if (removed && this.shared) this.queueChange({ kind: 'disallow', value: normalized, actor, reason }, at);
      return removed;
    })();
  }

  /**
   * Applies a change from the shared store's log, in its order, without queueing it again; a
   * node's own changes come back too (so every node ends in the log's order) and are not audited
   * twice: `audited` is false for them. Call inside the caller's transaction.
   */
  applyShared(change: ListChange, node: string, at: string, audited: boolean): void {
    const audit = (action: 'add' | 'remove', list: string, address: string, actor: string, reason: string | null): void => {
      if (audited) this.audit.run(at, action, list, address, `${actor} on ${node}`, reason);
    };
    if (change.kind === 'suppress') {
      this.replace.run(change.entry);
      audit('add', change.entry.type, change.entry.address, change.actor, change.why);
    } else if (change.kind === 'unsuppress') {
      if (this.deleteOne.run(change.address, change.type).changes > 0) audit('remove', change.type, change.address, change.actor, change.reason);
    } else if (change.kind === 'allow') {
      const { entry } = change;
      this.allowInsert.run(entry.value, entry.kind, entry.reason, entry.createdAt, entry.createdBy);
      audit('add', 'allowlist', entry.value, entry.createdBy, entry.reason);
    } else if (this.allowDelete.run(change.value).changes > 0) {
      audit('remove', 'allowlist', change.value, change.actor, change.reason);
    }
  }

  /**
   * Every entry of the lists and the allowlist as changes, for the shared store when a node
   * joins it: what it knew before is shared too. Queued in one transaction of its own.
   */
  queueEverything(): number {
    return writeTransaction(this.db, () => {
      const at = new Date().toISOString();
      const entries = this.db.prepare(`SELECT ${COLUMNS} FROM suppressions ORDER BY id`).all() as SuppressionEntry[];
      for (const entry of entries) this.queueChange({ kind: 'suppress', entry, actor: 'join', why: 'on this node before it joined the shared store' }, at);
      const allowed = this.db.prepare('SELECT value, kind, reason, created_at AS createdAt, created_by AS createdBy FROM allowlist ORDER BY id').all() as AllowlistEntry[];
      for (const entry of allowed) this.queueChange({ kind: 'allow', entry }, at);
      return entries.length + allowed.length;
    })();
  }

  private queueChange(change: ListChange, at: string): void {
    queueSharedChange(this.db, change, at);
  }
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}
