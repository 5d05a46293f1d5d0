import { randomUUID } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import type pg from 'pg';
import { readSetting, writeSetting } from '../store/settings.js';
import { writeTransaction } from '../store/write-lock.js';
import { notifyOthers } from './postgres-schema.js';

/**
 * Reports that reach one node's MX for another node's return-path token (issue 14): one
 * return-path domain, its MX on several nodes, each node's tokens signed with its own secret and
 * naming rows of its own store. The MX that takes such a report keeps it (outcome "forwarded to
 * node <name>") and queues it in forward_outbox in the same transaction; the relay ships the
 * outbox to rebound_forwarded_reports; the node the token names pulls what is addressed to it and
 * stores it as if its own listener had taken it, where its MAC is checked and it is applied.
 */

/** The settings key holding the known nodes' tags, JSON {tag: name}, refreshed every round. */
const NODE_TAGS_SETTING = 'shared.nodeTags';
/** The known nodes' unsubscribe link keys, JSON {tag: key}, refreshed with the tags. */
const LINK_KEYS_SETTING = 'shared.nodeLinkKeys';
/** How far this node has taken the reports forwarded to it (rebound_forwarded_reports.id). */
const FORWARDED_CURSOR_SETTING = 'shared.forwarded.id';
/** Reports per round trip: each may be up to inbound.maxMessageSize. */
const BATCH = 20;
/** Rows deleted per statement when purging, so one purge never holds a long lock on the table. */
const PURGE_BATCH = 1000;

/** A report another node's MX took for this node's token. */
export interface ForwardedReport {
  fromNode: string;
  receivedAt: Date;
  mailFrom: string;
  rcptTo: string[];
  raw: Buffer;
}

/**
 * Stores a forwarded report as received here and runs `markTaken` in the transaction that stores
 * it, so a crash never takes it twice nor loses it. The inbound stage is one.
 */
export type ForwardedReportReceiver = (report: ForwardedReport, markTaken: () => void) => Promise<void>;

/** The other nodes by tag, as the last round read them from rebound_nodes (kept across restarts). */
export class KnownNodes {
  constructor(private readonly db: Database) {}

  /** The node whose tokens carry `tag`, or undefined when no node has it. */
  nameOf(tag: string): string | undefined {
    return this.lookUp(NODE_TAGS_SETTING, tag);
  }

  /** The key the node with `tag` signs its unsubscribe links with, or undefined when not known. */
  linkKeyOf(tag: string): string | undefined {
    return this.lookUp(LINK_KEYS_SETTING, tag);
  }

  private lookUp(setting: string, tag: string): string | undefined {
    const stored = readSetting(this.db, setting);
    if (stored === undefined) return undefined;
    const byTag = JSON.parse(stored) as Record<string, string>;
    return Object.hasOwn(byTag, tag) ? byTag[tag] : undefined;
  }
}

/** Reads every node's tag from the shared store into this store's settings. */
export async function refreshKnownNodes(client: pg.ClientBase, db: Database): Promise<void> {
  const { rows } = await client.query<{ name: string; tag: string; linkKey: string | null }>(
    'SELECT name, tag, link_key AS "linkKey" FROM rebound_nodes WHERE tag IS NOT NULL ORDER BY name',
  );
  const tags = JSON.stringify(Object.fromEntries(rows.map((row) => [row.tag, row.name])));
  const keys = JSON.stringify(Object.fromEntries(rows.filter((row) => row.linkKey !== null).map((row) => [row.tag, row.linkKey])));
  if (readSetting(db, NODE_TAGS_SETTING) !== tags || readSetting(db, LINK_KEYS_SETTING) !== keys) {
    writeTransaction(db, () => {
      writeSetting(db, NODE_TAGS_SETTING, tags);
      writeSetting(db, LINK_KEYS_SETTING, keys);
    })();
  }
}

const outboxes = new WeakMap<Database, Statement>();

/** Queues a report for `toNode`, in the caller's transaction (the one storing the report here). */
export function queueForwardedReport(db: Database, toNode: string, report: { receivedAt: Date; mailFrom: string; rcptTo: string[]; raw: Buffer }): void {
  let insert = outboxes.get(db);
  if (!insert) {
    insert = db.prepare('INSERT INTO forward_outbox (uid, to_node, received_at, mail_from, rcpt_to, raw) VALUES (?, ?, ?, ?, ?, ?)');
    outboxes.set(db, insert);
  }
  insert.run(randomUUID(), toNode, report.receivedAt.toISOString(), report.mailFrom, JSON.stringify(report.rcptTo), report.raw);
}

interface OutboxRow {
  id: number;
  uid: string;
  toNode: string;
  receivedAt: string;
  mailFrom: string;
  rcptTo: string;
  raw: Buffer;
}

/** Ships this node's forward_outbox and pulls the reports forwarded to it; ChangeSync runs both every round. */
export class ForwardedReports {
  private readonly waiting: Statement;
  private readonly shipped: Statement;
  private readonly outboxSize: Statement;

  constructor(
    private readonly db: Database,
    private readonly nodeName: string,
  ) {
    this.waiting = db.prepare(`
      SELECT id, uid, to_node AS toNode, received_at AS receivedAt, mail_from AS mailFrom, rcpt_to AS rcptTo, raw
        FROM forward_outbox ORDER BY id LIMIT ?`);
    this.shipped = db.prepare('DELETE FROM forward_outbox WHERE id = ?');
    this.outboxSize = db.prepare('SELECT count(*) FROM forward_outbox').pluck();
  }

  /** Reports waiting here to be shipped. */
  waitingCount(): number {
    return this.outboxSize.get() as number;
  }

  /** Ships the outbox, one report per statement; returns how many, and wakes the other nodes. */
  async ship(client: pg.ClientBase): Promise<number> {
    let count = 0;
    for (;;) {
      const rows = this.waiting.all(BATCH) as OutboxRow[];
      for (const row of rows) {
        await client.query(
          `INSERT INTO rebound_forwarded_reports (uid, to_node, from_node, received_at, mail_from, rcpt_to, raw)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) ON CONFLICT (uid) DO NOTHING`,
          [row.uid, row.toNode, this.nodeName, row.receivedAt, row.mailFrom, row.rcptTo, row.raw],
        );
        // Shipped: a crash before this line ships it again, and the uid keeps it once there.
        writeTransaction(this.db, () => this.shipped.run(row.id))();
        count++;
      }
      if (count > 0 && rows.length < BATCH) await notifyOthers(client, this.nodeName);
      if (rows.length < BATCH) return count;
    }
  }

  /**
   * Deletes from the shared store the reports forwarded to this node that it has taken (at or
   * before its cursor) and that were received before `cutoff`; returns how many. Only the node a
   * report is for knows when it has taken it, so each node purges its own.
   */
  async purgeTaken(client: pg.ClientBase, cutoff: Date): Promise<number> {
    const cursor = readSetting(this.db, FORWARDED_CURSOR_SETTING);
    if (cursor === undefined) return 0;
    let count = 0;
    // Each pass deletes a full batch or ends the loop.
    for (;;) {
      const { rowCount } = await client.query(
        `DELETE FROM rebound_forwarded_reports WHERE id IN (
           SELECT id FROM rebound_forwarded_reports WHERE to_node = $1 AND id <= $2::bigint AND received_at < $3 ORDER BY id LIMIT $4)`,
        [this.nodeName, cursor, cutoff, PURGE_BATCH],
      );
      count += rowCount ?? 0;
      if ((rowCount ?? 0) < PURGE_BATCH) return count;
    }
  }

  /** Hands the reports forwarded to this node, past its cursor, to `receive`, in order. */
  async pull(client: pg.ClientBase, receive: ForwardedReportReceiver): Promise<number> {
    let count = 0;
    for (;;) {
      const cursor = readSetting(this.db, FORWARDED_CURSOR_SETTING) ?? '0';
      const { rows } = await client.query<{ id: string; fromNode: string; receivedAt: Date; mailFrom: string; rcptTo: string[]; raw: Buffer }>(
        `SELECT id::text AS id, from_node AS "fromNode", received_at AS "receivedAt", mail_from AS "mailFrom", rcpt_to AS "rcptTo", raw
           FROM rebound_forwarded_reports WHERE to_node = $1 AND id > $2::bigint ORDER BY id LIMIT $3`,
        [this.nodeName, cursor, BATCH],
      );
      for (const row of rows) {
        await receive(row, () => writeSetting(this.db, FORWARDED_CURSOR_SETTING, row.id));
        count++;
      }
      if (rows.length < BATCH) return count;
    }
  }
}
