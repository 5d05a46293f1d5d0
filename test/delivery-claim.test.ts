import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { DeliveryState } from '../src/delivery/delivery-state.js';
import { openStore, type Database } from '../src/store/database.js';
import { Spool } from '../src/store/spool.js';
import { spoolMessage } from './support/spool-message.js';
import { makeTempDir } from './support/temp-dir.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** A store holding one message per address, each received (and so due) a second after the last. */
async function storeWith(addresses: string[]): Promise<Database> {
  const temp = makeTempDir('rebound-claim-');
  const db = openStore(join(temp.dir, 'store.sqlite'));
  cleanups.push(temp.remove, () => db.close());
  const spool = new Spool(db);
  await Promise.all(
    addresses.map((address, n) =>
      spool.enqueue(spoolMessage(address, { receivedAt: new Date(Date.UTC(2026, 10, 22, 12, 0, 0) + n * 1000) })),
    ),
  );
  spool.close();
  return db;
}

function claimedAddresses(db: Database, perDomain: number, limit: number): string[] {
  const state = new DeliveryState(db, loadConfig({ env: {} }));
  const claim = state.claimDue(new Date(Date.UTC(2026, 10, 23)), perDomain, limit);
  return claim.batches.flatMap((batch) => batch.recipients.map((r) => r.address));
}

function statusCounts(db: Database): Record<string, number> {
  const rows = db.prepare('SELECT status, count(*) AS n FROM recipients GROUP BY status').all() as Array<{ status: string; n: number }>;
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

describe('claiming due recipients', () => {
  it('takes the oldest due first, at most perDomain of one domain, and marks them sending', async () => {
    const addresses = Array.from({ length: 30 }, (_, n) => `r${n}@${['a', 'b', 'c'][n % 3]}.test`);
    const db = await storeWith(addresses);
    expect(claimedAddresses(db, 3, 10)).toEqual(['r0@a.test', 'r1@b.test', 'r2@c.test', 'r3@a.test', 'r4@b.test', 'r5@c.test', 'r6@a.test', 'r7@b.test', 'r8@c.test']);
    expect(statusCounts(db)).toEqual({ sending: 9, queued: 21 });
    // The next claim goes on where this one stopped.
    expect(claimedAddresses(db, 3, 4)).toEqual(['r9@a.test', 'r10@b.test', 'r11@c.test', 'r12@a.test']);
  });

  it('does not let one domain\'s backlog in front of the queue hide the other domains', async () => {
    const addresses = [...Array.from({ length: 200 }, (_, n) => `h${n}@hot.test`), ...Array.from({ length: 5 }, (_, n) => `c${n}@cold.test`)];
    const db = await storeWith(addresses);
    const claimed = claimedAddresses(db, 10, 20);
    expect(claimed.filter((a) => a.endsWith('@hot.test'))).toEqual(Array.from({ length: 10 }, (_, n) => `h${n}@hot.test`));
    expect(claimed.filter((a) => a.endsWith('@cold.test'))).toEqual(['c0@cold.test', 'c1@cold.test', 'c2@cold.test', 'c3@cold.test', 'c4@cold.test']);
  });
});
