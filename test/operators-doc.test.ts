import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { holdRecipients } from '../src/store/queue-actions.js';
import { SuppressionLists } from '../src/suppressions/lists.js';
import { startFakeMx, type FakeMx } from './support/fake-mx.js';
import { startTestRelay, type TestRelay } from './support/relay.js';

/** The SQL blocks of docs/operators.md, by their `-- check: NAME` line. */
function documentedQueries(): Map<string, string> {
  const doc = readFileSync(new URL('../docs/operators.md', import.meta.url), 'utf8');
  const queries = new Map<string, string>();
  for (const [, sql] of doc.matchAll(/```sql\n([\s\S]*?)```/g)) {
    const name = /^-- check: (\S+)/m.exec(sql ?? '')?.[1];
    if (!name) throw new Error(`an SQL block in docs/operators.md has no "-- check:" line:\n${sql}`);
    queries.set(name, sql as string);
  }
  return queries;
}

async function waitFor(read: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!read()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('docs/operators.md queries, against a store filled through the real paths', () => {
  let mx: FakeMx;
  let relay: TestRelay;
  let db: BetterSqlite3.Database;
  const queries = documentedQueries();

  beforeAll(async () => {
    mx = await startFakeMx({
      rcpt: (address) => {
        if (address.startsWith('gone@')) return { code: 550, text: '5.1.1 <gone@example.test>: Recipient address rejected: User unknown' };
        if (address.startsWith('slow@')) return { code: 450, text: '4.2.1 <slow@example.test>: try again later' };
        return null;
      },
    });
    relay = await startTestRelay({
      inbound: { enabled: true },
      delivery: { enabled: true, pollIntervalMs: 50, localAddresses: ['127.0.0.2'], routes: { 'example.test': `127.0.0.1:${mx.port}` }, retry: { scheduleSeconds: [3600], jitter: 0, maxAttempts: 5, maxAgeSeconds: 86_400 } },
    });
    await nodemailer
      .createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true })
      .sendMail({ from: 'news@shop.example', to: ['gone@example.test', 'fine@example.test', 'slow@example.test'], subject: 'spring', text: 'hi', headers: { 'X-Campaign-ID': 'spring' } });
    await waitFor(() => (relay.db.prepare("SELECT count(*) AS n FROM recipients WHERE status IN ('bounced', 'delivered', 'deferred')").get() as { n: number }).n === 3);
    db = new BetterSqlite3(relay.config.store.path);
    const lists = new SuppressionLists(db);
    lists.add({ address: 'vip@example.test', type: 'bounces', source: 'manual', reason: 'old bounce', actor: 'cli:ops' });
    lists.allow('vip@example.test', 'cli:ops', 'mailbox fixed');
    // The deferred recipient is held by an operator, as `rebound queue hold` does.
    await holdRecipients(db, { sender: 'news@shop.example' }, 'cli:ops');
  });

  afterAll(async () => {
    db?.close();
    await relay?.stop();
    await mx?.close();
  });

  it('has the checks this test knows, and every one runs', () => {
    expect([...queries.keys()].sort()).toEqual(
      ['attempts', 'audit', 'bounces-by-category', 'bounces-by-ip', 'history', 'queue', 'queue-audit', 'raw', 'reports', 'status-counts', 'suppressions', 'webhooks'].sort(),
    );
    for (const [name, sql] of queries) expect(() => db.prepare(sql).all(), name).not.toThrow();
  });

  it('answers the questions it claims to', () => {
    const run = (name: string) => db.prepare(queries.get(name) as string).all() as Array<Record<string, unknown>>;
    expect(run('history').map((row) => [row.event, row.reason, row.category, row.current_status])).toEqual([
      ['accepted', null, null, 'bounced'],
      ['permanent_fail', 'bounced', 'bad-mailbox', 'bounced'],
    ]);
    expect(run('status-counts')).toEqual([
      { status: 'bounced', recipients: 1 },
      { status: 'delivered', recipients: 1 },
      { status: 'held', recipients: 1 },
    ]);
    expect(run('queue').map((row) => [row.address, row.status, row.attempts])).toEqual([['slow@example.test', 'held', 1]]);
    expect(run('queue-audit').map((row) => [row.action, row.selector, row.value, row.actor, row.recipients, row.skipped_sending])).toEqual([
      ['hold', 'sender', 'news@shop.example', 'cli:ops', 1, 0],
    ]);
    expect(run('attempts')).toEqual([expect.objectContaining({ mx_host: '127.0.0.1', local_ip: '127.0.0.2', outcome: 'permanent_fail', code: 550, enhanced_code: '5.1.1', category: 'bad-mailbox' })]);
    expect(run('suppressions')).toEqual([
      { address: 'gone@example.test', type: 'bounces', source: 'immediate', category: 'bad-mailbox', code: 550, enhanced_code: '5.1.1', allowlisted: 0 },
      { address: 'vip@example.test', type: 'bounces', source: 'manual', category: null, code: null, enhanced_code: null, allowlisted: 1 },
    ]);
    expect(run('audit').map((row) => [row.action, row.list, row.address, row.actor])).toEqual([
      ['add', 'bounces', 'gone@example.test', 'relay'],
      ['add', 'bounces', 'vip@example.test', 'cli:ops'],
      ['add', 'allowlist', 'vip@example.test', 'cli:ops'],
    ]);
    expect(run('bounces-by-category')).toEqual([
      { category: 'bad-mailbox', bounce_type: 'hard', bounces: 1 },
      { category: 'other', bounce_type: 'soft', bounces: 1 },
    ]);
    expect(run('bounces-by-ip')).toEqual([{ ip: '127.0.0.2', bounces: 1 }]);
    expect(String(run('raw')[0]?.relayed)).toMatch(/^Received: from .*\r\n[\s\S]*Subject: spring/);
  });

  it('runs with the sqlite3 command-line shell as the page shows, when it is installed', () => {
    let version: string;
    try {
      version = execFileSync('sqlite3', ['-version'], { encoding: 'utf8' });
    } catch {
      return; // the shell is not on this machine; the SQL itself was checked above
    }
    expect(version).toMatch(/^3\./);
    const out = execFileSync('sqlite3', ['-readonly', relay.config.store.path], { encoding: 'utf8', input: queries.get('status-counts') });
    expect(out).toBe('bounced|1\ndelivered|1\nheld|1\n');
  });
});
