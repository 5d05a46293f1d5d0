/**
 * One classification: what the inbound applier stores for a recipient of a report is exactly what
 * the report parser (and so `rebound parse --json`) prints for it — never a second classifier run.
 * Checked on every fixture in fixtures/dsn and, when it is there, every file of the DEV corpus.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Database } from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeAddress } from '../src/address.js';
import { parseReport, toParseOutput, type ParseOutput } from '../src/bounces/report/index.js';
import { returnPathFor, type VerpSettings } from '../src/bounces/verp.js';
import { loadConfig, type Config } from '../src/config/load.js';
import { ReportApplier } from '../src/inbound/apply-report.js';
import { openStore } from '../src/store/database.js';
import { Spool } from '../src/store/spool.js';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';
import { spoolMessage } from './support/spool-message.js';
import { makeTempDir } from './support/temp-dir.js';

const execFileAsync = promisify(execFile);
const VERP: VerpSettings = { domain: 'bounces.relay.test', prefix: 'bounces', secret: 'one-classification-secret-0123', maxAgeDays: 30 };
const FIXTURES = resolve(PROJECT_ROOT, 'fixtures/dsn');
const CORPUS = resolve(PROJECT_ROOT, '../shared/corpus/dsn');
/** Stands in for a recipient the report names in no readable way (the token's recipient alone). */
const PLACEHOLDER = 'someone@placeholder.test';

interface StoredEvent {
  address: string;
  event: string;
  reason: string | null;
  severity: string | null;
  type: string | null;
  category: string | null;
  enhancedCode: string | null;
}

interface Compared {
  /** Recipients whose stored event was compared with the printed classification. */
  compared: number;
  /** Recipients of the report that no seeded row stands for (an address we cannot store). */
  unmatched: number;
  mismatches: string[];
}

let temp: { dir: string; remove: () => void };
let db: Database;
let spool: Spool;
let applier: ReportApplier;

beforeAll(() => {
  temp = makeTempDir('rebound-one-classification-');
  db = openStore(join(temp.dir, 'rebound.sqlite'));
  spool = new Spool(db);
  const config: Config = loadConfig({ env: {} });
  applier = new ReportApplier(db, config, VERP);
});

afterAll(() => {
  spool.close();
  db.close();
  temp.remove();
});

function normalized(address: string | null): string | null {
  if (!address) return null;
  return normalizeAddress(address.replace(/^<|>$/g, '').trim())?.address.toLowerCase() ?? null;
}

/**
 * A delivered message to the addresses the report names (or one stand-in when it names none we
 * can store), each with an attempt whose MAIL FROM carries the first recipient's token: the one
 * SMTP transaction the report is about, as delivery leaves it.
 */
async function seed(addresses: string[]): Promise<{ tokenId: number; returnPath: string }> {
  const [first] = addresses as [string];
  const message = spoolMessage(first, { recipients: addresses.map((address) => ({ address, domain: address.slice(address.lastIndexOf('@') + 1) })) });
  await spool.enqueue(message);
  const rows = db.prepare('SELECT r.id, r.message_id AS messageId FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ? ORDER BY r.id').all(message.queueId) as Array<{ id: number; messageId: number }>;
  const tokenId = (rows[0] as { id: number }).id;
  const returnPath = returnPathFor(VERP, tokenId);
  const attempt = db.prepare(`INSERT INTO attempts (recipient_id, message_id, started_at, duration_ms, mail_from, outcome) VALUES (?, ?, ?, 5, ?, 'delivered')`);
  for (const row of rows) attempt.run(row.id, row.messageId, new Date().toISOString(), returnPath);
  db.prepare(`UPDATE recipients SET status = 'delivered', next_attempt_at = NULL WHERE message_id = ?`).run((rows[0] as { messageId: number }).messageId);
  return { tokenId, returnPath };
}

/** Parses `raw`, applies it to a store that delivered to its recipients, and returns both sides. */
async function applyReport(raw: Buffer): Promise<{ printed: ParseOutput; applied: boolean; stored: Map<string, StoredEvent>; seededFor: Array<string | null> }> {
  const parsed = await parseReport(raw);
  const printed = toParseOutput(parsed);
  const addresses = parsed.recipients.map((r) => normalized(r.recipient));
  const distinct = [...new Set(addresses.filter((a): a is string => a !== null))];
  // One entry is matched to the token's recipient whatever address it names (forwarding, an
  // alias); several are matched by address, so each readable address gets its own row.
  const seededFor = parsed.recipients.length <= 1 ? [addresses[0] ?? PLACEHOLDER] : addresses;
  const { tokenId, returnPath } = await seed(parsed.recipients.length <= 1 ? [addresses[0] ?? PLACEHOLDER] : distinct.length > 0 ? distinct : [PLACEHOLDER]);
  const receivedAt = new Date().toISOString();
  const reportId = Number(
    db
      .prepare(`INSERT INTO inbound_reports (received_at, client_ip, mail_from, rcpt_to, recipient_id, size, raw) VALUES (?, '127.0.0.1', '', ?, ?, ?, ?)`)
      .run(receivedAt, returnPath, tokenId, raw.length, raw).lastInsertRowid,
  );
  applier.apply(reportId, parsed, { receivedAt, rcptTo: returnPath, recipientId: tokenId });
  const events = db
    .prepare(`
      SELECT r.address, e.event, e.reason, e.severity, e.bounce_type AS type, e.category, e.enhanced_code AS enhancedCode
        FROM events e JOIN recipients r ON r.id = e.recipient_id WHERE e.report_id = ?`)
    .all(reportId) as StoredEvent[];
  const applied = !['autoreply', 'delivered', 'unknown'].includes(parsed.kind);
  return { printed, applied, stored: new Map(events.map((e) => [e.address.toLowerCase(), e])), seededFor };
}

/** Compares, recipient by recipient, the stored event with the printed classification. */
async function compareFile(file: string): Promise<Compared> {
  const { printed, applied, stored, seededFor } = await applyReport(readFileSync(file));
  const result: Compared = { compared: 0, unmatched: 0, mismatches: [] };
  if (!applied) {
    if (stored.size > 0) result.mismatches.push(`${file}: a ${printed.kind} report changed ${stored.size} recipient(s)`);
    return result;
  }
  const seen = new Set<string>();
  printed.recipients.forEach((recipient, index) => {
    const address = seededFor[index] ?? null;
    if (address === null) {
      result.unmatched++;
      return;
    }
    // The same address twice in one report: the first entry is applied, the rest are repeats.
    if (seen.has(address)) return;
    seen.add(address);
    const event = stored.get(address);
    const want = { severity: recipient.severity, type: recipient.type, category: recipient.category, enhancedCode: printed.kind === 'complaint' ? null : recipient.status };
    if (!event) {
      // Only a recipient that did not fail (delivered, relayed, expanded) is left unchanged.
      if (recipient.action === 'failed' || recipient.action === 'delayed' || recipient.action === null) {
        result.mismatches.push(`${file} #${index}: ${address} (${recipient.action}) was not applied`);
      }
      return;
    }
    result.compared++;
    const got = { severity: event.severity, type: event.type, category: event.category, enhancedCode: printed.kind === 'complaint' ? null : event.enhancedCode };
    if (JSON.stringify(got) !== JSON.stringify(want)) result.mismatches.push(`${file} #${index}: stored ${JSON.stringify(got)}, printed ${JSON.stringify(want)}`);
  });
  return result;
}

function emlFilesUnder(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...emlFilesUnder(path));
    else if (entry.name.endsWith('.eml')) files.push(path);
  }
  return files.sort();
}

async function compareAll(files: string[]): Promise<Compared> {
  const total: Compared = { compared: 0, unmatched: 0, mismatches: [] };
  for (const file of files) {
    const one = await compareFile(file);
    total.compared += one.compared;
    total.unmatched += one.unmatched;
    total.mismatches.push(...one.mismatches);
  }
  return total;
}

/** Postfix gives up after maximal_queue_lifetime: Action failed, Status 4.4.1, the last connect error. */
function postfixGiveUp(recipient: string): string {
  return [
    'From: MAILER-DAEMON@mx.example.test (Mail Delivery System)',
    'To: bounces@bounces.relay.test',
    'Subject: Undelivered Mail Returned to Sender',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"',
    '',
    '--B',
    'Content-Type: text/plain',
    '',
    'This is the mail system at host mx.example.test.',
    '',
    '--B',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.example.test',
    '',
    `Final-Recipient: rfc822; ${recipient}`,
    'Action: failed',
    'Status: 4.4.1',
    'Diagnostic-Code: X-Postfix; connect to store.example.test[192.0.2.1]:25: Connection timed out',
    '',
    '--B--',
    '',
  ].join('\r\n');
}

describe('one classification: the applier stores what the parser printed', () => {
  it('stores a Postfix give-up (failed, 4.4.1, connection timed out) as `rebound parse --json` prints it: message-expired', async () => {
    const file = join(temp.dir, 'postfix-give-up.eml');
    writeFileSync(file, postfixGiveUp('late@example.test'));
    const { stdout } = await execFileAsync(process.execPath, [CLI, 'parse', '--json', file], { cwd: PROJECT_ROOT });
    const printed = JSON.parse(stdout) as ParseOutput;
    expect(printed.recipients[0]).toMatchObject({ action: 'failed', status: '4.4.1', severity: 'temporary', category: 'message-expired' });
    const { stored } = await applyReport(readFileSync(file));
    expect(stored.get('late@example.test')).toEqual({
      address: 'late@example.test',
      event: 'permanent_fail',
      reason: 'bounced',
      severity: 'temporary',
      type: 'soft',
      category: 'message-expired',
      enhancedCode: '4.4.1',
    });
  });

  it('on every fixture in fixtures/dsn', async () => {
    const files = emlFilesUnder(FIXTURES);
    expect(files.length).toBeGreaterThan(10);
    const result = await compareAll(files);
    expect(result.mismatches).toEqual([]);
    expect(result.compared).toBeGreaterThan(files.length / 2);
  });

  it.skipIf(!existsSync(CORPUS))('on every file of the DEV corpus (../shared/corpus/dsn)', async () => {
    const files = emlFilesUnder(CORPUS);
    const result = await compareAll(files);
    expect(result.mismatches).toEqual([]);
    expect(result.compared).toBeGreaterThan(files.length / 2);
  }, 120_000);
});
