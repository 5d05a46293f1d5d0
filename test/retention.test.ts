import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { openStore, type Database } from '../src/store/database.js';
import { addCounts, purgeInSteps, Retention } from '../src/store/retention.js';
import { startRetentionJob } from '../src/store/retention-job.js';
import { Spool } from '../src/store/spool.js';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';
import { spoolMessage } from './support/spool-message.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const execFileAsync = promisify(execFile);
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

const NOW = new Date(Date.UTC(2026, 10, 22, 12));
const daysAgo = (days: number): Date => new Date(NOW.getTime() - days * 86_400_000);
const SETTINGS = { bodyDays: 7, historyDays: 90, unmatchedReportDays: 7 };

interface Fixture {
  dir: string;
  path: string;
  db: Database;
}

/**
 * A store with, as of NOW: a finished message 100 days old (with an attempt, events, a webhook
 * outbox row), one as old but still deferred, a finished one 10 days old, one a day old, an old
 * inbound report nothing names, an old one named by the 10-day-old message's event, a suppression.
 */
async function fixture(): Promise<Fixture> {
  const temp = makeTempDir('rebound-retention-');
  const path = join(temp.dir, 'store.sqlite');
  const db = openStore(path);
  cleanups.push(temp.remove, () => db.close());
  const spool = new Spool(db);
  const add = (name: string, age: number) =>
    spool.enqueue(spoolMessage(`${name}@example.net`, { receivedAt: daysAgo(age), subject: name, raw: Buffer.from(`Subject: ${name}\r\n\r\n${'body '.repeat(200)}\r\n`) }));
  await Promise.all([add('old-done', 100), add('old-deferred', 100), add('mid-done', 10), add('new-done', 1)]);
  spool.close();
  const at = (age: number): string => daysAgo(age).toISOString();
  db.exec(`UPDATE recipients SET status = CASE WHEN address LIKE '%deferred%' THEN 'deferred' ELSE 'delivered' END`);
  const idOf = (name: string): { m: number; r: number } =>
    db.prepare(`SELECT message_id AS m, id AS r FROM recipients WHERE address = ?`).get(`${name}@example.net`) as { m: number; r: number };
  const insertReport = db.prepare(`INSERT INTO inbound_reports (received_at, client_ip, mail_from, rcpt_to, size, raw) VALUES (?, '127.0.0.1', '', 'postmaster@relay.test', 3, X'616263')`);
  insertReport.run(at(100));
  const named = Number(insertReport.run(at(100)).lastInsertRowid);
  const event = db.prepare(`INSERT INTO events (at, event, message_id, recipient_id, detail, report_id) VALUES (?, ?, ?, ?, 'x', ?)`);
  for (const name of ['old-done', 'mid-done', 'new-done']) {
    const { m, r } = idOf(name);
    event.run(at(name === 'old-done' ? 100 : 1), 'delivered', m, r, null);
    db.prepare(`INSERT INTO attempts (recipient_id, message_id, started_at, duration_ms, outcome) VALUES (?, ?, ?, 5, 'delivered')`).run(r, m, at(1));
  }
  event.run(at(9), 'permanent_fail', idOf('mid-done').m, idOf('mid-done').r, named);
  db.prepare(`INSERT INTO suppressions (address, type, first_at, last_at, count, source) VALUES ('old-done@example.net', 'bounces', ?, ?, 1, 'immediate')`).run(at(100), at(100));
  return { dir: temp.dir, path, db };
}

function snapshot(db: Database): Record<string, unknown> {
  const count = (sql: string): number => (db.prepare(sql).get() as { n: number }).n;
  return {
    messages: db.prepare(`SELECT subject, length(raw) > 0 AS hasBody, body_dropped_at IS NOT NULL AS dropped FROM messages ORDER BY id`).all(),
    recipients: count('SELECT count(*) AS n FROM recipients'),
    events: count('SELECT count(*) AS n FROM events'),
    attempts: count('SELECT count(*) AS n FROM attempts'),
    outbox: count('SELECT count(*) AS n FROM webhook_outbox'),
    reports: count('SELECT count(*) AS n FROM inbound_reports'),
    suppressions: count('SELECT count(*) AS n FROM suppressions'),
  };
}

describe('store.retention', () => {
  it('drops old bodies and deletes old history of finished mail only, keeping what is still queued and suppressions', async () => {
    const { db } = await fixture();
    const before = snapshot(db);
    expect(before).toMatchObject({ recipients: 4, events: 8, attempts: 3, outbox: 4, reports: 2, suppressions: 1 });
    const retention = new Retention(db, SETTINGS);
    expect(retention.pending(NOW)).toEqual({ messagesDeleted: 1, reportsDeleted: 1, otherNodeEventsDeleted: 0, bodiesDropped: 1 });

    // Steps of one at a time, to go through the loop.
    let total = { bodiesDropped: 0, messagesDeleted: 0, reportsDeleted: 0, otherNodeEventsDeleted: 0 };
    for (let k = 0; k < 10; k++) {
      const step = retention.step(NOW, 1);
      total = { bodiesDropped: total.bodiesDropped + step.bodiesDropped, messagesDeleted: total.messagesDeleted + step.messagesDeleted, reportsDeleted: total.reportsDeleted + step.reportsDeleted, otherNodeEventsDeleted: total.otherNodeEventsDeleted + step.otherNodeEventsDeleted };
    }
    expect(total).toEqual({ messagesDeleted: 1, reportsDeleted: 1, otherNodeEventsDeleted: 0, bodiesDropped: 1 });
    expect(snapshot(db)).toEqual({
      messages: [
        { subject: 'old-deferred', hasBody: 1, dropped: 0 },
        { subject: 'mid-done', hasBody: 0, dropped: 1 },
        { subject: 'new-done', hasBody: 1, dropped: 0 },
      ],
      // old-done went with its recipient, its 'accepted' and 'delivered' events, attempt and outbox row.
      recipients: 3,
      events: 6,
      attempts: 2,
      outbox: 3,
      // The report named by mid-done's event stays while that event does.
      reports: 1,
      suppressions: 1,
    });
    expect(retention.pending(NOW)).toEqual({ messagesDeleted: 0, reportsDeleted: 0, otherNodeEventsDeleted: 0, bodiesDropped: 0 });
  });

  it('keeps the message holding the newest event, however old, so event ids are never handed out again', async () => {
    const { db } = await fixture();
    const newest = (): number => db.prepare('SELECT max(id) FROM events').pluck().get() as number;
    // Every message finished and past historyDays: all but the one holding the newest event go.
    db.exec(`UPDATE recipients SET status = 'delivered'; UPDATE messages SET received_at = '2000-01-01T00:00:00.000Z'`);
    const before = newest();
    const holder = db.prepare('SELECT message_id FROM events WHERE id = ?').pluck().get(before);
    await purgeInSteps(new Retention(db, SETTINGS), NOW);
    expect(db.prepare('SELECT id FROM messages').pluck().all()).toEqual([holder]);
    expect(newest()).toBe(before);
    const spool = new Spool(db);
    await spool.enqueue(spoolMessage('after@example.net', { receivedAt: NOW, subject: 'after' }));
    spool.close();
    expect(newest()).toBeGreaterThan(before);
  });

  it('does not empty the bodies of messages the history purge deletes anyway, however small the steps', async () => {
    const { db } = await fixture();
    const spool = new Spool(db);
    await Promise.all(['old-2', 'old-3'].map((name) => spool.enqueue(spoolMessage(`${name}@example.net`, { receivedAt: daysAgo(95), subject: name }))));
    // Today's mail holds the newest event (the purge keeps whichever message does).
    await spool.enqueue(spoolMessage('today@example.net', { receivedAt: NOW, subject: 'today' }));
    spool.close();
    db.exec(`UPDATE recipients SET status = 'delivered' WHERE address LIKE 'old-_@example.net'`);
    const retention = new Retention(db, SETTINGS);
    expect(retention.pending(NOW)).toEqual({ messagesDeleted: 3, reportsDeleted: 1, otherNodeEventsDeleted: 0, bodiesDropped: 1 });
    let total = { bodiesDropped: 0, messagesDeleted: 0, reportsDeleted: 0, otherNodeEventsDeleted: 0 };
    for (let k = 0; k < 10; k++) total = addCounts(total, retention.step(NOW, 1));
    expect(total).toEqual({ messagesDeleted: 3, reportsDeleted: 1, otherNodeEventsDeleted: 0, bodiesDropped: 1 });
  });

  it('deletes inbound reports that changed nothing after unmatchedReportDays, keeping those an event names and those not yet processed', async () => {
    const { db } = await fixture();
    const insert = db.prepare(`
      INSERT INTO inbound_reports (received_at, client_ip, mail_from, rcpt_to, size, raw, parse_status, applied_at, outcome)
      VALUES (?, '198.51.100.7', '', 'postmaster@relay.test', 3, X'616263', ?, ?, ?)`);
    const report = (age: number, status: string, applied: boolean): number =>
      Number(insert.run(daysAgo(age).toISOString(), status, applied ? daysAgo(age).toISOString() : null, 'stored, not applied: no valid token').lastInsertRowid);
    const noToken = report(10, 'parsed', true);
    const unreadable = report(10, 'failed', false);
    const notYetProcessed = report(10, 'pending', false);
    const recent = report(3, 'parsed', true);
    const named = report(10, 'parsed', true);
    const { m, r } = db.prepare(`SELECT message_id AS m, id AS r FROM recipients WHERE address = 'mid-done@example.net'`).get() as { m: number; r: number };
    db.prepare(`INSERT INTO events (at, event, message_id, recipient_id, report_id) VALUES (?, 'permanent_fail', ?, ?, ?)`).run(daysAgo(10).toISOString(), m, r, named);

    const retention = new Retention(db, SETTINGS);
    // The fixture's 100-day-old report nothing names, and the two unmatched ones.
    expect(retention.pending(NOW).reportsDeleted).toBe(3);
    expect((await purgeInSteps(retention, NOW)).reportsDeleted).toBe(3);
    const left = db.prepare('SELECT id FROM inbound_reports').pluck().all() as number[];
    expect(left).toEqual(expect.arrayContaining([notYetProcessed, recent, named]));
    expect(left).not.toContain(noToken);
    expect(left).not.toContain(unreadable);

    // 0: unmatched reports follow historyDays.
    const keep = report(10, 'parsed', true);
    await purgeInSteps(new Retention(db, { ...SETTINGS, unmatchedReportDays: 0 }), NOW);
    expect(db.prepare('SELECT count(*) FROM inbound_reports WHERE id = ?').pluck().get(keep)).toBe(1);
  });

  it('keeps everything with every horizon at 0', async () => {
    const { db } = await fixture();
    const before = snapshot(db);
    const retention = new Retention(db, { bodyDays: 0, historyDays: 0, unmatchedReportDays: 0 });
    expect(retention.enabled).toBe(false);
    expect(await purgeInSteps(retention, NOW)).toEqual({ messagesDeleted: 0, reportsDeleted: 0, otherNodeEventsDeleted: 0, bodiesDropped: 0 });
    expect(snapshot(db)).toEqual(before);
  });

  it('runs in the relay a while after start, and stops cleanly', async () => {
    const { db } = await fixture();
    // The fixture is dated around NOW; the job uses the real clock, so age it by the difference.
    const shift = Date.now() - NOW.getTime();
    db.prepare(`UPDATE messages SET received_at = strftime('%Y-%m-%dT%H:%M:%fZ', received_at, '+' || ? || ' seconds')`).run(Math.floor(shift / 1000));
    const job = startRetentionJob(db, SETTINGS, createLogger('silent'), { firstRunMs: 10, everyMs: 3_600_000 });
    await waitFor('the first purge', () => snapshot(db).recipients, (n) => n === 3, 5_000);
    await job.stop();
  });

  it('`rebound purge --dry-run` counts without changing anything; `rebound purge` applies it', async () => {
    const { dir, path, db } = await fixture();
    // The CLI uses the real clock: make the fixture's times relative to now.
    const shift = Date.now() - NOW.getTime();
    db.prepare(`UPDATE messages SET received_at = strftime('%Y-%m-%dT%H:%M:%fZ', received_at, '+' || ? || ' seconds')`).run(Math.floor(shift / 1000));
    db.prepare(`UPDATE inbound_reports SET received_at = strftime('%Y-%m-%dT%H:%M:%fZ', received_at, '+' || ? || ' seconds')`).run(Math.floor(shift / 1000));
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ store: { path, retention: SETTINGS } }));
    const run = (args: string[]) => execFileAsync(process.execPath, [CLI, 'purge', '--config', config, ...args], { cwd: PROJECT_ROOT, env: { ...process.env, REBOUND_CONFIG: '' } });
    const before = snapshot(db);
    const dry = await run(['--dry-run', '--json']);
    expect(JSON.parse(dry.stdout)).toEqual({ dryRun: true, bodyDays: 7, historyDays: 90, unmatchedReportDays: 7, messagesDeleted: 1, reportsDeleted: 1, otherNodeEventsDeleted: 0, bodiesDropped: 1 });
    expect(snapshot(db)).toEqual(before);
    const applied = await run([]);
    expect(applied.stdout).toContain('finished messages older than 90 days: 1 were deleted with their history');
    expect(applied.stdout).toContain('bodies of finished messages older than 7 days: 1 were dropped');
    expect(snapshot(db)).toMatchObject({ recipients: 3, reports: 1, suppressions: 1 });
  });
});
