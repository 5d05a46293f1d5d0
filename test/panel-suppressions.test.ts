import { runRebound, type CliResult } from './support/cli.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { SuppressionLists, type AddSuppression } from '../src/suppressions/lists.js';
import { ADMIN_TOKEN, DESKTOP, fitsViewport, panelBrowser, panelRelaysStoppedAfterEachTest, PHONE, screenshot, signIn, VIEWER_TOKEN, type PanelRelay } from './support/panel-browser.js';

const startPanel = panelRelaysStoppedAfterEachTest();
const browser = panelBrowser();

/** Writes entries into the relay's store through SuppressionLists, as the relay's bounce handling does. */
function seed({ relay }: PanelRelay, entries: ReadonlyArray<Omit<AddSuppression, 'actor'> & { actor?: string }>): void {
  const db = new BetterSqlite3(relay.config.store.path);
  try {
    db.pragma('busy_timeout = 5000');
    new SuppressionLists(db).addAll(entries.map((e) => ({ actor: 'relay', ...e })));
  } finally {
    db.close();
  }
}

/** `node dist/cli.js ARGS --config <the relay's config file>`: what an operator at the shell sees. */
function rebound({ relay }: PanelRelay, args: string[]): Promise<CliResult> {
  return runRebound([...args, '--config', join(relay.dir, 'config.json')]);
}

async function cliList(panel: PanelRelay, type: string): Promise<string[]> {
  const result = await rebound(panel, ['suppressions', 'list', '--type', type, '--limit', '100000', '--json']);
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { entries: Array<{ address: string }> }).entries.map((e) => e.address);
}

async function openSuppressions(page: Page, base: string, token = ADMIN_TOKEN): Promise<void> {
  await signIn(page, base, token);
  await page.getByRole('navigation', { name: 'Panel' }).getByRole('link', { name: 'Suppressions' }).click();
  await page.waitForURL(`${base}/suppressions`);
}

/** The CSRF token the page carries (htmx sends it as x-csrf-token), for requests made by hand. */
async function csrfOf(page: Page): Promise<string> {
  return (JSON.parse((await page.locator('body').getAttribute('hx-headers')) ?? '{}') as Record<string, string>)['x-csrf-token'] ?? '';
}

/** The browser logged a failed resource for an answer the test provoked on purpose: take it off the problems. */
function expectLoggedStatus(status: number): void {
  const at = browser.problems.findIndex((p) => p.includes(`status of ${status}`));
  expect(at, `the browser logged the ${status} answer`).toBeGreaterThanOrEqual(0);
  browser.problems.splice(at, 1);
}

const rangeText = (page: Page) => page.locator('#range').innerText();
const addressesShown = (page: Page) => page.locator('table.suppressions td.address').allInnerTexts();

const EVIDENCE = { code: 550, enhancedCode: '5.1.1', text: '550 5.1.1 <gone@example.test>: Recipient address rejected: User unknown', category: 'bad-mailbox' };

describe('the panel: Suppressions in Chromium', () => {
  it('finds an address with its evidence, removes it after a confirmation, and the CLI lists it no more and shows panel:ops in the audit', async () => {
    const panel = await startPanel();
    seed(panel, [
      { address: 'gone@example.test', type: 'bounces', source: 'immediate', evidence: EVIDENCE, queueId: 'Q7ZK4C2M' },
      { address: 'gone@example.test', type: 'complaints', source: 'delayed' },
      { address: 'stays@example.test', type: 'bounces', source: 'delayed', evidence: { ...EVIDENCE, text: 'mailbox unavailable' } },
    ]);
    const page = await browser.page();
    await openSuppressions(page, panel.base);
    await expect(page.getByRole('navigation', { name: 'Panel' }).getByRole('link', { name: 'Suppressions' }).getAttribute('aria-current')).resolves.toBe('page');
    await expect(page.getByRole('navigation', { name: 'Lists' }).getByRole('link', { name: 'Bounces' }).getAttribute('aria-current')).resolves.toBe('page');
    await expect(rangeText(page)).resolves.toBe('Rows 1–2 of 2 on the bounces list.');

    await page.getByLabel('Search').fill('gone@example.test');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/q=gone/);
    const row = page.locator('tr[data-address="gone@example.test"]');
    await expect(row.locator('td').allInnerTexts()).resolves.toEqual([
      'gone@example.test',
      '550 5.1.1',
      EVIDENCE.text,
      'bad-mailbox',
      'immediate',
      expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/),
      expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/),
      '1',
      'Q7ZK4C2M',
      'Remove',
    ]);
    await expect(addressesShown(page)).resolves.toEqual(['gone@example.test']);

    // Dismissed: nothing happens.
    page.once('dialog', (dialog) => void dialog.dismiss());
    await row.getByRole('button', { name: 'Remove gone@example.test' }).click();
    await expect(row.isVisible()).resolves.toBe(true);
    expect(await cliList(panel, 'bounces')).toContain('gone@example.test');

    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.accept();
    });
    await row.getByRole('button', { name: 'Remove gone@example.test' }).click();
    await page.getByText('Removed gone@example.test from the bounces list.').waitFor();
    expect(asked).toBe('Remove gone@example.test from the bounces list? Mail to it will be sent again.');
    await expect(row.count()).resolves.toBe(0);
    await expect(rangeText(page)).resolves.toBe('No addresses containing “gone@example.test” on the bounces list.');

    // Removed already (in another tab, by the CLI): said so; a malformed value: refused with its reason.
    const again = await page.request.post(`${panel.base}/suppressions/remove`, { form: { _csrf: await csrfOf(page), list: 'bounces', value: 'gone@example.test' } });
    expect(again.status()).toBe(200);
    expect(await again.text()).toContain('gone@example.test was not on the bounces list (removed already?).');
    const malformed = await page.request.post(`${panel.base}/suppressions/remove`, { form: { _csrf: await csrfOf(page), list: 'bounces', value: 'no-at-sign' } });
    expect(malformed.status()).toBe(400);
    expect(await malformed.text()).toContain('Nothing removed: &quot;no-at-sign&quot; is not an email address (local@domain).');
    const wrongList = await page.request.post(`${panel.base}/suppressions/remove`, { form: { _csrf: await csrfOf(page), list: 'spam', value: 'stays@example.test' } });
    expect(wrongList.status()).toBe(400);
    expect(await wrongList.text()).toContain('Nothing removed. There is no list &quot;spam&quot;');

    expect(await cliList(panel, 'bounces')).toEqual(['stays@example.test']);
    // Only the bounces list: the complaint stays.
    expect(await cliList(panel, 'complaints')).toEqual(['gone@example.test']);
    const shown = JSON.parse((await rebound(panel, ['suppressions', 'show', 'gone@example.test'])).stdout) as { audit: Array<{ action: string; list: string; actor: string }> };
    expect(shown.audit.filter((a) => a.action === 'remove')).toEqual([expect.objectContaining({ action: 'remove', list: 'bounces', actor: 'panel:ops' })]);

    // Signed out meanwhile (another tab): a Remove leads to the sign-in page and removes nothing.
    await page.goto(`${panel.base}/suppressions`);
    await page.request.post(`${panel.base}/sign-out`, { form: { _csrf: await csrfOf(page) } });
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Remove stays@example.test' }).click();
    await page.waitForURL(`${panel.base}/sign-in`);
    expect(await cliList(panel, 'bounces')).toEqual(['stays@example.test']);
  });

  it('shows a viewer every list and its evidence but no Remove, Add or Import; a forged POST from the viewer session is refused with 403, and so is one without the CSRF token', async () => {
    const panel = await startPanel();
    seed(panel, [{ address: 'kept@example.test', type: 'bounces', source: 'immediate', evidence: EVIDENCE }]);
    const page = await browser.page();
    await openSuppressions(page, panel.base, VIEWER_TOKEN);
    await expect(addressesShown(page)).resolves.toEqual(['kept@example.test']);
    await expect(page.getByRole('button', { name: /Remove/ }).count()).resolves.toBe(0);
    await expect(page.getByRole('heading', { name: 'Add' }).count()).resolves.toBe(0);
    await expect(page.getByRole('heading', { name: 'Import a CSV' }).count()).resolves.toBe(0);
    await expect(page.getByRole('link', { name: 'Export bounces (CSV)' }).isVisible()).resolves.toBe(true);
    await expect(fitsViewport(page)).resolves.toBe(true);
    await screenshot(page, 'suppressions-viewer');

    const csrf = await csrfOf(page);
    expect(csrf).not.toBe('');
    const forged = await page.request.post(`${panel.base}/suppressions/remove`, { form: { _csrf: csrf, list: 'bounces', value: 'kept@example.test' } });
    expect(forged.status()).toBe(403);
    expect(await forged.text()).toContain('is a viewer');
    const forgedAdd = await page.request.post(`${panel.base}/suppressions/add`, { form: { _csrf: csrf, list: 'bounces', address: 'new@example.test' } });
    expect(forgedAdd.status()).toBe(403);
    const forgedImport = await page.request.post(`${panel.base}/suppressions/import`, {
      headers: { 'x-csrf-token': csrf },
      multipart: { list: 'bounces', file: { name: 'x.csv', mimeType: 'text/csv', buffer: Buffer.from('address\nnew@example.test\n') } },
    });
    expect(forgedImport.status()).toBe(403);
    expect(await cliList(panel, 'bounces')).toEqual(['kept@example.test']);

    // An admin session, but no CSRF token (a form posted from another site would have none).
    const admin = await browser.page();
    await openSuppressions(admin, panel.base);
    const noToken = await admin.request.post(`${panel.base}/suppressions/remove`, { form: { list: 'bounces', value: 'kept@example.test' } });
    expect(noToken.status()).toBe(403);
    const wrongToken = await admin.request.post(`${panel.base}/suppressions/remove`, { form: { _csrf: csrf, list: 'bounces', value: 'kept@example.test' } });
    expect(wrongToken.status()).toBe(403);
    expect(await cliList(panel, 'bounces')).toEqual(['kept@example.test']);
  });

  it('imports a CSV with a progress bar: good lines land (as panel:ops), bad lines are listed with their number, text and what is wrong', async () => {
    const panel = await startPanel();
    const good = Array.from({ length: 20_000 }, (_, i) => `bulk${i}@import.test,bounces,old list`);
    const lines = [
      'address,type,reason',
      'first@import.test,complaints,',
      'not-an-address,bounces,typo',
      ...good,
      'second@import.test,unsubscribes,asked',
      'third@import.test,spam,wrong type',
      '',
      '"quoted@import.test",bounces,"a reason, with a comma"',
    ];
    const csv = `${lines.join('\r\n')}\r\n`;
    const page = await browser.page();
    await openSuppressions(page, panel.base);
    // Runs in the page (the test project has no DOM types, so the globals are named by shape): every progress event htmx passes on.
    await page.evaluate(() => {
      interface ProgressEvent {
        detail: { loaded: number };
      }
      const view = globalThis as unknown as {
        uploadProgress: number[];
        document: { getElementById(id: string): { addEventListener(type: string, listener: (event: ProgressEvent) => void): void } | null };
      };
      view.uploadProgress = [];
      view.document.getElementById('import-form')?.addEventListener('htmx:xhr:progress', (event) => view.uploadProgress.push(event.detail.loaded));
    });
    await page.locator('#import-list').selectOption('file');
    await page.getByLabel('CSV file').setInputFiles({ name: 'old-list.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.getByText(/^old-list\.csv: 20,003 rows imported, 2 refused\.$/).waitFor({ timeout: 20_000 });
    await expect(page.locator('#import-status').innerText()).resolves.toBe('Done: the result is below.');
    await expect(page.locator('#import-progress').isHidden()).resolves.toBe(true);
    const progress = await page.evaluate(() => (globalThis as unknown as { uploadProgress: number[] }).uploadProgress);
    expect(progress.length).toBeGreaterThan(0);
    expect(Math.max(...progress)).toBeGreaterThanOrEqual(csv.length);

    const errorRows = await Promise.all((await page.locator('table.import-errors tbody tr').all()).map((row) => row.locator('td').allTextContents()));
    expect(errorRows).toEqual([
      ['3', 'not-an-address,bounces,typo', '"not-an-address" is not an email address'],
      [String(good.length + 5), 'third@import.test,spam,wrong type', 'type "spam" is not one of bounces, complaints, unsubscribes'],
    ]);
    // The table below shows what landed, without a reload.
    await expect(rangeText(page)).resolves.toBe('Rows 1–50 of 20,001 on the bounces list.');
    await screenshot(page, 'suppressions-import');

    expect((await cliList(panel, 'bounces')).length).toBe(20_001);
    expect(await cliList(panel, 'complaints')).toEqual(['first@import.test']);
    expect(await cliList(panel, 'unsubscribes')).toEqual(['second@import.test']);
    const shown = JSON.parse((await rebound(panel, ['suppressions', 'show', 'quoted@import.test'])).stdout) as { entries: unknown[]; audit: unknown[] };
    expect(shown.entries).toEqual([expect.objectContaining({ type: 'bounces', source: 'import', reason: 'a reason, with a comma' })]);
    expect(shown.audit).toEqual([expect.objectContaining({ action: 'add', actor: 'panel:ops' })]);
    const first = JSON.parse((await rebound(panel, ['suppressions', 'show', 'first@import.test'])).stdout) as { entries: Array<{ reason: string }> };
    expect(first.entries[0]?.reason).toBe('imported from old-list.csv');
  });

  it('imports into one list: rows naming another list are refused by line; a file over admin.maxImportBytes, a binary file and no file are refused with a message', async () => {
    const panel = await startPanel({ admin: { maxImportBytes: 4096 } });
    const page = await browser.page();
    await openSuppressions(page, panel.base);
    await page.getByRole('link', { name: 'Complaints', exact: true }).click();
    await page.waitForURL(/list=complaints/);
    await page.getByLabel('CSV file').setInputFiles({ name: 'c.csv', mimeType: 'text/csv', buffer: Buffer.from('address,type\na@one.test,complaints\nb@one.test,bounces\nc@one.test,Complaints\n') });
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.getByText('c.csv: 2 rows imported into complaints, 1 refused.').waitFor({ timeout: 5_000 });
    await expect(page.locator('table.import-errors tbody tr').innerText()).resolves.toContain('the type column says bounces, but the import is into complaints');
    expect((await cliList(panel, 'complaints')).sort()).toEqual(['a@one.test', 'c@one.test']);

    await page.getByLabel('CSV file').setInputFiles({ name: 'big.csv', mimeType: 'text/csv', buffer: Buffer.from(`address\n${'x@big.test\n'.repeat(1000)}`) });
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.getByText('Nothing imported: the file is over 4096 bytes (admin.maxImportBytes). Split it, or raise admin.maxImportBytes.').waitFor({ timeout: 5_000 });
    expectLoggedStatus(413);

    await page.getByLabel('CSV file').setInputFiles({ name: 'photo.csv', mimeType: 'text/csv', buffer: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0x0d]) });
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.getByText('Nothing imported: photo.csv is not a text file (it holds NUL bytes).', { exact: false }).waitFor({ timeout: 5_000 });
    expectLoggedStatus(400);
    expect(await cliList(panel, 'bounces')).toEqual([]);

    const csrf = await csrfOf(page);
    const noFile = await page.request.post(`${panel.base}/suppressions/import`, { headers: { 'x-csrf-token': csrf }, multipart: { list: 'bounces' } });
    expect(noFile.status()).toBe(400);
    expect(await noFile.text()).toContain('Choose a CSV file to import.');
    const badList = await page.request.post(`${panel.base}/suppressions/import`, {
      headers: { 'x-csrf-token': csrf },
      multipart: { list: 'allowlist', file: { name: 'x.csv', mimeType: 'text/csv', buffer: Buffer.from('address\nz@one.test\n') } },
    });
    expect(badList.status()).toBe(400);
    expect(await badList.text()).toContain('There is no list &quot;allowlist&quot; to import into');
    const notMultipart = await page.request.post(`${panel.base}/suppressions/import`, { headers: { 'x-csrf-token': csrf }, form: { list: 'bounces' } });
    expect(notMultipart.status()).toBe(400);
    expect(await notMultipart.text()).toContain('Send the file as multipart/form-data');
  });

  it('exports the current tab and all lists exactly as `rebound suppressions export` does', async () => {
    const panel = await startPanel();
    seed(panel, [
      { address: 'a@export.test', type: 'bounces', source: 'immediate', evidence: { ...EVIDENCE, text: 'line one\nline "two", quoted' }, queueId: 'QAAA' },
      { address: 'b@export.test', type: 'complaints', source: 'delayed' },
      { address: 'c@export.test', type: 'unsubscribes', source: 'unsubscribe', reason: 'one-click' },
    ]);
    const page = await browser.page();
    await openSuppressions(page, panel.base);
    for (const [link, args] of [
      ['Export bounces (CSV)', ['--type', 'bounces']],
      ['Export all lists (CSV)', []],
    ] as const) {
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: link }).click()]);
      const file = await download.path();
      const cli = await rebound(panel, ['suppressions', 'export', ...args]);
      expect(cli.code).toBe(0);
      expect(readFileSync(file, 'utf8')).toBe(cli.stdout);
      expect(cli.stdout).toContain('a@export.test');
    }
    const bad = await page.request.get(`${panel.base}/suppressions/export.csv?list=everything`);
    expect(bad.status()).toBe(400);
    expect(await bad.text()).toBe('There is no list "everything" to export; export one of bounces, complaints, unsubscribes, or all.');
  });

  it('searches by domain (@example.com or example.com: that domain only) and by text, on the suppression lists and the allowlist', async () => {
    const panel = await startPanel();
    seed(
      panel,
      ['ann@example.com', 'bob@example.com', 'cy@mail.example.com', 'dee@notexample.com', 'example.com@other.test', 'eve@example.com.au', 'john.smith@other.test'].map((address) => ({
        address,
        type: 'bounces' as const,
        source: 'immediate' as const,
      })),
    );
    const page = await browser.page();
    await openSuppressions(page, panel.base);
    for (const q of ['@example.com', 'example.com', 'EXAMPLE.COM']) {
      await page.getByLabel('Search').fill(q);
      await page.getByRole('button', { name: 'Search' }).click();
      await page.waitForLoadState();
      await expect(addressesShown(page).then((a) => a.sort())).resolves.toEqual(['ann@example.com', 'bob@example.com']);
      await expect(rangeText(page)).resolves.toBe('Rows 1–2 of 2 at the domain example.com on the bounces list.');
    }
    await page.getByLabel('Search').fill('example');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForLoadState();
    await expect(addressesShown(page)).resolves.toHaveLength(6);
    // A word with a dot that matches no domain is looked for inside addresses.
    await page.getByLabel('Search').fill('john.smith');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForLoadState();
    await expect(addressesShown(page)).resolves.toEqual(['john.smith@other.test']);
    await expect(page.getByText('No address at the domain john.smith, so addresses containing it.').isVisible()).resolves.toBe(true);
    // The tabs keep the search.
    await page.getByRole('link', { name: 'Complaints', exact: true }).click();
    await expect(page.getByLabel('Search').inputValue()).resolves.toBe('john.smith');
    await expect(rangeText(page)).resolves.toBe('No addresses containing “john.smith” on the complaints list.');

    // A search as an attacker would type it: LIKE wildcards are taken literally, markup is text.
    await page.goto(`${panel.base}/suppressions?list=bounces&q=${encodeURIComponent('%_<b>x</b>')}`);
    await expect(rangeText(page)).resolves.toBe('No addresses containing “%_<b>x</b>” on the bounces list.');
    await page.goto(`${panel.base}/suppressions?list=bounces&q=${'a'.repeat(400)}`);
    await expect(page.getByRole('alert').first().innerText()).resolves.toBe('The search is over 320 characters; search for an address, @domain or part of one.');
  });

  it('pages 50 rows at a time with previous and next and "rows x–y of N", and explains a page that does not exist', async () => {
    const panel = await startPanel();
    const start = Date.parse('2025-01-01T00:00:00Z');
    seed(
      panel,
      Array.from({ length: 120 }, (_, i) => ({ address: `p${String(i).padStart(3, '0')}@page.test`, type: 'bounces' as const, source: 'delayed' as const, at: new Date(start + i * 1000).toISOString() })),
    );
    const page = await browser.page();
    await openSuppressions(page, panel.base);
    await expect(rangeText(page)).resolves.toBe('Rows 1–50 of 120 on the bounces list.');
    await expect(addressesShown(page).then((a) => [a.length, a[0], a[49]])).resolves.toEqual([50, 'p119@page.test', 'p070@page.test']);
    await expect(page.getByRole('navigation', { name: 'Pages' }).innerText()).resolves.toContain('Page 1 of 3');
    await page.getByRole('link', { name: 'Next →' }).click();
    await expect(rangeText(page)).resolves.toBe('Rows 51–100 of 120 on the bounces list.');
    await page.getByRole('link', { name: 'Next →' }).click();
    await expect(rangeText(page)).resolves.toBe('Rows 101–120 of 120 on the bounces list.');
    await expect(addressesShown(page).then((a) => [a.length, a[19]])).resolves.toEqual([20, 'p000@page.test']);
    await expect(page.getByRole('link', { name: 'Next →' }).count()).resolves.toBe(0);
    await page.getByRole('link', { name: '← Previous' }).click();
    await expect(rangeText(page)).resolves.toBe('Rows 51–100 of 120 on the bounces list.');

    await page.goto(`${panel.base}/suppressions?list=bounces&page=9`);
    await expect(page.getByRole('alert').innerText()).resolves.toBe('There is no page 9: 120 rows make 3 pages. This is page 3.');
    await expect(rangeText(page)).resolves.toBe('Rows 101–120 of 120 on the bounces list.');
    await page.goto(`${panel.base}/suppressions?list=bounces&page=two`);
    await expect(page.getByRole('alert').innerText()).resolves.toBe('The page "two" is not a page number (1, 2, ...). This is page 1.');
    await page.goto(`${panel.base}/suppressions?list=spam`);
    await expect(page.getByRole('alert').innerText()).resolves.toBe('There is no list "spam"; the lists are bounces, complaints, unsubscribes, allowlist. This is the bounces list.');
    await expect(fitsViewport(page)).resolves.toBe(true);

    // A Remove that empties the last page answers with the page before, and no complaint about page numbers.
    const removed = await page.request.post(`${panel.base}/suppressions/remove`, { form: { _csrf: await csrfOf(page), list: 'bounces', value: 'p000@page.test', q: 'p000', page: '2' } });
    expect(removed.status()).toBe(200);
    const answer = await removed.text();
    expect(answer).toContain('Removed p000@page.test from the bounces list.');
    expect(answer).not.toContain('There is no page');
  });

  it('adds by hand (a bad address is explained and kept in the form), allowlists a domain and removes it, with the evidence of every tab laid out at 1280 and 390 px', async () => {
    const panel = await startPanel();
    seed(panel, [
      { address: 'gone@example.test', type: 'bounces', source: 'immediate', evidence: EVIDENCE, queueId: 'Q7ZK4C2M' },
      { address: 'long.local.part.for.layout@a-rather-long-domain-name.example', type: 'bounces', source: 'delayed', evidence: { ...EVIDENCE, code: 552, enhancedCode: '5.2.2', category: 'quota-issues', text: '552 5.2.2 <script>alert(1)</script> mailbox full' } },
      { address: 'spam-click@example.test', type: 'complaints', source: 'delayed' },
      { address: 'left@example.test', type: 'unsubscribes', source: 'unsubscribe' },
    ]);
    const page = await browser.page();
    await openSuppressions(page, panel.base);
    // Markup in evidence is text (a CSP-blocked script would also fail the test through the console).
    await expect(page.getByText('552 5.2.2 <script>alert(1)</script> mailbox full').isVisible()).resolves.toBe(true);

    await page.getByLabel(/^Address/).fill('not an address');
    await page.getByLabel('Reason').fill('ticket 77');
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.waitForLoadState();
    expectLoggedStatus(400);
    await expect(page.getByText('Nothing added: "not an address" is not an email address (local@domain).').isVisible()).resolves.toBe(true);
    await expect(page.getByLabel(/^Address/).inputValue()).resolves.toBe('not an address');
    await expect(page.getByLabel('Reason').inputValue()).resolves.toBe('ticket 77');

    await page.getByLabel(/^Address/).fill('Typed@Example.TEST');
    await page.locator('#add-list').selectOption('unsubscribes');
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.waitForURL(/list=unsubscribes/);
    await expect(addressesShown(page)).resolves.toEqual(['Typed@example.test']);
    await expect(page.locator('tr[data-address="Typed@example.test"] td').nth(4).innerText()).resolves.toBe('manual');
    await expect(page.locator('tr[data-address="Typed@example.test"] .reason').innerText()).resolves.toBe('Reason: ticket 77');
    const typed = JSON.parse((await rebound(panel, ['suppressions', 'show', 'Typed@example.test'])).stdout) as { audit: unknown[] };
    expect(typed.audit).toEqual([expect.objectContaining({ action: 'add', list: 'unsubscribes', actor: 'panel:ops', reason: 'ticket 77' })]);

    await page.getByRole('link', { name: 'Allowlist', exact: true }).click();
    await page.getByLabel(/^Address/).fill('Partner.Example');
    await expect(page.locator('#add-list').inputValue()).resolves.toBe('allowlist');
    await page.getByLabel('Reason').fill('contract 12');
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.waitForURL(/list=allowlist/);
    await expect(page.locator('tr[data-value="partner.example"] td').allInnerTexts()).resolves.toEqual([
      'partner.example',
      'domain',
      'contract 12',
      expect.stringMatching(/^\d{4}-/),
      'panel:ops',
      'Remove',
    ]);

    // Every tab, at both widths, for the admin.
    for (const viewport of [DESKTOP, PHONE]) {
      await page.setViewportSize(viewport);
      for (const [tab, name] of [['bounces', 'bounces'], ['complaints', 'complaints'], ['unsubscribes', 'unsubscribes'], ['allowlist', 'allowlist']]) {
        await page.goto(`${panel.base}/suppressions?list=${tab}`);
        await expect(page.getByRole('navigation', { name: 'Lists' }).locator('[aria-current="page"]').innerText()).resolves.toBe(name[0]?.toUpperCase() + name.slice(1));
        await expect(fitsViewport(page), `${tab} at ${viewport.width} px`).resolves.toBe(true);
        await screenshot(page, `suppressions-${tab}`);
      }
    }

    await page.setViewportSize(DESKTOP);
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Remove partner.example' }).click();
    await page.getByText('Removed partner.example from the allowlist.').waitFor();
    await expect(page.locator('tr[data-value="partner.example"]').count()).resolves.toBe(0);
    expect(panel.relay.db.prepare('SELECT value FROM allowlist').all()).toEqual([]);
    expect(panel.relay.db.prepare("SELECT action, address, actor FROM suppression_audit WHERE list = 'allowlist' ORDER BY id").all()).toEqual([
      { action: 'add', address: 'partner.example', actor: 'panel:ops' },
      { action: 'remove', address: 'partner.example', actor: 'panel:ops' },
    ]);
  });
});
