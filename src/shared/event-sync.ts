import type { Database, Statement } from 'better-sqlite3';
import type pg from 'pg';
import { readSetting, writeSetting } from '../store/settings.js';
import { writeTransaction } from '../store/write-lock.js';
import type { OtherNodeEventRow } from '../store/history.js';
import { appendInOrder, CHANGES_CHANNEL, LOCKS } from './postgres-schema.js';

/**
 * An event as another node reads it: the event row with what the bounces report, the overview
 * and the history need of its message and recipient, which stay in the store of the node where it
 * happened (a node's spool is its own).
 */
export type EventCopy = Omit<OtherNodeEventRow, 'node'> & {
  domain: string | null;
  fromDomain: string | null;
  campaignId: string | null;
  messageIdHeader: string | null;
  tags: string[];
};

/** How far this node's events went to the shared store: the last events.id shipped. */
const SHIPPED_SETTING = 'shared.events.shipped';
/** How far this node has copied the shared store's events (rebound_events.version). */
const PULLED_SETTING = 'shared.events.version';
/** Events per round trip, and round trips per round: a large backlog (a store joining) takes several rounds, the list changes go between. */
const BATCH = 1_000;
const BATCHES_PER_ROUND = 10;
/** How often this node deletes its own events past the history horizon from the shared store. */
const PURGE_INTERVAL_MS = 3_600_000;

/** An event as read here to be shipped: its id (the cursor) and its message's tags as JSON text. */
type LocalEvent = Omit<EventCopy, 'tags'> & { id: number; tags: string };

/**
 * Shares events between the nodes (issue 14): each node appends its own events to
 * rebound_events and copies the other nodes' into other_node_events, so the bounces report and
 * the panel read every node's mail on every node. Nothing on the message path changes: shipping
 * reads `events` past a cursor (the events' ids rise in commit order, SQLite having one writer),
 * so no outbox row is written per event. Webhooks stay with the node where the event happened:
 * each event is POSTed once, by that node, whatever PostgreSQL does.
 */
export class EventSync {
  private readonly next: Statement;
  private readonly lastId: Statement;
  private readonly insertCopy: Statement;
  private readonly applyBatch: (rows: Array<{ version: string; node: string; event: EventCopy | null }>) => number;
  private lastPurge = 0;

  constructor(
    private readonly db: Database,
    private readonly nodeName: string,
    /** Days a finished message's history is kept here (store.retention.historyDays); 0: for ever. */
    private readonly historyDays: number,
  ) {
    this.next = db.prepare(`
      SELECT e.id, e.at, e.event, e.source, e.reason, e.severity, e.bounce_type AS bounceType, e.category, e.code,
             e.enhanced_code AS enhancedCode, e.detail, e.local_ip AS localIp, e.mx_host AS mxHost, e.actor,
             r.address, r.domain, m.queue_id AS queueId, m.mail_from AS mailFrom, m.from_domain AS fromDomain,
             m.campaign_id AS campaignId, m.subject, m.message_id_header AS messageIdHeader,
             (SELECT json_group_array(t.tag) FROM message_tags t WHERE t.message_id = m.id) AS tags
        FROM events e JOIN messages m ON m.id = e.message_id LEFT JOIN recipients r ON r.id = e.recipient_id
       WHERE e.id > ? ORDER BY e.id LIMIT ?`);
    this.lastId = db.prepare('SELECT max(id) FROM events').pluck();
    this.insertCopy = db.prepare(`
      INSERT OR IGNORE INTO other_node_events (version, node, at, event, source, reason, severity, bounce_type, category, code,
        enhanced_code, detail, local_ip, mx_host, actor, address, domain, queue_id, mail_from, from_domain, campaign_id,
        subject, message_id_header, tags)
      VALUES (@version, @node, @at, @event, @source, @reason, @severity, @bounceType, @category, @code,
        @enhancedCode, @detail, @localIp, @mxHost, @actor, @address, @domain, @queueId, @mailFrom, @fromDomain, @campaignId,
        @subject, @messageIdHeader, @tags)`);
    this.applyBatch = writeTransaction(db, (rows: Array<{ version: string; node: string; event: EventCopy | null }>) => {
      let copied = 0;
      for (const row of rows) {
        // This node's own events come back with the others' (one ordered read); they are in events already.
        if (row.event === null) continue;
        this.insertCopy.run({ ...row.event, version: Number(row.version), node: row.node, tags: JSON.stringify(row.event.tags) });
        copied++;
      }
      const last = rows[rows.length - 1];
      if (last) writeSetting(db, PULLED_SETTING, last.version);
      return copied;
    });
  }

  /** The last events.id shipped; 0 again when the events table restarted its ids (emptied by retention). */
  private shippedUpTo(): number {
    const shipped = Number(readSetting(this.db, SHIPPED_SETTING) ?? '0');
    const last = (this.lastId.get() as number | null) ?? 0;
    return last < shipped ? 0 : shipped;
  }

  /** Events made here and not yet in the shared store. */
  waitingCount(): number {
    const last = (this.lastId.get() as number | null) ?? 0;
    return Math.max(0, last - this.shippedUpTo());
  }

  /** Appends this node's new events to rebound_events; returns how many; `more` when a backlog is left for the next round. */
  async ship(client: pg.ClientBase): Promise<{ shipped: number; more: boolean }> {
    let shipped = 0;
    for (let batch = 0; batch < BATCHES_PER_ROUND; batch++) {
      const rows = this.next.all(this.shippedUpTo(), BATCH) as LocalEvent[];
      if (rows.length === 0) return { shipped, more: false };
      const uids = rows.map((row) => `${this.nodeName}/${row.id}/${row.at}`);
      const copies = rows.map(({ id: _id, tags, ...row }) => JSON.stringify({ ...row, tags: JSON.parse(tags) as string[] } satisfies EventCopy));
      await appendInOrder(client, LOCKS.appendEvents, async () => {
        await client.query(
          `INSERT INTO rebound_events (uid, node, at, event)
           SELECT uid, $2, at, event FROM unnest($1::text[], $3::text[], $4::jsonb[]) AS t(uid, at, event)
           ON CONFLICT (uid) DO NOTHING`,
          [uids, this.nodeName, rows.map((row) => row.at), copies],
        );
        // Wakes the other nodes, as a list change does: their reports and overviews catch up at once.
        await client.query(`NOTIFY ${CHANGES_CHANNEL}`);
      });
      // A crash before this line ships them again; the uid keeps each once.
      const last = rows[rows.length - 1] as LocalEvent;
      writeTransaction(this.db, () => writeSetting(this.db, SHIPPED_SETTING, String(last.id)))();
      shipped += rows.length;
      if (rows.length < BATCH) return { shipped, more: false };
    }
    return { shipped, more: true };
  }

  /** Copies the other nodes' new events into other_node_events; returns how many; `more` as for ship. */
  async pull(client: pg.ClientBase): Promise<{ copied: number; more: boolean }> {
    let copied = 0;
    for (let batch = 0; batch < BATCHES_PER_ROUND; batch++) {
      const cursor = readSetting(this.db, PULLED_SETTING) ?? '0';
      // Own rows come back without their payload: the cursor passes them at little cost.
      const { rows } = await client.query<{ version: string; node: string; event: EventCopy | null }>(
        `SELECT version::text AS version, node, CASE WHEN node = $2 THEN NULL ELSE event END AS event
           FROM rebound_events WHERE version > $1::bigint ORDER BY version LIMIT $3`,
        [cursor, this.nodeName, BATCH],
      );
      if (rows.length === 0) return { copied, more: false };
      copied += this.applyBatch(rows);
      if (rows.length < BATCH) return { copied, more: false };
    }
    return { copied, more: true };
  }

  /**
   * Deletes this node's own events past the history horizon from the shared store, at most once
   * an hour; the other nodes' copies go with their own retention (store/retention.ts).
   */
  async purge(client: pg.ClientBase, now = new Date()): Promise<number> {
    if (this.historyDays <= 0 || now.getTime() - this.lastPurge < PURGE_INTERVAL_MS) return 0;
    this.lastPurge = now.getTime();
    const cutoff = new Date(now.getTime() - this.historyDays * 86_400_000).toISOString();
    const result = await client.query('DELETE FROM rebound_events WHERE node = $1 AND at < $2', [this.nodeName, cutoff]);
    return result.rowCount ?? 0;
  }
}
