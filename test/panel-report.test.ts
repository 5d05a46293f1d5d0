import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ExcelJS from 'exceljs';
import nodemailer from 'nodemailer';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeMx, type FakeMx, type ScriptedReply } from './support/fake-mx.js';
import { ADMIN_TOKEN, DESKTOP, fitsViewport, PANEL_TOKENS, panelBrowser, PHONE, screenshot, signIn, VIEWER_TOKEN } from './support/panel-browser.js';
import { FAST_DELIVERY, startTestRelay, type TestRelay } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const execFileAsync = promisify(execFile);
const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(PROJECT_ROOT, 'dist/cli.js');

const browser = panelBrowser();

// ---------------------------------------------------------------------------------------------
// The store, filled once through the real path: a relay delivering to a fake MX on 127.0.0.1
// that answers each recipient by its local part.

function scriptedReply(address: string): ScriptedReply | null {
  if (address.startsWith('hard-')) return { code: 550, text: `5.1.1 <${address}>: Recipient address rejected: User unknown` };
  if (address.startsWith('full-')) return { code: 552, text: `5.2.2 <${address}>: Mailbox full` };
  if (address.startsWith('spam-')) return { code: 554, text: '5.7.1 Message rejected as spam' };
  if (address.startsWith('busy-')) return { code: 452, text: `4.2.2 <${address}>: Mailbox full, try again later` };
  return null;
}

/** A campaign id a careless (or hostile) sender could set: markup and quotes, shown as text. */
const MARKUP_CAMPAIGN = `<b>"sale" & it's more</b>`;

interface Planned {
  from: string;
  campaign: string | null;
  to: string[];
}

const PLAN: Planned[] = [
  { from: 'news@shop.example', campaign: 'spring', to: ['hard-1@alpha.test', 'full-1@alpha.test', 'ok-1@alpha.test', 'ok-2@beta.test'] },
  { from: 'news@shop.example', campaign: 'spring', to: ['full-2@alpha.test', 'full-3@beta.test', 'spam-1@gamma.test'] },
  { from: 'alerts@bank.example', campaign: 'autumn', to: ['hard-2@beta.test', 'full-4@alpha.test', 'ok-3@gamma.test'] },
  // busy-1 is deferred twice, then expires on the third try (maxAttempts 3).
  { from: 'alerts@bank.example', campaign: null, to: ['busy-1@alpha.test', 'hard-3@gamma.test'] },
  { from: 'promo@deals.example', campaign: MARKUP_CAMPAIGN, to: ['hard-4@alpha.test', 'ok-4@alpha.test'] },
  // hard-1 bounced hard above: it is on the bounces list now and dropped unsent.
  { from: 'news@shop.example', campaign: null, to: ['hard-1@alpha.test', 'ok-5@beta.test'] },
];

const FINAL = ['delivered', 'bounced', 'expired', 'suppressed'];

let relay: TestRelay;
let mx: FakeMx;
let base: string;
let configFile: string;
let seededFrom: Date;

async function send(message: Planned): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true });
  const info = await transport.sendMail({
    from: message.from,
    to: message.to,
    subject: 'News',
    text: 'Hello.\r\n',
    // prepared: the value as written, not RFC 2047-encoded (the relay stores the header's text as it came).
    // The spring campaign's mail is tagged too (X-Mailgun-Tag), so the report by tag has rows to show.
    headers: message.campaign
      ? { 'X-Campaign-ID': { prepared: true, value: message.campaign }, ...(message.campaign === 'spring' ? { 'X-Mailgun-Tag': 'Spring-News' } : {}) }
      : {},
  });
  const queueId = info.response.split(' ').pop() as string;
  await waitFor(
    `${queueId} to be final`,
    () => relay.db.prepare('SELECT r.status FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ?').all(queueId) as Array<{ status: string }>,
    (rows) => rows.length === message.to.length && rows.every((row) => FINAL.includes(row.status)),
    15_000,
  );
}

beforeAll(async () => {
  mx = await startFakeMx({ rcpt: (address) => scriptedReply(address) });
  const route = `127.0.0.1:${mx.port}`;
  relay = await startTestRelay({
    admin: { enabled: true, port: 0, tokens: PANEL_TOKENS },
    delivery: {
      ...FAST_DELIVERY,
      routes: { 'alpha.test': route, 'beta.test': route, 'gamma.test': route },
      localAddresses: ['127.0.0.2', '127.0.0.3'],
    },
  });
  const admin = relay.relay.admin;
  if (!admin) throw new Error('the test relay started without its admin server');
  base = `http://127.0.0.1:${admin.port}`;
  configFile = join(relay.dir, 'config.json');
  seededFrom = new Date();
  for (const message of PLAN) await send(message);
}, 60_000);

afterAll(async () => {
  await relay?.stop();
  await mx?.close();
});

const day = (date: Date): string => date.toISOString().slice(0, 10);
const dayAfter = (date: Date): string => day(new Date(date.getTime() + 24 * 60 * 60 * 1000));

// ---------------------------------------------------------------------------------------------

interface CliOutput {
  csv: string;
  workbook: ExcelJS.Workbook;
}

/** `rebound report bounces` as an operator runs it, against the relay's own config, as CSV and as XLSX. */
async function cliReport(args: string[], config = configFile): Promise<CliOutput> {
  const env = { ...process.env, REBOUND_CONFIG: '' };
  const csv = await execFileAsync(process.execPath, [CLI, 'report', 'bounces', ...args, '--format', 'csv', '--config', config], { cwd: PROJECT_ROOT, env });
  const temp = makeTempDir();
  try {
    const out = join(temp.dir, 'cli.xlsx');
    await execFileAsync(process.execPath, [CLI, 'report', 'bounces', ...args, '--format', 'xlsx', '--out', out, '--config', config], { cwd: PROJECT_ROOT, env });
    const workbook = new ExcelJS.Workbook();
    await workbook.xlsx.load(readFileSync(out) as unknown as ArrayBuffer);
    return { csv: csv.stdout, workbook };
  } finally {
    temp.remove();
  }
}

/** Every sheet's cell values, row by row; the time the workbook was made is left out (it is "now" for each). */
function cellValues(workbook: ExcelJS.Workbook): Record<string, unknown[][]> {
  const sheets: Record<string, unknown[][]> = {};
  workbook.eachSheet((sheet) => {
    const rows: unknown[][] = [];
    sheet.eachRow({ includeEmpty: true }, (row) => {
      const values = (row.values as unknown[]).slice(1);
      if (values[0] !== 'generated at') rows.push(values);
    });
    sheets[sheet.name] = rows;
  });
  return sheets;
}

async function tableRows(page: Page): Promise<string[][]> {
  return page.locator('#bounces-table tbody tr').evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent ?? '')));
}

async function tableHeaders(page: Page): Promise<string[]> {
  return page.locator('#bounces-table thead th').allTextContents();
}

async function alertText(page: Page): Promise<string> {
  return (await page.getByRole('alert').textContent()) ?? '';
}

/** The 400 a refused form answers is logged by Chromium as a failed resource; that one is expected, nothing else. */
function expectRefusalLogged(count: number): void {
  const refusals = browser.problems.filter((problem) => /status of 400/.test(problem));
  expect(refusals).toHaveLength(count);
  browser.problems.splice(0, browser.problems.length, ...browser.problems.filter((problem) => !/status of 400/.test(problem)));
}

// ---------------------------------------------------------------------------------------------

describe('the overview with mail in the store', () => {
  it('counts today\'s mail, names the top bouncing domain and draws the bounces chart', async () => {
    const sameDay = day(seededFrom) === day(new Date());
    // What the fake MX was asked and answered: 16 recipients accepted; ok-1..5 delivered; the
    // hard-, full- and spam- ones and busy-1 (expired) bounced; busy-1 deferred twice; hard-1 dropped once.
    const expected = { accepted: 16, delivered: 5, deferred: 2, bounced: 10, suppressed: 1 };
    expect(mx.received.flatMap((m) => m.to).sort()).toEqual(['ok-1@alpha.test', 'ok-2@beta.test', 'ok-3@gamma.test', 'ok-4@alpha.test', 'ok-5@beta.test']);

    for (const viewport of [DESKTOP, PHONE]) {
      const page = await browser.page(viewport);
      await signIn(page, base, ADMIN_TOKEN);
      for (const [figure, count] of Object.entries(expected)) {
        const card = page.locator(`[data-figure="${figure}"]`);
        if (sameDay) await expect(card.locator('.big').textContent(), `${figure} today`).resolves.toBe(String(count));
        await expect(card.locator('p').nth(1).textContent(), `${figure} in 7 days`).resolves.toBe(`${count} in 7 days`);
      }
      const top = await page.getByRole('region', { name: 'Top bouncing domains' }).locator('tbody tr').evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent)));
      expect(top).toEqual([
        ['alpha.test', '6'],
        ['beta.test', '2'],
        ['gamma.test', '2'],
      ]);
      const canvas = page.locator('#bounces-chart');
      await expect(canvas.isVisible()).resolves.toBe(true);
      const width = await canvas.evaluate((element) => (element as unknown as { width: number }).width);
      expect(width).toBeGreaterThan(0);
      await expect(page.locator('.empty-note').isHidden()).resolves.toBe(true);
      // Chart.js drew one stack per category that bounced, in the fixed category order, each in its
      // own colour whatever else bounced that day (bad-mailbox is always the second colour).
      const datasets = await canvas.evaluate((element) =>
        (globalThis as unknown as { Chart: { getChart(c: unknown): { data: { datasets: Array<{ label: string; data: number[]; backgroundColor: string }> } } } }).Chart.getChart(element).data.datasets.map(
          (set) => [set.label, set.data.reduce((a, b) => a + b, 0), set.backgroundColor],
        ),
      );
      expect(datasets).toEqual([
        ['bad-mailbox', 4, '#b3261e'],
        ['spam-related', 1, '#c2185b'],
        ['message-expired', 1, '#455a64'],
        ['quota-issues', 4, '#283593'],
      ]);
      await expect(fitsViewport(page)).resolves.toBe(true);
      await screenshot(page, 'overview-with-data');
    }
  });
});

describe('the bounces report page', () => {
  it('filters and groups by tag, typed in any case, with the CLI line and a CSV that are the CLI\'s', async () => {
    const page = await browser.page();
    await signIn(page, base, ADMIN_TOKEN);
    const from = day(seededFrom);
    const to = day(new Date());
    await page.goto(`${base}/report?from=${from}&to=${to}&tag=Spring-News&group_by=tag&type=all`);
    await expect(page.getByLabel('Tag').inputValue()).resolves.toBe('Spring-News');
    await expect(page.getByLabel('Group by').inputValue()).resolves.toBe('tag');
    expect(await tableHeaders(page)).toEqual(['tag', 'amount', 'type', 'category', 'reason', 'bounce_text']);
    const rows = await tableRows(page);
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row[0]).toBe('spring-news');
    const cliArgs = ['--since', from, '--until', dayAfter(new Date()), '--tag=spring-news', '--group-by', 'tag', '--type', 'all'];
    await expect(page.locator('code.cli').textContent()).resolves.toBe(`rebound report bounces ${cliArgs.join(' ')}`);
    const cli = await cliReport(cliArgs);
    const download = await page.request.get(`${base}/report/bounces.csv?from=${from}&to=${to}&tag=SPRING-NEWS&group_by=tag&type=all`);
    expect(await download.text()).toBe(cli.csv);
    // The tag filter gives what the campaign filter gives, since the tag marks exactly that campaign.
    const byCampaign = await cliReport(['--since', from, '--until', dayAfter(new Date()), '--campaign=spring', '--group-by', 'recipient-domain', '--type', 'all']);
    const byTag = await cliReport(['--since', from, '--until', dayAfter(new Date()), '--tag', 'spring-news', '--group-by', 'recipient-domain', '--type', 'all']);
    expect(byTag.csv).toBe(byCampaign.csv);
  });

  it('runs the report for a campaign and a grouping, and its CSV and Excel downloads are what `rebound report bounces` gives', async () => {
    const page = await browser.page();
    await signIn(page, base, ADMIN_TOKEN);
    await page.getByRole('navigation').getByRole('link', { name: 'Bounces report' }).click();
    await page.waitForURL(`${base}/report`);
    await expect(page.getByRole('heading', { name: 'Bounces report' }).isVisible()).resolves.toBe(true);

    // The campaigns that bounced are the choices, in order; the markup one is plain text.
    const choices = await page.getByLabel('Campaign').locator('option').allTextContents();
    expect(choices).toEqual(['All campaigns', MARKUP_CAMPAIGN, 'autumn', 'spring']);

    const today = day(new Date());
    await page.getByLabel('From').fill(day(seededFrom));
    await page.getByLabel('To').fill(today);
    await page.getByLabel('Campaign').selectOption('spring');
    await page.getByLabel('Group by').selectOption('recipient-domain');
    await page.getByLabel('Type').selectOption('all');
    await page.getByRole('button', { name: 'Show report' }).click();
    await page.waitForURL(/group_by=recipient-domain/);
    const url = new URL(page.url());
    expect(Object.fromEntries(url.searchParams)).toEqual({ from: day(seededFrom), to: today, campaign: 'spring', tag: '', group_by: 'recipient-domain', type: 'all' });

    expect(await tableHeaders(page)).toEqual(['recipient-domain', 'amount', 'type', 'category', 'reason', 'bounce_text']);
    expect(await tableRows(page)).toEqual([
      ['alpha.test', '2', 'soft', 'quota-issues', 'bounced', '552 5.2.2 <{recipient}>: Mailbox full'],
      ['alpha.test', '1', 'hard', 'bad-mailbox', 'bounced', '550 5.1.1 <{recipient}>: Recipient address rejected: User unknown'],
      ['beta.test', '1', 'soft', 'quota-issues', 'bounced', '552 5.2.2 <{recipient}>: Mailbox full'],
      ['gamma.test', '1', 'hard', 'spam-related', 'blocked', '554 5.7.1 Message rejected as spam'],
    ]);
    await expect(page.locator('.total').textContent()).resolves.toBe('5 bounces in 4 rows.');
    const cliArgs = ['--since', day(seededFrom), '--until', dayAfter(new Date()), '--campaign=spring', '--group-by', 'recipient-domain', '--type', 'all'];
    await expect(page.locator('code.cli').textContent()).resolves.toBe(`rebound report bounces ${cliArgs.join(' ')}`);

    const cli = await cliReport(cliArgs);
    expect(cli.csv.split('\r\n')).toHaveLength(6); // header, 4 rows, the empty string after the last CRLF

    const [csvDownload] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download CSV' }).click()]);
    expect(csvDownload.suggestedFilename()).toBe(`bounces-${day(seededFrom)}-${dayAfter(new Date())}.csv`);
    const csv = readFileSync(await csvDownload.path());
    expect(csv.equals(Buffer.from(cli.csv, 'utf8')), 'the downloaded CSV has the CLI\'s bytes').toBe(true);

    const [xlsxDownload] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download Excel' }).click()]);
    expect(xlsxDownload.suggestedFilename()).toBe(`bounces-${day(seededFrom)}-${dayAfter(new Date())}.xlsx`);
    const workbook = new ExcelJS.Workbook();
    await workbook.xlsx.load(readFileSync(await xlsxDownload.path()) as unknown as ArrayBuffer);
    const cells = cellValues(workbook);
    expect(cells).toEqual(cellValues(cli.workbook));
    expect(cells.Bounces).toHaveLength(5);
    expect(cells.Report).toContainEqual(['campaign', 'spring']);

    await expect(fitsViewport(page)).resolves.toBe(true);
    await screenshot(page, 'report');
  });

  it('changes the grouping with the form, keeps the other fields with a quick period, and matches the CLI for all campaigns', async () => {
    const page = await browser.page();
    await signIn(page, base, ADMIN_TOKEN);
    await page.goto(`${base}/report`);
    // With nothing asked, the last 7 days (UTC) and the CLI's defaults: all campaigns, from-domain, soft.
    const today = new Date();
    await expect(page.getByLabel('From').inputValue()).resolves.toBe(day(new Date(today.getTime() - 6 * 86_400_000)));
    await expect(page.getByLabel('To').inputValue()).resolves.toBe(day(today));
    await expect(page.getByLabel('Group by').inputValue()).resolves.toBe('from-domain');
    await expect(page.getByLabel('Type').inputValue()).resolves.toBe('soft');
    expect(await tableRows(page)).toEqual([
      ['shop.example', '3', 'soft', 'quota-issues', 'bounced', '552 5.2.2 <{recipient}>: Mailbox full'],
      ['bank.example', '2', 'soft', 'quota-issues', 'deferred', '452 4.2.2 <{recipient}>: Mailbox full, try again later'],
      ['bank.example', '1', 'soft', 'quota-issues', 'bounced', '552 5.2.2 <{recipient}>: Mailbox full'],
      ['bank.example', '1', 'soft', 'message-expired', 'expired', 'gave up after 3 attempts; last: 452 4.2.2 <{recipient}>: Mailbox full, try again later'],
    ]);

    // A quick period keeps what was picked in the other fields, and leaves days in the address.
    await page.getByLabel('Group by').selectOption('category');
    await page.getByLabel('Type').selectOption('all');
    await page.getByRole('button', { name: 'Today' }).click();
    await page.waitForURL(/group_by=category/);
    expect(Object.fromEntries(new URL(page.url()).searchParams)).toEqual({ from: day(today), to: day(today), group_by: 'category', type: 'all' });
    expect(await tableHeaders(page)).toEqual(['category', 'amount', 'type', 'reason', 'bounce_text']);
    const rows = await tableRows(page);
    expect(rows.map((row) => [row[0], row[1]])).toEqual([
      ['bad-mailbox', '4'],
      ['quota-issues', '4'],
      ['quota-issues', '2'],
      ['message-expired', '1'],
      ['spam-related', '1'],
    ]);

    const [csvDownload] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download CSV' }).click()]);
    const cli = await cliReport(['--since', day(today), '--until', dayAfter(today), '--group-by', 'category', '--type', 'all']);
    expect(readFileSync(await csvDownload.path(), 'utf8')).toBe(cli.csv);

    // The markup campaign: chosen from the list, shown as the text it is.
    await page.getByLabel('Campaign').selectOption(MARKUP_CAMPAIGN);
    await page.getByRole('button', { name: 'Show report' }).click();
    await page.waitForURL(/campaign=/);
    await expect(page.locator('.report-title').textContent()).resolves.toContain(`campaign ${MARKUP_CAMPAIGN}`);
    await expect(page.locator('main b').count()).resolves.toBe(0);
    expect((await tableRows(page)).map((row) => [row[0], row[1]])).toEqual([['bad-mailbox', '1']]);
    const [markupCsv] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download CSV' }).click()]);
    const markupCli = await cliReport(['--since', day(today), '--until', dayAfter(today), `--campaign=${MARKUP_CAMPAIGN}`, '--group-by', 'category', '--type', 'all']);
    expect(readFileSync(await markupCsv.path(), 'utf8')).toBe(markupCli.csv);
    // The command line the page shows is one a shell reads back to the same campaign.
    const line = (await page.locator('code.cli').textContent()) ?? '';
    expect(line).toBe(`rebound report bounces --since ${day(today)} --until ${dayAfter(today)} '--campaign=<b>"sale" & it'\\''s more</b>' --group-by category --type all`);
    const shell = await execFileAsync('/bin/sh', ['-c', `${line.replace(/^rebound /, `'${process.execPath}' '${CLI}' `)} --format csv --config '${configFile}'`], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, REBOUND_CONFIG: '' },
    });
    expect(shell.stdout).toBe(markupCli.csv);
  });

  it('refuses bad input with a message that names the field, and keeps what was typed', async () => {
    const page = await browser.page(PHONE);
    await signIn(page, base, ADMIN_TOKEN);
    await page.goto(`${base}/report`);
    await page.getByLabel('From').fill('2026-03-10');
    await page.getByLabel('To').fill('2026-03-01');
    await page.getByLabel('Group by').selectOption('ip');
    const [response] = await Promise.all([page.waitForResponse((r) => r.url().startsWith(`${base}/report?`)), page.getByRole('button', { name: 'Show report' }).click()]);
    expect(response.status()).toBe(400);
    await expect(alertText(page)).resolves.toBe('From (2026-03-10) is after To (2026-03-01): the period runs from the From day to the To day, both included; swap them or pick another day');
    await expect(page.getByLabel('From').inputValue()).resolves.toBe('2026-03-10');
    await expect(page.getByLabel('To').inputValue()).resolves.toBe('2026-03-01');
    await expect(page.getByLabel('Group by').inputValue()).resolves.toBe('ip');
    await expect(page.locator('#bounces-table').count()).resolves.toBe(0);
    await expect(page.getByRole('link', { name: 'Download CSV' }).count()).resolves.toBe(0);
    await expect(fitsViewport(page)).resolves.toBe(true);
    await screenshot(page, 'report-refused');

    // Addresses edited by hand, as a careless client or an attacker would send them.
    const refusals: Array<[string, string]> = [
      ['from=2026-02-30&to=2026-03-01', 'From: "2026-02-30" is not a day; pick one in the calendar or write it as YYYY-MM-DD (UTC), e.g. 2026-11-01'],
      ['from=2026-03-01T10:00&to=2026-03-02', 'From: "2026-03-01T10:00" is not a day; pick one in the calendar or write it as YYYY-MM-DD (UTC), e.g. 2026-11-01'],
      ['from=2026-03-01&to=yesterday', 'To: "yesterday" is not a day; pick one in the calendar or write it as YYYY-MM-DD (UTC), e.g. 2026-11-01'],
      ['from=&to=2026-03-01', 'From: pick the first day of the period (a day, YYYY-MM-DD)'],
      ['from=2026-03-01&to=9999-12-31', 'To: 9999-12-31 is the last day there is; pick an earlier one'],
      ['group_by=domain', 'Group by: "domain" is not one of from-domain, ip, recipient-domain, category, tag'],
      ['type=medium', 'Type: "medium" is not one of soft, hard, all'],
      ['campaign=%20%20', 'Campaign: give a campaign id (the value of the campaign header), or leave Campaign out for all campaigns'],
      ['group_by=ip&group_by=category', 'give group_by once, not 2 times'],
      ['since=2026-03-01', '"since" is not a field of this report; it takes from, to, campaign, tag, group_by, type'],
      ['tag=%07bell', 'Tag: no message can carry this tag; a tag is printable ASCII, at most 128 characters'],
      ['preset=yesterday', '"yesterday" is not a quick period; pick Today, Last 7 days, Last 30 days'],
    ];
    for (const [search, message] of refusals) {
      const answer = await page.goto(`${base}/report?${search}`);
      expect([search, answer?.status()]).toEqual([search, 400]);
      await expect(alertText(page), search).resolves.toBe(message);
      // The download links refuse the same address with the same words, as text.
      if (!search.startsWith('preset')) {
        const download = await page.request.get(`${base}/report/bounces.csv?${search}`);
        expect([search, download.status(), download.headers()['content-type']]).toEqual([search, 400, 'text/plain; charset=utf-8']);
        expect(await download.text()).toBe(`${message}\nOpen the report at /report to pick the period again.`);
      }
    }
    expectRefusalLogged(refusals.length + 1);
  });

  it('takes a huge campaign id without breaking the page, and sends a visitor without a session to sign in, not to the data', async () => {
    const page = await browser.page(PHONE);
    await signIn(page, base, ADMIN_TOKEN);
    const huge = 'x'.repeat(4000);
    const answer = await page.goto(`${base}/report?campaign=${huge}&type=all`);
    expect(answer?.status()).toBe(200);
    await expect(page.locator('.empty').textContent()).resolves.toBe('No bounces in this period.');
    await expect(page.getByLabel('Campaign').inputValue()).resolves.toBe(huge);
    await expect(fitsViewport(page)).resolves.toBe(true);

    for (const path of ['/report?type=all', '/report/bounces.csv?type=all', '/report/bounces.xlsx?type=all']) {
      const signedOut = await fetch(`${base}${path}`, { redirect: 'manual' });
      expect([path, signedOut.status, signedOut.headers.get('location')]).toEqual([path, 303, '/sign-in']);
      expect(await signedOut.text()).not.toContain('alpha.test');
    }
  });

  it('lets a viewer run and download the report, which changes nothing', async () => {
    const count = (): number => (relay.db.prepare('SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM suppressions) AS n').get() as { n: number }).n;
    const before = count();
    for (const viewport of [DESKTOP, PHONE]) {
      const page = await browser.page(viewport);
      await signIn(page, base, VIEWER_TOKEN);
      await page.goto(`${base}/report?from=${day(seededFrom)}&to=${day(new Date())}&group_by=ip&type=hard`);
      await expect(page.getByText('auditor (viewer)').isVisible()).resolves.toBe(viewport === DESKTOP);
      const rows = await tableRows(page);
      // Two source addresses in turn: both show, and together they count the 5 hard bounces (4 bad-mailbox, 1 spam-related).
      expect(new Set(rows.map((row) => row[0]))).toEqual(new Set(['127.0.0.2', '127.0.0.3']));
      expect(rows.reduce((sum, row) => sum + Number(row[1]), 0)).toBe(5);
      // Nothing on the page posts but sign-out.
      expect(await page.locator('form[method="post"]').evaluateAll((forms) => forms.map((form) => form.getAttribute('action')))).toEqual(['/sign-out']);
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download CSV' }).click()]);
      const cli = await cliReport(['--since', day(seededFrom), '--until', dayAfter(new Date()), '--group-by', 'ip', '--type', 'hard']);
      expect(readFileSync(await download.path(), 'utf8')).toBe(cli.csv);
      await expect(fitsViewport(page)).resolves.toBe(true);
      await screenshot(page, 'report-viewer');
      // There is no change to forge: no panel route takes a POST at /report, so the API's bearer check answers.
      const posted = await page.request.post(`${base}/report`, { form: { from: '2026-01-01' } });
      expect(posted.status()).toBe(401);
    }
    expect(count()).toBe(before);
  });

  it('shows the first 500 rows of a long report and says so; the downloads have every row', async () => {
    // Its own relay: 520 recipients refused, each with its own words, are 520 rows.
    const refusing = await startFakeMx({ rcpt: (address) => ({ code: 550, text: `5.1.1 mailbox ${address.split('@')[0]} unknown here` }) });
    // A short shutdown: were anything left under way at stop, the test's own error shows, not a timeout.
    const many = await startTestRelay({
      submission: { shutdownTimeoutSeconds: 2 },
      admin: { enabled: true, port: 0, tokens: PANEL_TOKENS },
      delivery: { ...FAST_DELIVERY, routes: { 'many.test': `127.0.0.1:${refusing.port}` } },
    });
    try {
      const to = Array.from({ length: 520 }, (_, i) => `user-${String(i).padStart(3, '0')}@many.test`);
      await nodemailer.createTransport({ host: '127.0.0.1', port: many.port, ignoreTLS: true }).sendMail({ from: 'news@shop.example', to, subject: 'Many', text: 'Hello.\r\n' });
      await waitFor('520 bounces', () => many.db.prepare(`SELECT count(*) AS n FROM recipients WHERE status = 'bounced'`).get() as { n: number }, (row) => row.n === 520, 20_000);
      const manyBase = `http://127.0.0.1:${many.relay.admin?.port}`;
      const page = await browser.page();
      await signIn(page, manyBase, ADMIN_TOKEN);
      const today = new Date();
      await page.goto(`${manyBase}/report?from=${day(today)}&to=${day(today)}&group_by=recipient-domain&type=hard`);
      await expect(page.locator('#bounces-table tbody tr').count()).resolves.toBe(500);
      await expect(page.locator('.total').textContent()).resolves.toBe('520 bounces in 520 rows; the first 500 are shown here, the downloads have them all.');
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download CSV' }).click()]);
      const csv = readFileSync(await download.path(), 'utf8');
      expect(csv.split('\r\n')).toHaveLength(522);
      expect(csv).toBe((await cliReport(['--since', day(today), '--until', dayAfter(today), '--group-by', 'recipient-domain', '--type', 'hard'], join(many.dir, 'config.json'))).csv);
    } finally {
      await many.stop();
      await refusing.close();
    }
  });

  it('lays the report out at 1280 px and at 390 px without sideways scrolling', async () => {
    for (const viewport of [DESKTOP, PHONE]) {
      const page = await browser.page(viewport);
      await signIn(page, base, ADMIN_TOKEN);
      await page.goto(`${base}/report?from=${day(seededFrom)}&to=${day(new Date())}&group_by=from-domain&type=all`);
      await expect(page.locator('#bounces-table tbody tr').count()).resolves.toBeGreaterThan(5);
      await expect(fitsViewport(page)).resolves.toBe(true);
      await screenshot(page, 'report-all');
    }
  });
});
