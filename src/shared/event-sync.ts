import type { Database, Statement } from 'better-sqlite3';
import type pg from 'pg';
import { readSetting, writeSetting } from '../store/settings.js';
import { writeTransaction } from '../store/write-lock.js';
import type { OtherNodeEventRow } from '../store/history.js';
import { appendInOrder, LOCKS, notifyOthers } from './postgres-schema.js';

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
/**
 * Events are shipped at most this often: under load a round then carries a full batch in one
 * transaction rather than a few events each, which costs the relay (its main thread ships) and
 * PostgreSQL per transaction. Other nodes' figures lag by about this much.
 */
const SHIP_INTERVAL_MS = 1_000;

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
  private readonly insertCopies: Statement;
  private readonly applyBatch: (copies: string, lastVersion: string) => number;
  private lastShip = 0;

  constructor(
    private readonly db: Database,
    private readonly nodeName: string,
  ) {
    // One batch as one JSON array, built by SQLite: no per-event work in JavaScript on the relay's main thread.
    this.next = db.prepare(`
      SELECT count(*) AS events, max(id) AS lastId,
             json_group_array(json_object(
               'uid', @node || '/' || id || '/' || at, 'at', at,
               'event', json_object('at', at, 'event', event, 'source', source, 'reason', reason, 'severity', severity,
                 'bounceType', bounce_type, 'category', category, 'code', code, 'enhancedCode', enhanced_code, 'detail', detail,
                 'localIp', local_ip, 'mxHost', mx_host, 'actor', actor, 'address', address, 'domain', domain, 'queueId', queue_id,
                 'mailFrom', mail_from, 'fromDomain', from_domain, 'campaignId', campaign_id, 'subject', subject,
                 'messageIdHeader', message_id_header, 'tags', json(tags)))) AS batch
        FROM (SELECT e.id, e.at, e.event, e.source, e.reason, e.severity, e.bounce_type, e.category, e.code, e.enhanced_code,
                     e.detail, e.local_ip, e.mx_host, e.actor, r.address, r.domain, m.queue_id, m.mail_from, m.from_domain,
                     m.campaign_id, m.subject, m.message_id_header,
                     (SELECT json_group_array(t.tag) FROM message_tags t WHERE t.message_id = m.id) AS tags
                FROM events e JOIN messages m ON m.id = e.message_id LEFT JOIN recipients r ON r.id = e.recipient_id
               WHERE e.id > @after ORDER BY e.id LIMIT @limit)`);
    this.lastId = db.prepare('SELECT max(id) FROM events').pluck();
    // The other nodes' events arrive as one JSON array (EventCopy plus version and node), split here by SQLite.
    this.insertCopies = db.prepare(`
      INSERT OR IGNORE INTO other_node_events (version, node, at, event, source, reason, severity, bounce_type, category, code,
        enhanced_code, detail, local_ip, mx_host, actor, address, domain, queue_id, mail_from, from_domain, campaign_id,
        subject, message_id_header, tags)
      SELECT value ->> 'version', value ->> 'node', value ->> 'at', value ->> 'event', value ->> 'source', value ->> 'reason',
             value ->> 'severity', value ->> 'bounceType', value ->> 'category', value ->> 'code', value ->> 'enhancedCode',
             value ->> 'detail', value ->> 'localIp', value ->> 'mxHost', value ->> 'actor', value ->> 'address', value ->> 'domain',
             value ->> 'queueId', value ->> 'mailFrom', value ->> 'fromDomain', value ->> 'campaignId', value ->> 'subject',
             value ->> 'messageIdHeader', coalesce(value -> 'tags', '[]')
        FROM json_each(?)`);
    this.applyBatch = writeTransaction(db, (copies: string, lastVersion: string) => {
      const copied = this.insertCopies.run(copies).changes;
      writeSetting(db, PULLED_SETTING, lastVersion);
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

  /** Whether events wait here and the last shipping was SHIP_INTERVAL_MS ago or more. */
  shipDue(now = Date.now()): boolean {
    return now - this.lastShip >= SHIP_INTERVAL_MS && this.waitingCount() > 0;
  }

  /** Appends this node's new events to rebound_events; returns how many; `more` when a backlog is left for the next round. */
  async ship(client: pg.ClientBase): Promise<{ shipped: number; more: boolean }> {
    this.lastShip = Date.now();
    let shipped = 0;
    for (let batch = 0; batch < BATCHES_PER_ROUND; batch++) {
      const { events, lastId, batch: copies } = this.next.get({ node: this.nodeName, after: this.shippedUpTo(), limit: BATCH }) as { events: number; lastId: number | null; batch: string };
      if (events === 0 || lastId === null) return { shipped, more: false };
      await appendInOrder(client, LOCKS.appendEvents, async () => {
        await client.query(
          `INSERT INTO rebound_events (uid, node, at, event)
           SELECT copy ->> 'uid', $2, copy ->> 'at', copy -> 'event' FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(copy, n)
            ORDER BY n
           ON CONFLICT (uid) DO NOTHING`,
          [copies, this.nodeName],
        );
        // Wakes the other nodes, as a list change does: their reports and overviews catch up at once.
        await notifyOthers(client, this.nodeName);
      });
      // A crash before this line ships them again; the uid keeps each once.
      writeTransaction(this.db, () => writeSetting(this.db, SHIPPED_SETTING, String(lastId)))();
      shipped += events;
      if (events < BATCH) return { shipped, more: false };
    }
    // A backlog (a store joining, an outage ended) goes on at the next round, without the wait.
    this.lastShip = 0;
    return { shipped, more: true };
  }

  /** Copies the other nodes' new events into other_node_events; returns how many; `more` as for ship. */
  async pull(client: pg.ClientBase): Promise<{ copied: number; more: boolean }> {
    let copied = 0;
    for (let batch = 0; batch < BATCHES_PER_ROUND; batch++) {
      const cursor = readSetting(this.db, PULLED_SETTING) ?? '0';
      // One batch past the cursor: the others' events as one JSON array (this node's own are in
      // events already, and only move the cursor), and the batch's last version.
      const { rows } = await client.query<{ rows: string; last: string | null; copies: string | null }>(
        `SELECT count(*)::text AS rows, max(version)::text AS last,
                (json_agg(jsonb_build_object('version', version, 'node', node) || event ORDER BY version) FILTER (WHERE node <> $2))::text AS copies
           FROM (SELECT version, node, event FROM rebound_events WHERE version > $1::bigint ORDER BY version LIMIT $3) AS batch`,
        [cursor, this.nodeName, BATCH],
      );
      const found = rows[0];
      if (!found || found.last === null) return { copied, more: false };
      copied += this.applyBatch(found.copies ?? '[]', found.last);
      if (Number(found.rows) < BATCH) return { copied, more: false };
    }
    return { copied, more: true };
  }

  /**
   * Deletes this node's own events from before `cutoff` (the history horizon) from the shared
   * store; the other nodes' copies go with their own retention (store/retention.ts).
   */
  async purge(client: pg.ClientBase, cutoff: Date): Promise<number> {
    const result = await client.query('DELETE FROM rebound_events WHERE node = $1 AND at < $2', [this.nodeName, cutoff.toISOString()]);
    return result.rowCount ?? 0;
  }
}
