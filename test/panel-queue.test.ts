import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';
import { startFakeMx, type FakeMx, type ScriptedReply } from './support/fake-mx.js';
import { ADMIN_TOKEN, DESKTOP, fitsViewport, PANEL_TOKENS, panelBrowser, PHONE, screenshot, signIn, VIEWER_TOKEN } from './support/panel-browser.js';
import { FAST_DELIVERY, startTestRelay, type TestRelay } from './support/relay.js';
import { waitFor } from './support/wait-for.js';

const execFileAsync = promisify(execFile);
const browser = panelBrowser();

// ---------------------------------------------------------------------------------------------
// One relay for the file, delivering through a fake MX on 127.0.0.1 that defers three domains
// (slow.test until it is told to accept, later.test and busy.test always). The retry schedule is
// an hour, so deferred mail stays deferred while the tests look at it and act on it.

const REPLIES: Record<string, ScriptedReply> = {
  'slow.test': { code: 451, text: '4.7.1 Greylisted, please try again later' },
  'later.test': { code: 450, text: '4.2.2 Mailbox full, try again later' },
  // Markup in what a remote MX says is shown as text.
  'busy.test': { code: 450, text: '4.3.2 <b>System busy</b>, try again later' },
};

let relay: TestRelay;
let mx: FakeMx;
let base: string;
let configFile: string;
let slowAccepts = false;
/** RCPT TO commands the fake MX saw, by address: how often the relay tried each recipient. */
const tries: Record<string, number> = {};
/** Queue ids by the name of the message in MAIL. */
const queueIds: Record<string, string> = {};

const MAIL = {
  m1: { from: 'app@shop.example', to: ['a@slow.test', 'b@slow.test'] },
  m2: { from: 'app@shop.example', to: ['c@slow.test'] },
  m3: { from: 'news@shop.example', to: ['x@later.test', 'y@later.test'] },
  m4: { from: 'app@shop.example', to: ['z@later.test'] },
  m5: { from: 'ops@shop.example', to: ['p@busy.test', 'q@busy.test'] },
};

function statuses(): Record<string, string> {
  const rows = relay.db.prepare('SELECT address, status FROM recipients ORDER BY id').all() as Array<{ address: string; status: string }>;
  return Object.fromEntries(rows.map((row) => [row.address, row.status]));
}

function auditCount(): number {
  return relay.db.prepare('SELECT count(*) FROM queue_audit').pluck().get() as number;
}

beforeAll(async () => {
  mx = await startFakeMx({
    rcpt: (address) => {
      tries[address] = (tries[address] ?? 0) + 1;
      const domain = address.slice(address.indexOf('@') + 1);
      if (domain === 'slow.test' && slowAccepts) return null;
      return REPLIES[domain] ?? null;
    },
  });
  const route = `127.0.0.1:${mx.port}`;
  relay = await startTestRelay({
    admin: { enabled: true, port: 0, tokens: PANEL_TOKENS },
    delivery: {
      ...FAST_DELIVERY,
      retry: { scheduleSeconds: [3600], jitter: 0, maxAttempts: 5, maxAgeSeconds: 86_400 },
      routes: { 'slow.test': route, 'later.test': route, 'busy.test': route },
    },
  });
  const admin = relay.relay.admin;
  if (!admin) throw new Error('the test relay started without its admin server');
  base = `http://127.0.0.1:${admin.port}`;
  configFile = join(relay.dir, 'config.json');
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true });
  for (const [name, mail] of Object.entries(MAIL)) {
    const info = await transport.sendMail({ from: mail.from, to: mail.to, subject: name, text: 'Hello.\r\n' });
    queueIds[name] = info.response.split(' ').pop() as string;
  }
  await waitFor('every recipient to be deferred', statuses, (now) => Object.keys(now).length === 8 && Object.values(now).every((s) => s === 'deferred'), 15_000);
}, 30_000);

afterAll(async () => {
  await relay?.stop();
  await mx?.close();
});

// ---------------------------------------------------------------------------------------------

async function signedIn(token: string, viewport = DESKTOP): Promise<Page> {
  const page = await browser.page(viewport);
  await signIn(page, base, token);
  return page;
}

/** Accepts every confirmation the page asks for and keeps its questions. */
function acceptDialogs(page: Page): string[] {
  const questions: string[] = [];
  page.on('dialog', (dialog) => {
    questions.push(dialog.message());
    void dialog.accept();
  });
  return questions;
}

async function tableRows(page: Page, selector: string): Promise<string[][]> {
  return page
    .locator(`${selector} tbody tr`)
    .evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((cell) => (cell.textContent ?? '').replace(/\s+/g, ' ').trim())));
}

/** Runs the general form as an operator fills it in; resolves once the answer has loaded. */
async function runForm(page: Page, action: string, by: string, value: string): Promise<void> {
  await page.getByLabel('Action', { exact: true }).selectOption(action);
  await page.getByLabel('Select by').selectOption(by);
  await page.getByLabel('Queue ids, domain or sender').fill(value);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Run' }).click()]);
}

async function cliQueue(): Promise<{ recipientsByStatus: Record<string, number>; oldest: Array<{ address: string; status: string }> }> {
  const { stdout } = await execFileAsync(process.execPath, [CLI, 'queue', '--json', '--limit', '20', '--config', configFile], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, REBOUND_CONFIG: '' },
  });
  return JSON.parse(stdout);
}

/** The 400 a refused form answers is logged by Chromium as a failed resource: expected, and taken off the problems. */
function expectRefusalsLogged(count: number): void {
  const refusals = browser.problems.filter((problem) => /status of 400/.test(problem));
  expect(refusals).toHaveLength(count);
  browser.problems.splice(0, browser.problems.length, ...browser.problems.filter((problem) => !/status of 400/.test(problem)));
}

/** The session's CSRF token, as the page carries it (the sign-out form's hidden field). */
async function csrfOf(page: Page): Promise<string> {
  return page.locator('form.who input[name="_csrf"]').inputValue();
}

describe('the queue page in Chromium', () => {
  it('shows deferred mail grouped by recipient domain with the last reply and the next attempt, and a domain page listing its recipients', async () => {
    const page = await signedIn(ADMIN_TOKEN);
    await page.getByRole('navigation').getByRole('link', { name: 'Queue' }).click();
    await page.waitForURL(`${base}/queue`);
    await expect(page.getByRole('heading', { name: 'Queue', exact: true }).isVisible()).resolves.toBe(true);
    await expect(page.locator('#queue-counts td[data-queue="deferred"]').textContent()).resolves.toBe('8');

    const groups = await tableRows(page, '#deferred-domains');
    // Most deferred first, then by name; the last column is the buttons (Flush, Hold, Bounce).
    expect(groups.map((row) => [row[0], row[1], row[5]])).toEqual([
      ['later.test', '3', 'Flush Hold Bounce'],
      ['slow.test', '3', 'Flush Hold Bounce'],
      ['busy.test', '2', 'Flush Hold Bounce'],
    ]);
    const slow = groups.find((row) => row[0] === 'slow.test') as string[];
    expect(slow[3]).toBe('451 4.7.1 Greylisted, please try again later');
    expect(slow[4]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d in (59|60) min$/);
    expect(slow[2]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (now|less than a minute ago|1 min ago)$/);
    expect(groups.find((row) => row[0] === 'busy.test')?.[3]).toBe('450 4.3.2 <b>System busy</b>, try again later');
    await expect(page.locator('#deferred-domains b').count()).resolves.toBe(0);
    await expect(page.locator('#held-heading + p').textContent()).resolves.toBe('No mail on hold.');

    await page.getByRole('link', { name: 'slow.test' }).click();
    await page.waitForURL(`${base}/queue/domain/slow.test`);
    await expect(page.getByRole('heading', { name: 'Deferred to slow.test' }).isVisible()).resolves.toBe(true);
    const recipients = await tableRows(page, '#domain-recipients');
    expect(recipients.map((row) => row.slice(0, 5))).toEqual([
      ['a@slow.test', queueIds.m1, 'app@shop.example', '1', '451 4.7.1 Greylisted, please try again later'],
      ['b@slow.test', queueIds.m1, 'app@shop.example', '1', '451 4.7.1 Greylisted, please try again later'],
      ['c@slow.test', queueIds.m2, 'app@shop.example', '1', '451 4.7.1 Greylisted, please try again later'],
    ]);
    await expect(page.locator('nav a[aria-current="page"]').textContent()).resolves.toBe('Queue');
    for (const viewport of [DESKTOP, PHONE]) {
      await page.setViewportSize(viewport);
      await expect(fitsViewport(page)).resolves.toBe(true);
      await screenshot(page, 'queue-domain');
    }

    // A domain in the address that is not one: the store's message, not a page of nothing.
    const bad = await page.goto(`${base}/queue/domain/${encodeURIComponent('a@slow.test')}`);
    expect(bad?.status()).toBe(400);
    expectRefusalsLogged(1);
    await expect(page.getByRole('alert').textContent()).resolves.toBe('domain "a@slow.test" is an address; give only the part after @ (slow.test), or select by sender');
    await page.goto(`${base}/queue/domain/NOTHING.test`);
    await expect(page.locator('main p.empty').textContent()).resolves.toBe('Nothing deferred to nothing.test now.');
  });

  it('shows a viewer the queue without any action control, and refuses a viewer\'s forged POST (403) and a POST without the CSRF token (403)', async () => {
    const viewer = await signedIn(VIEWER_TOKEN);
    await viewer.goto(`${base}/queue`);
    expect((await tableRows(viewer, '#deferred-domains')).map((row) => row[0])).toEqual(['later.test', 'slow.test', 'busy.test']);
    await expect(viewer.locator('#deferred-domains th').allTextContents()).resolves.toEqual(['Domain', 'Recipients', 'Oldest', 'Last reply', 'Next attempt']);
    await expect(viewer.locator('main button').count()).resolves.toBe(0);
    await expect(viewer.locator('main form').count()).resolves.toBe(0);
    await expect(viewer.locator('#viewer-note').isVisible()).resolves.toBe(true);
    await viewer.goto(`${base}/queue/domain/slow.test`);
    await expect(viewer.locator('#domain-recipients tbody tr').count()).resolves.toBe(3);
    await expect(viewer.locator('main button').count()).resolves.toBe(0);

    // The viewer's own session and CSRF token, posting what an admin's Hold button posts.
    const forged = await viewer.request.post(`${base}/queue/action`, { form: { _csrf: await csrfOf(viewer), action: 'hold', by: 'domain', value: 'slow.test' } });
    expect(forged.status()).toBe(403);
    await expect(forged.text()).resolves.toContain('is a viewer');

    // An admin's session without the token (a form on another site cannot read it).
    const admin = await signedIn(ADMIN_TOKEN);
    const withoutToken = await admin.request.post(`${base}/queue/action`, { form: { action: 'bounce', by: 'domain', value: 'slow.test' } });
    expect(withoutToken.status()).toBe(403);
    const wrongToken = await admin.request.post(`${base}/queue/action`, { form: { _csrf: 'not-the-token', action: 'bounce', by: 'domain', value: 'slow.test' } });
    expect(wrongToken.status()).toBe(403);
    // No session at all.
    const anonymous = await fetch(`${base}/queue/action`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'action=delete&by=domain&value=slow.test', redirect: 'manual' });
    expect(anonymous.status).toBe(401);

    expect(Object.values(statuses()).every((status) => status === 'deferred')).toBe(true);
    expect(auditCount()).toBe(0);
  });

  it('shows the store\'s message for bad input, keeps the form as it was, and changes nothing', async () => {
    const page = await signedIn(ADMIN_TOKEN);
    const questions = acceptDialogs(page);
    await page.goto(`${base}/queue`);
    const refusals: Array<[string, string, string, string]> = [
      ['hold', 'domain', 'exa mple.test', 'domain "exa mple.test" is not a domain name; give one such as example.com'],
      ['delete', 'queue-ids', `${queueIds.m4} NOSUCHQUEUEID00000`, 'no message with queue id "NOSUCHQUEUEID00000"; nothing was changed (`rebound queue` or GET /v1/queue lists what is waiting)'],
      ['bounce', 'sender', 'nobody', 'sender "nobody" is not an email address (local@domain); give one such as app@shop.example, or <> for the null sender'],
      ['release', 'queue-ids', '', 'the list of queue ids is empty; give at least one'],
      ['hold', 'all', '', 'Hold needs queue ids, a recipient domain or a sender; only Flush takes all deferred mail'],
    ];
    for (const [action, by, value, error] of refusals) {
      await runForm(page, action, by, value);
      await expect(page.getByRole('alert').textContent()).resolves.toBe(`Nothing was changed: ${error}`);
      // The form comes back as it was sent, ready to be corrected.
      await expect(page.getByLabel('Action', { exact: true }).inputValue()).resolves.toBe(action);
      await expect(page.getByLabel('Select by').inputValue()).resolves.toBe(by);
      await expect(page.getByLabel('Queue ids, domain or sender').inputValue()).resolves.toBe(value);
    }
    expectRefusalsLogged(refusals.length);
    expect(questions[0]).toBe('Hold the mail to domain exa mple.test?\nQueued and deferred mail is not sent until it is released.');
    expect(questions[1]).toBe('Delete the mail of 2 queue ids?\nQueued, deferred and held mail leaves the queue unsent, without a bounce. This cannot be undone.');

    // A careless or hostile client: an action that is not one, a paste far past any list of ids, a body past the form limit.
    const csrf = await csrfOf(page);
    const unknown = await page.request.post(`${base}/queue/action`, { form: { _csrf: csrf, action: 'purge', by: 'domain', value: 'slow.test' } });
    expect(unknown.status()).toBe(400);
    await expect(unknown.text()).resolves.toContain('&quot;purge&quot; is not a queue action; pick Flush, Hold, Release, Delete, Bounce');
    const long = await page.request.post(`${base}/queue/action`, { form: { _csrf: csrf, action: 'delete', by: 'queue-ids', value: 'X'.repeat(60_000) } });
    expect(long.status()).toBe(400);
    await expect(long.text()).resolves.toContain('the value is 60,000 characters, more than 50,000');
    const huge = await page.request.post(`${base}/queue/action`, { form: { _csrf: csrf, action: 'delete', by: 'queue-ids', value: 'X'.repeat(200_000) } });
    expect(huge.status()).toBe(413);

    expect(Object.values(statuses()).every((status) => status === 'deferred')).toBe(true);
    expect(auditCount()).toBe(0);
  });

  it('holds a domain, flushes, releases one message, bounces by sender and deletes by queue id in the browser, each confirmed, shown and audited as panel:ops', async () => {
    const page = await signedIn(ADMIN_TOKEN);
    const questions = acceptDialogs(page);
    await page.goto(`${base}/queue`);

    // Hold slow.test with its row's button.
    await Promise.all([page.waitForURL(/\/queue\?done=\d+$/), page.getByRole('button', { name: 'Hold mail to slow.test' }).click()]);
    expect(questions.pop()).toBe('Hold all queued and deferred mail to slow.test (3 deferred recipients now)? Nothing is sent to them until it is released.');
    await expect(page.locator('#queue-result').textContent()).resolves.toBe('Hold (domain slow.test) by panel:ops: 3 recipients put on hold; none skipped for being sent.');
    const cli = await cliQueue();
    expect(cli.recipientsByStatus).toMatchObject({ held: 3, deferred: 5, sending: 0 });
    expect(cli.oldest.filter((entry) => entry.address.endsWith('@slow.test')).map((entry) => [entry.address, entry.status])).toEqual([
      ['a@slow.test', 'held'],
      ['b@slow.test', 'held'],
      ['c@slow.test', 'held'],
    ]);
    expect((await tableRows(page, '#held-messages')).map((row) => row.slice(0, 3))).toEqual([
      [queueIds.m1, 'app@shop.example', 'a@slow.test and 1 more'],
      [queueIds.m2, 'app@shop.example', 'c@slow.test'],
    ]);

    // Flush everything deferred: the other domains are tried again at once, the held mail is not.
    const before = { ...tries };
    await runForm(page, 'flush', 'all', '');
    expect(questions.pop()).toBe("Flush all deferred mail?\nDeferred mail is retried at the relay's next poll; attempts and age limits stay as they are.");
    await expect(page.locator('#queue-result').textContent()).resolves.toBe(`Flush (all deferred mail) by panel:ops: 5 recipients due now; the relay sends them within ${FAST_DELIVERY.pollIntervalMs} ms.`);
    await waitFor(
      'the flushed recipients to be tried again and deferred again',
      () => relay.db.prepare(`SELECT address, status, attempts FROM recipients WHERE domain IN ('later.test', 'busy.test')`).all() as Array<{ status: string; attempts: number }>,
      (rows) => rows.length === 5 && rows.every((row) => row.status === 'deferred' && row.attempts === 2),
      10_000,
    );
    for (const address of ['x@later.test', 'y@later.test', 'z@later.test', 'p@busy.test', 'q@busy.test']) expect(tries[address]).toBe((before[address] ?? 0) + 1);
    for (const address of ['a@slow.test', 'b@slow.test', 'c@slow.test']) expect(tries[address]).toBe(before[address]);

    // The MX accepts slow.test now; release one message by its row's button: only it is sent.
    slowAccepts = true;
    await page.goto(`${base}/queue`);
    await Promise.all([page.waitForURL(/\/queue\?done=\d+$/), page.getByRole('button', { name: `Release ${queueIds.m2}` }).click()]);
    expect(questions.pop()).toBe(`Release message ${queueIds.m2} (1 held recipient)? It is sent at the relay's next poll.`);
    await expect(page.locator('#queue-result').textContent()).resolves.toBe(`Release (queue id ${queueIds.m2}) by panel:ops: 1 recipient released, due now; none skipped for being sent.`);
    await waitFor('c@slow.test to be delivered', () => statuses()['c@slow.test'], (status) => status === 'delivered', 10_000);
    expect(mx.received.flatMap((message) => message.to)).toEqual(['c@slow.test']);
    expect(statuses()).toMatchObject({ 'a@slow.test': 'held', 'b@slow.test': 'held' });

    // Bounce by sender, through the form: both of news@'s recipients, unsent, no suppression.
    await page.goto(`${base}/queue`);
    await runForm(page, 'bounce', 'sender', 'NEWS@shop.example');
    expect(questions.pop()).toBe('Bounce the mail from sender NEWS@shop.example?\nQueued, deferred and held mail bounces now, unsent, with a permanent_fail event and webhook. This cannot be undone.');
    await expect(page.locator('#queue-result').textContent()).resolves.toBe('Bounce (sender NEWS@shop.example) by panel:ops: 2 recipients bounced (not sent); none skipped for being sent.');
    expect(statuses()).toMatchObject({ 'x@later.test': 'bounced', 'y@later.test': 'bounced', 'z@later.test': 'deferred' });
    expect(
      relay.db
        .prepare(`SELECT r.address, e.event, e.reason, e.source, e.actor FROM events e JOIN recipients r ON r.id = e.recipient_id WHERE e.event = 'permanent_fail' ORDER BY r.address`)
        .all(),
    ).toEqual([
      { address: 'x@later.test', event: 'permanent_fail', reason: 'bounced', source: 'operator', actor: 'panel:ops' },
      { address: 'y@later.test', event: 'permanent_fail', reason: 'bounced', source: 'operator', actor: 'panel:ops' },
    ]);
    expect(relay.db.prepare('SELECT count(*) FROM suppressions').pluck().get()).toBe(0);

    // Delete one message by its queue id.
    await runForm(page, 'delete', 'queue-ids', queueIds.m4 as string);
    await expect(page.locator('#queue-result').textContent()).resolves.toBe(`Delete (queue id ${queueIds.m4}) by panel:ops: 1 recipient deleted (not sent, no bounce); none skipped for being sent.`);
    expect(statuses()['z@later.test']).toBe('deleted');

    // The audit, newest first; reloading the result shows it again without doing it again.
    const audit = await tableRows(page, '#queue-audit');
    expect(audit.map((row) => row.slice(1))).toEqual([
      ['panel:ops', 'Delete', `queue id ${queueIds.m4}`, '1', '0'],
      ['panel:ops', 'Bounce', 'sender NEWS@shop.example', '2', '0'],
      ['panel:ops', 'Release', `queue id ${queueIds.m2}`, '1', '0'],
      ['panel:ops', 'Flush', 'all deferred mail', '5', '0'],
      ['panel:ops', 'Hold', 'domain slow.test', '3', '0'],
    ]);
    await page.reload();
    expect(auditCount()).toBe(5);
    await expect(page.locator('#queue-counts td').allTextContents()).resolves.toEqual(['0', '0', '2', '2']);

    for (const viewport of [DESKTOP, PHONE]) {
      await page.setViewportSize(viewport);
      await expect(fitsViewport(page)).resolves.toBe(true);
      await screenshot(page, 'queue');
    }
  });
});
