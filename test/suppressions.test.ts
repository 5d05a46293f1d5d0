import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../src/store/database.js';
import { parseSuppressionCsv, readSuppressionCsv, type CsvImportResult } from '../src/suppressions/csv.js';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';
import { startFakeMx } from './support/fake-mx.js';
import { startTestRelay, writeTestConfig } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A fresh store and a config file pointing at it. */
function installation(): { configFile: string; dir: string } {
  const temp = makeTempDir();
  cleanups.push(temp.remove);
  const configFile = writeTestConfig(temp.dir);
  openStore(join(temp.dir, 'rebound.sqlite')).close();
  return { configFile, dir: temp.dir };
}

function rebound(configFile: string, args: string[]): Promise<Result> {
  return new Promise((resolve) =>
    execFile(process.execPath, [CLI, ...args, '--config', configFile], { cwd: PROJECT_ROOT, env: { ...process.env, REBOUND_CONFIG: '' } }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

describe('rebound suppressions', () => {
  it('adds, shows, lists, removes, with every change audited and addresses normalised one way', async () => {
    const { configFile } = installation();
    expect(await rebound(configFile, ['suppressions', 'add', 'Someone@Bücher.Example', '--type', 'bounces', '--reason', 'ticket 42'])).toMatchObject({
      code: 0,
      stdout: 'Someone@xn--bcher-kva.example added to bounces\n',
    });
    await rebound(configFile, ['suppressions', 'add', 'other@example.com', '--type', 'unsubscribes', '--reason', 'asked by phone']);

    const listed = JSON.parse((await rebound(configFile, ['suppressions', 'list', '--json'])).stdout) as { total: number; entries: Array<{ address: string; type: string; source: string }> };
    expect(listed.total).toBe(2);
    expect(listed.entries.map((e) => [e.address, e.type, e.source])).toEqual([
      ['other@example.com', 'unsubscribes', 'manual'],
      ['Someone@xn--bcher-kva.example', 'bounces', 'manual'],
    ]);
    const searched = JSON.parse((await rebound(configFile, ['suppressions', 'list', '--search', 'bcher', '--type', 'bounces', '--json'])).stdout) as { total: number };
    expect(searched.total).toBe(1);

    // The local part keeps its case (RFC 5321 2.4: the receiving host decides); only the domain is folded.
    expect((await rebound(configFile, ['suppressions', 'show', 'someone@xn--bcher-kva.example'])).code).toBe(2);
    const exact = JSON.parse((await rebound(configFile, ['suppressions', 'show', 'Someone@bücher.example'])).stdout) as { suppressed: boolean; entries: unknown[]; audit: Array<{ action: string; actor: string; reason: string }> };
    expect(exact.suppressed).toBe(true);
    expect(exact.audit).toEqual([expect.objectContaining({ action: 'add', list: 'bounces', actor: expect.stringMatching(/^cli/), reason: 'ticket 42' })]);

    expect(await rebound(configFile, ['suppressions', 'remove', 'Someone@bücher.example', '--reason', 'fixed'])).toMatchObject({ code: 0, stdout: 'Someone@xn--bcher-kva.example removed from bounces\n' });
    const after = JSON.parse((await rebound(configFile, ['suppressions', 'show', 'Someone@bücher.example'])).stdout) as { suppressed: boolean; audit: Array<{ action: string }> };
    expect(after.suppressed).toBe(false);
    expect(after.audit.map((a) => a.action)).toEqual(['add', 'remove']);
  });

  it.each([
    [['suppressions', 'add', 'not-an-address', '--type', 'bounces', '--reason', 'x'], 'rebound: "not-an-address" is not an email address (local@domain)\n'],
    [['suppressions', 'add', 'a@b.example', '--type', 'spam', '--reason', 'x'], 'rebound: --type: "spam" is not one of bounces, complaints, unsubscribes\n'],
    [['suppressions', 'remove', 'nobody@example.com'], 'rebound: nobody@example.com is not on any suppression list\n'],
    [['suppressions', 'show', 'nobody@example.com'], 'rebound: nobody@example.com is on no list and has no history\n'],
    [['suppressions', 'export', '--format', 'xml'], 'rebound: --format: "xml" is not csv or json\n'],
    [['suppressions', 'import', '/nonexistent.csv'], 'rebound: cannot read /nonexistent.csv (ENOENT)\n'],
  ])('refuses %j with an exact message', async (args, message) => {
    const { configFile } = installation();
    const result = await rebound(configFile, args);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(message);
  });

  it('imports a CSV, reporting bad rows by line while the good rows land, and exports CSV (RFC 4180) and JSON', async () => {
    const { configFile, dir } = installation();
    const file = join(dir, 'import.csv');
    writeFileSync(
      file,
      'address,type,reason\r\n' +
        'good1@example.com,bounces,old list\r\n' +
        'not an address,bounces,x\r\n' +
        '\r\n' +
        'good2@Example.COM,complaints,"said ""stop"", twice"\r\n' +
        'good3@example.com,junk,x\r\n',
    );
    const result = await rebound(configFile, ['suppressions', 'import', file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`${file}:3: "not an address" is not an email address\n${file}:6: type "junk" is not one of bounces, complaints, unsubscribes\n`);
    expect(result.stdout).toBe('2 imported, 2 rejected\n');

    const csv = (await rebound(configFile, ['suppressions', 'export'])).stdout;
    expect(csv.split('\r\n')[0]).toBe('address,type,source,category,code,enhanced_code,text,reason,queue_id,first_at,last_at,count');
    const records = parse(csv, { columns: true }) as Array<Record<string, string>>;
    expect(records.map((r) => [r.address, r.type, r.source, r.reason])).toEqual(
      expect.arrayContaining([
        ['good1@example.com', 'bounces', 'import', 'old list'],
        ['good2@example.com', 'complaints', 'import', 'said "stop", twice'],
      ]),
    );
    const json = JSON.parse((await rebound(configFile, ['suppressions', 'export', '--format', 'json', '--type', 'complaints'])).stdout) as Array<{ address: string }>;
    expect(json.map((e) => e.address)).toEqual(['good2@example.com']);
  });

  it('reads CSV without a type column when a type is given, and explains a file without an address column', () => {
    expect(parseSuppressionCsv('address\nx@example.com\n', 'unsubscribes')).toEqual({ rows: [{ line: 2, address: 'x@example.com', type: 'unsubscribes', reason: null }], errors: [] });
    expect(parseSuppressionCsv('email,type\nx@example.com,bounces\n')).toEqual({ rows: [], errors: [{ line: 1, message: 'the header row has no "address" column' }] });
    expect(parseSuppressionCsv('address\nx@example.com\n')).toMatchObject({ errors: [{ line: 1, message: expect.stringMatching(/no "type" column/) }] });
    expect(parseSuppressionCsv('')).toMatchObject({ errors: [{ line: 1, message: expect.stringMatching(/empty/) }] });
  });

  it('reads a file in batches exactly as at once: lines of multi-line fields, mixed line ends, a BOM, long non-ASCII reasons', async () => {
    const text =
      '\uFEFF\naddress,reason\r\n' +
      'a@example.com,"two\nlines 😀"\r\n' +
      '\r\n' +
      'b@example.com,crlf above\n' +
      'c@example.com,lf above\r' +
      'not an address\n' +
      `d@example.com,${'😀'.repeat(20_000)}\n`;
    const atOnce = parseSuppressionCsv(text, 'bounces');
    expect(atOnce.rows.map((r) => [r.line, r.address])).toEqual([
      [3, 'a@example.com'],
      [6, 'b@example.com'],
      [7, 'c@example.com'],
      [9, 'd@example.com'],
    ]);
    expect(atOnce.errors).toEqual([{ line: 8, message: '"not an address" is not an email address' }]);
    expect(atOnce.rows[3]?.reason).toBe('😀'.repeat(20_000));
    const batches: CsvImportResult[] = [];
    for await (const batch of readSuppressionCsv(text, 'bounces', 2)) batches.push(batch);
    expect(batches.length).toBeGreaterThan(1);
    expect({ rows: batches.flatMap((b) => b.rows), errors: batches.flatMap((b) => b.errors) }).toEqual(atOnce);
  });

  it('the allowlist overrides a suppression at delivery, for an address or a whole domain', async () => {
    const mx = await startFakeMx();
    cleanups.push(() => mx.close());
    const relay = await startTestRelay({ delivery: { enabled: true, pollIntervalMs: 50, routes: { 'example.test': `127.0.0.1:${mx.port}` } } });
    cleanups.push(() => relay.stop());
    const configFile = writeTestConfig(relay.dir, { store: { path: relay.config.store.path } });
    await rebound(configFile, ['suppressions', 'add', 'vip@example.test', '--type', 'bounces', '--reason', 'old bounce']);
    await rebound(configFile, ['suppressions', 'add', 'blocked@example.test', '--type', 'bounces', '--reason', 'old bounce']);
    expect((await rebound(configFile, ['suppressions', 'allow', 'vip@example.test', '--reason', 'mailbox fixed'])).stdout).toBe('vip@example.test (address) allowlisted\n');
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true });
    await transport.sendMail({ from: 'app@shop.example', to: ['vip@example.test', 'blocked@example.test'], text: 'x' });
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && (relay.db.prepare("SELECT count(*) AS n FROM recipients WHERE status IN ('delivered', 'suppressed')").get() as { n: number }).n < 2) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(relay.db.prepare('SELECT address, status FROM recipients ORDER BY id').all()).toEqual([
      { address: 'vip@example.test', status: 'delivered' },
      { address: 'blocked@example.test', status: 'suppressed' },
    ]);
    expect((await rebound(configFile, ['suppressions', 'allow', 'example.test', '--reason', 'our own domain'])).stdout).toBe('example.test (domain) allowlisted\n');
    const shown = JSON.parse((await rebound(configFile, ['suppressions', 'show', 'blocked@example.test'])).stdout) as { suppressed: boolean; allowlist: Array<{ kind: string }> };
    expect(shown).toMatchObject({ suppressed: false, allowlist: [{ kind: 'domain' }] });
    expect((await rebound(configFile, ['suppressions', 'disallow', 'example.test'])).stdout).toBe('example.test removed from the allowlist\n');
  });
});
