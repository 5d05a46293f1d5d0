import type { Database, Statement } from 'better-sqlite3';
import pg from 'pg';
import type { Logger } from '../logger.js';
import { readSetting, storedSecret, writeSetting } from '../store/settings.js';
import { writeTransaction } from '../store/write-lock.js';
import { DkimKeyStore } from '../dkim/key-store.js';
import type { DkimKeysChange } from '../dkim/key-change.js';
import type { ListChange } from '../suppressions/list-change.js';
import { SHARED_SETTING } from '../store/shared-outbox.js';
import { SuppressionLists } from '../suppressions/lists.js';
import { appendInOrder, CHANGES_CHANNEL, claimNodeName, LOCKS, migrateShared, notifyOthers } from './postgres-schema.js';
import { redactUrl } from '../redact-url.js';
import { ForwardedReports, refreshKnownNodes, type ForwardedReportReceiver } from './forwarded-reports.js';
import { EventSync } from './event-sync.js';

/** What travels through the shared log: list changes and DKIM key sets. */
type SharedChange = ListChange | DkimKeysChange;

/** The shared store as /metrics shows it. */
export interface SharedStoreStatus {
  /** Connected, and the last round went through. */
  reachable: boolean;
  /** List changes made here and not yet in the shared log. */
  waiting: number;
  /** Events made here and not yet in the shared store. */
  eventsWaiting: number;
  /** Reports this node's MX took for other nodes' tokens, not yet shipped to the shared store (forward_outbox). */
  forwardWaiting: number;
  /** Since when it has been unreachable, or null. */
  downSince: string | null;
}

export interface ChangeSyncSettings {
  url: string;
  /** Who makes this node's changes, in the shared log and other nodes' audit. */
  nodeName: string;
  /** How often the shared log is read without a notification, and a lost connection retried. */
  catchUpMs: number;
  /** This node's tag in its return-path tokens (src/bounces/verp.ts nodeTagOf). */
  nodeTag: string;
  /** The key this node signs its unsubscribe links with (src/bounces/verp.ts linkKeyOf), published to the others. */
  linkKey: string | null;
  /**
   * store.retention.historyDays: this node's events leave the shared store after it, and so do the
   * reports forwarded to this node once it has taken them (its own store keeps them that long); 0: never.
   */
  historyDays: number;
}

/** How often the local outbox is looked at: a suppression made here reaches the others within about this. */
const SHIP_INTERVAL_MS = 250;
/** Rows shipped or applied per round trip. */
const BATCH = 500;
const CURSOR_SETTING = 'shared.changes.version';
/** This node's rows past the history horizon are purged from the shared store at most this often. */
const PURGE_EVERY_MS = 3_600_000;
const DAY_MS = 86_400_000;

/**
 * Marks the store as shared (or not) before any stage starts, so every SuppressionLists made
 * from now on, in this process, the delivery thread or the CLI, queues its changes for the
 * shared store. A store that joins for the first time queues what it already has.
 * Returns how many entries it queued.
 */
export function markStoreShared(db: Database, shared: boolean): number {
  const was = readSetting(db, SHARED_SETTING) === '1';
  if (was === shared) return 0;
  writeTransaction(db, () => writeSetting(db, SHARED_SETTING, shared ? '1' : '0'))();
  return shared ? new SuppressionLists(db).queueEverything() + new DkimKeyStore(db).queueEverything() : 0;
}

/**
 * Keeps this node's suppression lists, allowlist and DKIM keys in step with the other nodes' through
 * PostgreSQL (store.shared.url). Changes made here wait in the local `shared_outbox` (written in
 * the same SQLite transaction as the change) until they are appended to the shared log
 * `rebound_changes`; every node reads that log in order, its own changes included, into its
 * own tables, which stay the read cache delivery checks (no network on the delivery path).
 * NOTIFY wakes the other nodes at once; a catch-up read every catchUpMs covers a lost
 * notification. While PostgreSQL is down nothing is lost: the outbox grows and is shipped when
 * it is back, and the local lists keep working.
 */
export class ChangeSync {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  /** The round under way, if any: stop() waits for it, so nothing writes the store after. */
  private current: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** Since when the shared store has been unreachable (null: it is fine), for one log line per outage. */
  private downSince: string | null = null;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly lists: SuppressionLists;
  private readonly keys: DkimKeyStore;
  private readonly firstWaiting: Statement;
  private readonly outboxSize: Statement;
  private readonly waiting: Statement;
  private readonly shipped: Statement;
  private readonly applyBatch: (rows: Array<{ version: string; node: string; change: SharedChange }>) => void;
  /** This store's random id, so another store cannot sync under this node's name. */
  private readonly storeId: string;
  private readonly forwarded: ForwardedReports;
  private readonly events: EventSync;
  /** Where reports forwarded to this node go (the inbound stage); null: they wait in the shared store. */
  private receiver: ForwardedReportReceiver | null = null;
  /** When this node's old rows were last purged from the shared store (Date.now()), or null: not since the start. */
  private purgedAt: number | null = null;
  /** Changes shipped from here and applied here since the start; reports forwarded from and to here, and purged; events. */
  readonly stats = { shipped: 0, applied: 0, forwardedOut: 0, forwardedIn: 0, forwardedPurged: 0, eventsShipped: 0, eventsCopied: 0, eventsPurged: 0 };

  constructor(
    private readonly db: Database,
    private readonly settings: ChangeSyncSettings,
    private readonly log: Logger,
  ) {
    this.lists = new SuppressionLists(db);
    this.keys = new DkimKeyStore(db);
    this.storeId = storedSecret(db, 'shared.storeId', null);
    this.forwarded = new ForwardedReports(db, settings.nodeName);
    this.events = new EventSync(db, settings.nodeName);
    this.firstWaiting = db.prepare('SELECT id FROM shared_outbox ORDER BY id LIMIT 1').pluck();
    this.outboxSize = db.prepare('SELECT count(*) FROM shared_outbox').pluck();
    this.waiting = db.prepare('SELECT id, uid, at, change FROM shared_outbox ORDER BY id LIMIT ?');
    this.shipped = db.prepare('DELETE FROM shared_outbox WHERE id <= ?');
    this.applyBatch = writeTransaction(db, (rows: Array<{ version: string; node: string; change: SharedChange }>) => {
      const at = new Date().toISOString();
      for (const row of rows) {
        if (row.change.kind === 'dkim-keys') this.keys.applyShared(row.change);
        else this.lists.applyShared(row.change, row.node, at, row.node !== this.settings.nodeName);
      }
      const last = rows[rows.length - 1];
      if (last) writeSetting(db, CURSOR_SETTING, last.version);
    });
  }

  /** Takes the reports other nodes' MX forward to this node from now on (call before start). */
  receiveForwardedReports(receiver: ForwardedReportReceiver): void {
    this.receiver = receiver;
  }

  /** For /metrics: whether the last round reached the shared store, and the changes and forwarded reports waiting here. */
  status(): SharedStoreStatus {
    return {
      reachable: this.downSince === null && this.client !== null,
      waiting: this.outboxSize.get() as number,
      eventsWaiting: this.events.waitingCount(),
      forwardWaiting: this.forwarded.waitingCount(),
      downSince: this.downSince,
    };
  }

  /** Starts the timers and a first round; a shared store that is down now is retried, not fatal. */
  start(): void {
    const ship = setInterval(() => {
      if (this.firstWaiting.get() !== undefined || this.forwarded.waitingCount() > 0 || this.events.shipDue()) this.round();
    }, SHIP_INTERVAL_MS);
    const catchUp = setInterval(() => this.round(), this.settings.catchUpMs);
    ship.unref();
    catchUp.unref();
    this.timers.push(ship, catchUp);
    this.round();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    // A round under way finishes its statement; the client then ends.
    const client = this.client ?? (await this.connecting?.catch(() => null)) ?? null;
    this.client = null;
    await client?.end().catch(() => undefined);
    await this.current;
  }

  /** Ships what waits here, then reads what is new there; one round at a time, again if asked meanwhile. */
  round(): void {
    if (this.stopped) return;
    if (this.current) {
      this.again = true;
      return;
    }
    this.current = this.rounds().finally(() => {
      this.current = null;
    });
  }

  private async rounds(): Promise<void> {
    try {
      do {
        this.again = false;
        const client = await this.connected();
        // Each round renews the claim on the name (and finds out if another store took it).
        await claimNodeName(client, this.settings.nodeName, this.storeId, this.settings.nodeTag, this.settings.linkKey);
        await refreshKnownNodes(client, this.db);
        await this.ship(client);
        await this.pull(client);
        this.stats.forwardedOut += await this.forwarded.ship(client);
        if (this.receiver) this.stats.forwardedIn += await this.forwarded.pull(client, this.receiver);
        // Events after the list changes: a large backlog of events never holds a suppression back.
        const shipped = this.events.shipDue() ? await this.events.ship(client) : { shipped: 0, more: false };
        const copied = await this.events.pull(client);
        await this.purgeOld(client);
        this.stats.eventsShipped += shipped.shipped;
        this.stats.eventsCopied += copied.copied;
        if (shipped.more || copied.more) this.again = true;
      } while (this.again && !this.stopped);
      if (this.downSince) {
        this.log.info({ since: this.downSince, shared: redactUrl(this.settings.url) }, 'the shared store is reachable again; queued list changes shipped');
        this.downSince = null;
      }
    } catch (error) {
      if (this.stopped) return;
      this.dropClient();
      if (!this.downSince) {
        this.downSince = new Date().toISOString();
        this.log.error(
          { err: (error as Error).message, shared: redactUrl(this.settings.url), retryMs: this.settings.catchUpMs },
          'the shared store (store.shared.url) cannot be used: suppression changes made here wait in the local outbox and the lists here keep working; retrying',
        );
      }
    }
  }

  private async connected(): Promise<pg.Client> {
    if (this.client) return this.client;
    this.connecting ??= (async () => {
      const client = new pg.Client({ connectionString: this.settings.url, connectionTimeoutMillis: 5000, application_name: `rebound ${this.settings.nodeName}` });
      // A connection that breaks later is noticed here; the next round connects again.
      client.on('error', (error) => {
        this.log.warn({ err: error.message }, 'the connection to the shared store broke');
        if (this.client === client) this.dropClient();
      });
      client.on('notification', (message) => {
        if (message.payload !== this.settings.nodeName) this.round();
      });
      try {
        await client.connect();
        await migrateShared(client);
        await client.query(`LISTEN ${CHANGES_CHANNEL}`);
      } catch (error) {
        await client.end().catch(() => undefined);
        throw error;
      }
      this.log.info({ shared: redactUrl(this.settings.url), node: this.settings.nodeName }, 'connected to the shared store');
      return client;
    })().finally(() => {
      this.connecting = null;
    });
    this.client = await this.connecting;
    return this.client;
  }

  private dropClient(): void {
    const client = this.client;
    this.client = null;
    void client?.end().catch(() => undefined);
  }

  /** Appends the local outbox to the shared log (in one transaction, in order), then forgets it here. */
  private async ship(client: pg.Client): Promise<void> {
    for (;;) {
      const rows = this.waiting.all(BATCH) as Array<{ id: number; uid: string; at: string; change: string }>;
      if (rows.length === 0) return;
      await appendInOrder(client, LOCKS.appendChanges, async () => {
        await client.query(
          `INSERT INTO rebound_changes (uid, node, at, change)
           SELECT uid, $2, at, change FROM unnest($1::text[], $3::timestamptz[], $4::jsonb[]) AS t(uid, at, change)
           ON CONFLICT (uid) DO NOTHING`,
          [rows.map((r) => r.uid), this.settings.nodeName, rows.map((r) => r.at), rows.map((r) => r.change)],
        );
        await notifyOthers(client, this.settings.nodeName);
      });
      // Shipped: a crash before this line ships them again, and the shared log keeps each uid once.
      const last = rows[rows.length - 1] as { id: number };
      writeTransaction(this.db, () => this.shipped.run(last.id))();
      this.stats.shipped += rows.length;
      if (rows.length < BATCH) return;
    }
  }

  /**
   * Deletes from the shared store, at most once an hour, what is this node's and older than
   * historyDays: its own events, and the reports forwarded to it that it has taken (its own
   * store has both). A failed purge is tried again at the next round.
   */
  private async purgeOld(client: pg.Client): Promise<void> {
    const days = this.settings.historyDays;
    const now = Date.now();
    if (days === 0 || (this.purgedAt !== null && now - this.purgedAt < PURGE_EVERY_MS)) return;
    const cutoff = new Date(now - days * DAY_MS);
    const reports = await this.forwarded.purgeTaken(client, cutoff);
    const events = await this.events.purge(client, cutoff);
    this.purgedAt = now;
    this.stats.forwardedPurged += reports;
    this.stats.eventsPurged += events;
    if (reports + events > 0) this.log.info({ reports, events, days }, 'this node\'s reports and events older than store.retention.historyDays purged from the shared store');
  }

  /** Applies the shared log past this node's cursor, in order, a batch per local transaction. */
  private async pull(client: pg.Client): Promise<void> {
    for (;;) {
      const cursor = readSetting(this.db, CURSOR_SETTING) ?? '0';
      const { rows } = await client.query<{ version: string; node: string; change: SharedChange }>(
        'SELECT version::text AS version, node, change FROM rebound_changes WHERE version > $1::bigint ORDER BY version LIMIT $2',
        [cursor, BATCH],
      );
      if (rows.length === 0) return;
      this.applyBatch(rows);
      this.stats.applied += rows.length;
      if (rows.length < BATCH) return;
    }
  }
}
