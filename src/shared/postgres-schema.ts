import type { ClientBase } from 'pg';

/**
 * The shared store's schema, as plain SQL migrations applied in order (rebound_schema keeps the
 * version). Append only: a running node of an older version must keep working on a newer schema.
 */
const MIGRATIONS: readonly string[] = [
  `
  -- Changes to shared state (suppression lists, allowlist, DKIM keys) from every node, in one order
  -- (version). Each carries the resulting state (src/suppressions/list-change.ts,
  -- src/dkim/key-change.ts); every node applies the log in version order, its own changes too, so
  -- all end the same.
  CREATE TABLE rebound_changes (
    version bigserial PRIMARY KEY,
    uid     text NOT NULL UNIQUE,          -- the node's outbox row: a change shipped twice is kept once
    node    text NOT NULL,                 -- store.shared.nodeName of the node that made it
    at      timestamptz NOT NULL,          -- when the node made it
    change  jsonb NOT NULL
  );
  `,
  `
  -- The nodes by name: a node's own changes are told apart from the others' by its name, so two
  -- stores must never sync under one name. store_id is the random id of the node's SQLite store.
  CREATE TABLE rebound_nodes (
    name     text PRIMARY KEY,
    store_id text NOT NULL,
    seen_at  timestamptz NOT NULL
  );
  `,
  `
  -- A node's tag in its return-path tokens (src/bounces/verp.ts nodeTagOf): the MX that takes a
  -- report tagged for another node passes it on to that node through rebound_forwarded_reports.
  ALTER TABLE rebound_nodes ADD COLUMN tag text;
  CREATE TABLE rebound_forwarded_reports (
    id          bigserial PRIMARY KEY,
    uid         text NOT NULL UNIQUE,      -- the forwarding node's outbox row: shipped twice, kept once
    to_node     text NOT NULL,             -- whose token the report carries
    from_node   text NOT NULL,             -- whose MX took it
    received_at timestamptz NOT NULL,
    mail_from   text NOT NULL,
    rcpt_to     jsonb NOT NULL,            -- the envelope recipients, as received
    raw         bytea NOT NULL
  );
  CREATE INDEX rebound_forwarded_reports_to_node ON rebound_forwarded_reports (to_node, id);
  `,
  `
  -- Every node's events, each with what the reads need of its message and recipient
  -- (src/shared/event-sync.ts EventCopy), so the bounces report and the panel read the same on
  -- every node. Appended in one order (version) under an advisory lock, as rebound_changes; each
  -- node copies the others' into other_node_events and deletes its own after the history horizon.
  CREATE TABLE rebound_events (
    version bigserial PRIMARY KEY,
    uid     text NOT NULL UNIQUE,          -- node/local id/time: an event shipped twice is kept once
    node    text NOT NULL,
    at      text NOT NULL,                 -- ISO 8601 UTC, as the stores keep it
    event   jsonb NOT NULL
  );
  CREATE INDEX rebound_events_by_node_at ON rebound_events (node, at);
  `,
  `
  -- The key each node signs its tagged unsubscribe links with (src/bounces/verp.ts linkKeyOf), so
  -- a node that takes a request for another node's link checks it before passing it on.
  ALTER TABLE rebound_nodes ADD COLUMN link_key text;
  `,
];

/** Keys of the advisory locks the nodes take (pg_advisory_xact_lock). */
export const LOCKS = {
  /** Held while migrating, so nodes starting together migrate once. */
  migrate: 7_264_001,
  /**
   * Held while appending to rebound_changes: versions then commit in the order they were
   * given, so a node reading past version N can never miss a change that commits later with a
   * smaller one.
   */
  appendChanges: 7_264_002,
  /** The same for rebound_events. */
  appendEvents: 7_264_003,
} as const;

/**
 * Runs `append` in one transaction holding the advisory lock `lock`, so the rows it appends to a
 * log (rebound_changes, rebound_events) commit in the order of their versions, and a node that
 * read up to version N can never miss a row that commits later with a smaller one.
 */
export async function appendInOrder(client: ClientBase, lock: number, append: () => Promise<void>): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [lock]);
    await append();
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** A node name unseen this long may be taken by another store (a node rebuilt with a new disk). */
export const NODE_NAME_RELEASE_MINUTES = 10;

/**
 * Claims `name` for this store, or refreshes the claim; throws, naming the fix, while another
 * store has used that name within NODE_NAME_RELEASE_MINUTES.
 */
export async function claimNodeName(client: ClientBase, name: string, storeId: string, tag: string | null = null, linkKey: string | null = null): Promise<void> {
  if (tag !== null) {
    // 30 bits of hash: two names on one tag are unlikely, but would send one node's reports to the other.
    const twin = await client.query<{ name: string }>('SELECT name FROM rebound_nodes WHERE tag = $1 AND name <> $2', [tag, name]);
    const other = twin.rows[0];
    if (other) {
      throw new Error(`node names "${name}" and "${other.name}" have the same return-path tag (${tag}): rename one (store.shared.nodeName); nothing is shipped or applied until then`);
    }
  }
  const claimed = await client.query(
    `INSERT INTO rebound_nodes (name, store_id, seen_at, tag, link_key) VALUES ($1, $2, now(), $4, $5)
     ON CONFLICT (name) DO UPDATE SET store_id = excluded.store_id, seen_at = now(), tag = coalesce(excluded.tag, rebound_nodes.tag),
       link_key = coalesce(excluded.link_key, rebound_nodes.link_key)
      WHERE rebound_nodes.store_id = excluded.store_id OR rebound_nodes.seen_at < now() - make_interval(mins => $3)
     RETURNING name`,
    [name, storeId, NODE_NAME_RELEASE_MINUTES, tag, linkKey],
  );
  if (claimed.rowCount === 0) {
    throw new Error(
      `another store syncs as node "${name}" (seen within ${NODE_NAME_RELEASE_MINUTES} minutes): give each node its own store.shared.nodeName; nothing is shipped or applied until then`,
    );
  }
}

/** The channel NOTIFY announces new list changes, events and forwarded reports on. */
export const CHANGES_CHANNEL = 'rebound_changes';

/**
 * Wakes the other nodes (at commit, when in a transaction). The payload is this node's name, so
 * the node that sent it ignores its own notification: under load it would otherwise run round
 * after round for the few events that came in meanwhile.
 */
export async function notifyOthers(client: ClientBase, nodeName: string): Promise<void> {
  await client.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, nodeName]);
}

/** Brings the shared store's schema up to date; returns the versions it went from and to. */
export async function migrateShared(client: ClientBase): Promise<{ from: number; to: number }> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCKS.migrate]);
    await client.query('CREATE TABLE IF NOT EXISTS rebound_schema (version integer NOT NULL)');
    const found = await client.query<{ version: number }>('SELECT version FROM rebound_schema');
    const from = found.rows[0]?.version ?? 0;
    if (from > MIGRATIONS.length) {
      throw new Error(`the shared store is at schema version ${from}, newer than this Rebound knows (${MIGRATIONS.length}); upgrade this node`);
    }
    for (let version = from + 1; version <= MIGRATIONS.length; version++) await client.query(MIGRATIONS[version - 1] as string);
    if (found.rows.length === 0) await client.query('INSERT INTO rebound_schema (version) VALUES ($1)', [MIGRATIONS.length]);
    else await client.query('UPDATE rebound_schema SET version = $1', [MIGRATIONS.length]);
    await client.query('COMMIT');
    return { from, to: MIGRATIONS.length };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
