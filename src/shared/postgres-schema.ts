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
} as const;

/** The channel NOTIFY announces new list changes on. */
export const CHANGES_CHANNEL = 'rebound_changes';

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
