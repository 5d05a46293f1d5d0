import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { closedPort, startFakeMx } from './support/fake-mx.js';
import { ADMIN_TOKEN, DESKTOP, fitsViewport, panelBrowser, panelRelaysStoppedAfterEachTest, PHONE, screenshot, signIn, VIEWER_TOKEN } from './support/panel-browser.js';
import { FAST_DELIVERY, type TestRelay } from './support/relay.js';
import { waitFor } from './support/wait-for.js';
import { startWebhookReceiver } from './support/webhook-receiver.js';

const startPanel = panelRelaysStoppedAfterEachTest();
const browser = panelBrowser();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const SECRET = 'whsec-panel-history-0123456789';
const INJECTED_SUBJECT = 'Spring SALE <img src=x onerror=alert(1)>';
/** The down endpoint's URL carries credentials in its user info and its query. */
const CREDENTIALS = ['hook-user', 's3cret-pass', 'abc123secret'];

interface Scenario {
  relay: TestRelay;
  base: string;
  /** To retry@ (451, then 250), ok@ and unknown@ (550): the campaign message. */
  sale: string;
  /** From billing@shop.example to ok@. */
  invoice: string;
  goodHook: string;
  downHook: string;
}

async function submit(relay: TestRelay, mail: { from: string; to: string[]; subject: string; messageId: string; headers?: Record<string, string> }): Promise<string> {
  const info = await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ ...mail, text: 'Hello there.\r\n' });
  return info.response.split(' ').pop() as string;
}

/**
 * A relay delivering to a fake MX (retry@: 451 then 250; unknown@: 550; the rest 250), with two
 * webhook endpoints: one that answers 500 to its first POST and 200 after (permanent_fail), and one
 * on a closed port (delivered, temporary_fail) that fails twice and then waits 10 minutes.
 */
async function scenario(): Promise<Scenario> {
  const receiver = await startWebhookReceiver((nth) => (nth === 1 ? 500 : 200));
  cleanups.push(() => receiver.close());
  const mx = await startFakeMx({
    rcpt: (address, attempt) => {
      if (address.startsWith('retry@') && attempt === 1) return { code: 451, text: '4.2.0 <retry@example.test>: mailbox busy, try again later' };
      if (address.startsWith('unknown@')) return { code: 550, text: '5.1.1 <unknown@example.test>: Recipient address rejected: User unknown in virtual mailbox table' };
      return null;
    },
  });
  cleanups.push(() => mx.close());
  const downHook = `http://hook-user:s3cret-pass@127.0.0.1:${await closedPort()}/hooks/rebound?token=abc123secret`;
  const { relay, base } = await startPanel({
    delivery: { ...FAST_DELIVERY, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
    webhooks: {
      endpoints: [
        { url: receiver.url, events: ['permanent_fail'], secret: SECRET },
        { url: downHook, events: ['delivered', 'temporary_fail'], secret: SECRET },
      ],
      allowPrivateTargets: true,
      pollIntervalMs: 50,
      timeoutSeconds: 2,
      concurrency: 4,
      retryScheduleSeconds: [0.2, 600],
    },
  });
  const sale = await submit(relay, {
    from: 'Shop <app@shop.example>',
    to: ['retry@example.test', 'ok@example.test', 'unknown@example.test'],
    subject: INJECTED_SUBJECT,
    messageId: '<spring-1@shop.example>',
    headers: { 'X-Campaign-ID': 'spring-2026' },
  });
  const invoice = await submit(relay, { from: 'billing@shop.example', to: ['ok@example.test'], subject: 'Invoice 42', messageId: '<invoice-42@shop.example>' });
  const statuses = () => relay.db.prepare('SELECT address, status FROM recipients ORDER BY id').all().map((row) => Object.values(row as object).join(' '));
  await waitFor('every recipient final', statuses, (rows) => rows.join(',') === 'retry@example.test delivered,ok@example.test delivered,unknown@example.test bounced,ok@example.test delivered');
  const webhooks = () => relay.db.prepare('SELECT status, attempts FROM webhook_deliveries ORDER BY endpoint_url, id').all().map((row) => Object.values(row as object).join(' '));
  // The good endpoint: one delivery (tried twice); the down one: four, each tried twice and waiting.
  await waitFor('the webhooks settled', webhooks, (rows) => rows.filter((row) => row === 'delivered 2').length === 1 && rows.filter((row) => row === 'pending 2').length === 4);
  return { relay, base, sale, invoice, goodHook: receiver.url, downHook };
}

async function search(page: Page, term: string, kind = 'auto'): Promise<void> {
  await page.getByLabel('Address, sender, Message-ID, subject or queue id').fill(term);
  await page.getByLabel('Search as').selectOption(kind);
  await Promise.all([page.waitForURL(/\/history\?/), page.getByRole('button', { name: 'Search' }).click()]);
}

const rowsOf = (page: Page, queueId: string, address: string, table: 'attempts' | 'events' | 'webhooks') =>
  page.locator(`article[data-queue-id="${queueId}"] section[data-address="${address}"] table[data-table="${table}"] tbody tr`).allInnerTexts();

const foundQueueIds = (page: Page) => page.locator('article.message').evaluateAll((articles) => articles.map((a) => a.getAttribute('data-queue-id')));

describe('the panel: recipient history and webhooks in Chromium', () => {
  it('finds mail by address, queue id, Message-ID, subject and sender, with every attempt, event and webhook delivery', async () => {
    const { base, sale, invoice } = await scenario();
    const page = await browser.page();
    page.on('dialog', (dialog) => {
      browser.problems.push(`dialog: ${dialog.message()}`);
      void dialog.dismiss();
    });
    await signIn(page, base, ADMIN_TOKEN);
    await page.getByRole('navigation').getByRole('link', { name: 'Recipient history' }).click();
    await page.waitForURL(`${base}/history`);

    // An address: mail to it (the index), newest first; only its own recipient of the sale.
    await search(page, 'retry@example.test');
    await expect(page.locator('.searched').textContent()).resolves.toContain('Searched as recipient address (guessed from the term: there is mail to that address; choose "Sender" for mail from it).');
    expect(await foundQueueIds(page)).toEqual([sale]);
    const article = page.locator(`article[data-queue-id="${sale}"]`);
    await expect(article.locator('section.recipient').count()).resolves.toBe(1);
    await expect(article.locator('.more-recipients').textContent()).resolves.toContain('2 other recipients not shown');
    const attempts = await rowsOf(page, sale, 'retry@example.test', 'attempts');
    expect(attempts).toHaveLength(2);
    expect(attempts[0]).toMatch(/127\.0\.0\.1\s+temporary_fail\s+451\s+4\.2\.0\s+.*mailbox busy, try again later/);
    expect(attempts[1]).toMatch(/delivered\s+250/);
    const events = await rowsOf(page, sale, 'retry@example.test', 'events');
    expect(events.map((row) => row.split('\t')[1])).toEqual(['accepted', 'temporary_fail', 'delivered']);
    // Its temporary_fail and delivered events went to the down endpoint: waiting, URL masked.
    const hooks = await rowsOf(page, sale, 'retry@example.test', 'webhooks');
    expect(hooks).toHaveLength(2);
    for (const row of hooks) expect(row).toMatch(/http:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:\d+\/hooks\/rebound\?token=\*\*\*\s+pending \(next try .*\)\s+2\s+(\S*ECONNREFUSED|connect)/);
    await expect(fitsViewport(page)).resolves.toBe(true);
    await screenshot(page, 'history');

    // A queue id: the whole message, every recipient.
    await search(page, sale.toLowerCase());
    expect(await foundQueueIds(page)).toEqual([sale]);
    await expect(article.locator('section.recipient').evaluateAll((s) => s.map((e) => e.getAttribute('data-address')))).resolves.toEqual([
      'retry@example.test',
      'ok@example.test',
      'unknown@example.test',
    ]);
    const bounce = await rowsOf(page, sale, 'unknown@example.test', 'attempts');
    expect(bounce).toHaveLength(1);
    expect(bounce[0]).toMatch(/permanent_fail\s+550\s+5\.1\.1\s+.*User unknown in virtual mailbox table\s+bad-mailbox/);
    const bounceEvents = await rowsOf(page, sale, 'unknown@example.test', 'events');
    expect(bounceEvents[1]).toMatch(/permanent_fail\s+bounced\s+.*User unknown.*\s+immediate\s+bad-mailbox/);
    // The good endpoint answered 500 first, 200 on the second try.
    const bounceHooks = await rowsOf(page, sale, 'unknown@example.test', 'webhooks');
    expect(bounceHooks).toHaveLength(1);
    expect(bounceHooks[0]).toMatch(/permanent_fail .*\/hooks\/rebound\s+delivered\s+2\s+200/);
    await expect(article.locator('[data-fact="campaign"]').textContent()).resolves.toBe('spring-2026');
    await expect(article.locator('[data-fact="from"]').textContent()).resolves.toBe('app@shop.example');
    await expect(article.locator('[data-fact="message-id"]').textContent()).resolves.toBe('<spring-1@shop.example>');

    // The subject, as text: no element made of it, no script run (a dialog would be a problem).
    await expect(article.locator('.subject').textContent()).resolves.toBe(INJECTED_SUBJECT);
    await expect(article.locator('[data-fact="subject"]').textContent()).resolves.toBe(INJECTED_SUBJECT);
    await expect(page.locator('main img').count()).resolves.toBe(0);

    // A Message-ID in <>, a part of a subject (any case), a sender; ok@ has two messages, newest first.
    await search(page, '<spring-1@shop.example>');
    expect(await foundQueueIds(page)).toEqual([sale]);
    await expect(page.locator('.matched').textContent()).resolves.toBe('Found by Message-ID');
    await search(page, 'spring sale');
    expect(await foundQueueIds(page)).toEqual([sale]);
    await search(page, 'billing@shop.example');
    expect(await foundQueueIds(page)).toEqual([invoice]);
    await expect(page.locator('.matched').textContent()).resolves.toBe('Found by sender');
    await expect(page.locator('.searched').textContent()).resolves.toContain('Searched as sender (guessed from the term: there is no mail to that address, so mail from it).');
    await expect(page.locator('section.recipient').count()).resolves.toBe(1);
    await search(page, 'ok@example.test');
    expect(await foundQueueIds(page)).toEqual([invoice, sale]);
    await search(page, 'Invoice', 'subject');
    expect(await foundQueueIds(page)).toEqual([invoice]);
    await search(page, 'app@shop.example', 'sender');
    expect(await foundQueueIds(page)).toEqual([sale]);

    // The queue id in a message's heading opens the whole message.
    await search(page, 'ok@example.test');
    await Promise.all([page.waitForURL(/kind=queue-id/), page.locator(`article[data-queue-id="${invoice}"] h2 a`).click()]);
    expect(await foundQueueIds(page)).toEqual([invoice]);
    await expect(page.getByLabel('Search as').inputValue()).resolves.toBe('queue-id');

    for (const secret of CREDENTIALS) expect(await page.content()).not.toContain(secret);
  });

  it('says clearly what is wrong with an empty search, an unknown queue id, a term of the wrong kind, a huge term, and an HTML term', async () => {
    const { base } = await startPanel();
    const page = await browser.page(PHONE);
    await signIn(page, base, VIEWER_TOKEN);
    await page.goto(`${base}/webhooks`);
    await expect(page.locator('main .notice').textContent()).resolves.toBe('No webhook endpoints are configured: add them under webhooks.endpoints in the config (url, events, secret) and restart.');
    await page.goto(`${base}/history`);
    await expect(page.locator('main').textContent()).resolves.toContain('Every message to or from an address');

    await search(page, '   ');
    await expect(page.getByRole('alert').textContent()).resolves.toBe('Enter an address, a sender, a Message-ID, a subject or a queue id.');
    await search(page, '00000000000000000Z');
    await expect(page.getByRole('status').textContent()).resolves.toContain('No message has queue id "00000000000000000Z": it was never accepted here, or store.retention.historyDays removed it.');
    await search(page, 'not-an-address', 'recipient');
    await expect(page.getByRole('alert').textContent()).resolves.toBe('"not-an-address" is not an email address (local@domain).');
    await expect(page.getByLabel('Address, sender, Message-ID, subject or queue id').inputValue()).resolves.toBe('not-an-address');
    await search(page, 'QUEUE-ID?', 'queue-id');
    await expect(page.getByRole('alert').textContent()).resolves.toMatch(/^"QUEUE-ID\?" is not a queue id: queue ids are 18 characters/);
    await search(page, 'nobody@example.test');
    await expect(page.getByRole('status').textContent()).resolves.toContain('No mail to or from that address. A Message-ID is searched when written in <angle brackets>');

    // The field stops at 500 characters; a longer term sent by hand is refused, not searched.
    const huge = await fetch(`${base}/history?q=${'x'.repeat(5000)}`, { headers: { cookie: await sessionCookie(page) } });
    expect(huge.status).toBe(200);
    expect(await huge.text()).toContain('The search term is 5,000 characters long; at most 500 are searched.');
    const twice = await fetch(`${base}/history?q=a&q=b`, { headers: { cookie: await sessionCookie(page) } });
    expect(await twice.text()).toContain('Give each of q, kind and before once in the address.');
    const badKind = await fetch(`${base}/history?q=a&kind=everything`, { headers: { cookie: await sessionCookie(page) } });
    expect(await badKind.text()).toContain('&quot;everything&quot; is not a kind of search');
    const badPlace = await fetch(`${base}/history?q=a&before=-1%20OR%201=1`, { headers: { cookie: await sessionCookie(page) } });
    expect(await badPlace.text()).toContain('&quot;-1 OR 1=1&quot; is not a place in the results; start the search again.');

    // A term made of HTML comes back as text in the field and in the message.
    await search(page, '<script>alert(1)</script>', 'recipient');
    await expect(page.getByRole('alert').textContent()).resolves.toBe('"<script>alert(1)</script>" is not an email address (local@domain).');
    await expect(page.getByLabel('Address, sender, Message-ID, subject or queue id').inputValue()).resolves.toBe('<script>alert(1)</script>');
    await expect(page.locator('main script').count()).resolves.toBe(0);
    await expect(fitsViewport(page)).resolves.toBe(true);
  });

  it('shows the webhook endpoints with masked credentials, the backlog per endpoint and the last failures, at 1280 and 390 px', async () => {
    const { relay, base, sale, goodHook } = await scenario();
    for (const viewport of [DESKTOP, PHONE]) {
      const page = await browser.page(viewport);
      await signIn(page, base, VIEWER_TOKEN);
      await page.getByRole('navigation').getByRole('link', { name: 'Webhooks' }).click();
      await page.waitForURL(`${base}/webhooks`);
      const endpoints = page.locator('table[data-table="endpoints"] tbody tr');
      await expect(endpoints.count()).resolves.toBe(2);
      const [good, down] = await endpoints.allInnerTexts();
      expect(good).toMatch(new RegExp(`^${goodHook.replace(/[.?*]/g, '\\$&')}\\s+permanent_fail\\s+0\\s*$`));
      expect(down).toMatch(/^http:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:\d+\/hooks\/rebound\?token=\*\*\*\s+delivered, temporary_fail\s+4\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d 2 tries, last: connect ECONNREFUSED 127\.0\.0\.1:\d+\s+\d{4}-/);
      await expect(page.locator('[data-outbox]').getAttribute('data-outbox')).resolves.toBe('0');
      await expect(page.getByLabel('Backlog').textContent()).resolves.toContain('4 deliveries are waiting for their endpoint (per endpoint above).');
      await expect(page.getByLabel('Backlog').textContent()).resolves.not.toContain('no longer in webhooks.endpoints');

      // Failures: the good endpoint's 500 (now delivered), the down endpoint's refused connections (waiting).
      const failures = await page.locator('table[data-table="failures"] tbody tr').allInnerTexts();
      expect(failures).toHaveLength(9);
      const fiveHundred = failures.filter((row) => row.includes('500'));
      expect(fiveHundred).toHaveLength(1);
      expect(fiveHundred[0]).toMatch(/\/hooks\/rebound\s+permanent_fail for unknown@example\.test\s+500 scripted 500\s+delivered\s+/);
      expect(fiveHundred[0]).toContain(sale);
      expect(failures.filter((row) => /ECONNREFUSED/.test(row) && /\s+pending\s+/.test(row))).toHaveLength(8);
      for (const secret of CREDENTIALS) expect(await page.content()).not.toContain(secret);
      await expect(fitsViewport(page)).resolves.toBe(true);
      await screenshot(page, 'webhooks');

      // A failure's message link opens its history.
      await Promise.all([page.waitForURL(/\/history\?/), page.locator('table[data-table="failures"] a').first().click()]);
      await expect(page.locator('article.message').count()).resolves.toBe(1);
    }

    // A delivery owed to a URL no longer configured (another node's config, say) is counted apart.
    const writer = new BetterSqlite3(relay.config.store.path);
    writer.pragma('busy_timeout = 5000');
    const eventId = writer.prepare("SELECT id FROM events WHERE event = 'delivered' LIMIT 1").pluck().get() as number;
    writer.prepare(`INSERT INTO webhook_deliveries (event_id, endpoint_url, next_attempt_at, created_at, updated_at) VALUES (?, 'https://old:pw@old.example/hook', '2099-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`).run(eventId);
    writer.close();
    const page = await browser.page();
    await signIn(page, base, ADMIN_TOKEN);
    await page.goto(`${base}/webhooks`);
    await expect(page.getByLabel('Backlog').textContent()).resolves.toContain('1 delivery waits for endpoints no longer in webhooks.endpoints; the sender gives them up when the relay restarts.');
    await expect(page.locator('[data-backlog="pending"]').allInnerTexts()).resolves.toEqual(['0', '4']);
  });

  it('shows the newest 20 messages to an address and the rest behind "Older matches"', async () => {
    const { relay, base } = await startPanel();
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true, pool: true, maxConnections: 1 });
    const queueIds: string[] = [];
    for (let i = 0; i < 25; i++) {
      const info = await transport.sendMail({ from: 'app@shop.example', to: 'many@example.test', subject: `Notice ${i}`, text: 'x' });
      queueIds.push(info.response.split(' ').pop() as string);
    }
    transport.close();
    const page = await browser.page();
    await signIn(page, base, ADMIN_TOKEN);
    await page.goto(`${base}/history`);
    await search(page, 'many@example.test', 'recipient');
    await expect(page.locator('.searched').textContent()).resolves.toContain('Showing the newest 20 messages; older matches follow on the next page.');
    expect(await foundQueueIds(page)).toEqual(queueIds.slice(5).reverse());
    await Promise.all([page.waitForURL(/before=/), page.getByRole('link', { name: 'Older matches' }).click()]);
    expect(await foundQueueIds(page)).toEqual(queueIds.slice(0, 5).reverse());
    await expect(page.locator('.searched').textContent()).resolves.toContain('5 messages further back, newest first.');
    await expect(page.getByRole('link', { name: 'Older matches' }).count()).resolves.toBe(0);
    // Each message here is queued (delivery is off): no attempts yet, the accepted event, no webhooks.
    await expect(page.locator('table[data-table="events"] tbody tr').count()).resolves.toBe(5);
    await expect(page.locator('[data-table="attempts"]').first().textContent()).resolves.toBe('No attempts.');

    // Messages with many recipients: 20 of each when several are found, all (up to 200) of one.
    const list = Array.from({ length: 25 }, (_, i) => `member${i}@example.test`);
    const lists: string[] = [];
    for (const n of [1, 2]) {
      const info = await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from: 'list@shop.example', to: list, subject: `Big list ${n}`, text: 'x' });
      lists.push(info.response.split(' ').pop() as string);
    }
    await search(page, 'Big list');
    expect(await foundQueueIds(page)).toEqual([...lists].reverse());
    await expect(page.locator('section.recipient').count()).resolves.toBe(40);
    await expect(page.locator('.more-recipients').allInnerTexts()).resolves.toEqual(Array(2).fill('Showing the first 20 of 25 recipients; search one address to see its history.'));
    await search(page, 'Big list 2');
    await expect(page.locator('section.recipient').count()).resolves.toBe(25);
    await expect(page.locator('.more-recipients').count()).resolves.toBe(0);
  });

  it('lays the history out at 390 px, shows both pages to a viewer with nothing to change, and has no route that changes anything', async () => {
    const { base, sale } = await scenario();
    const page = await browser.page(PHONE);
    await signIn(page, base, VIEWER_TOKEN);
    await page.goto(`${base}/history?q=${sale}`);
    await expect(page.locator('section.recipient').count()).resolves.toBe(3);
    await expect(fitsViewport(page)).resolves.toBe(true);
    await screenshot(page, 'history');
    // The only buttons: search, and sign out.
    await expect(page.locator('main button, main form[method="post"]').allInnerTexts()).resolves.toEqual(['Search']);
    await page.goto(`${base}/webhooks`);
    await expect(page.locator('main button, main form').count()).resolves.toBe(0);

    // No POST route exists at either path; a forged one (no CSRF token, a viewer's or an admin's session) changes nothing.
    const cookie = await sessionCookie(page);
    for (const path of ['/history', '/webhooks']) {
      const forged = await fetch(`${base}${path}`, { method: 'POST', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: 'q=x', redirect: 'manual' });
      expect(forged.status).toBeGreaterThanOrEqual(400);
      expect(forged.status).toBeLessThan(500);
    }
    // Signed out: both pages send to the sign-in page.
    for (const path of ['/history?q=ok@example.test', '/webhooks']) {
      const anonymous = await fetch(`${base}${path}`, { redirect: 'manual' });
      expect(anonymous.status).toBe(303);
      expect(anonymous.headers.get('location')).toBe('/sign-in');
    }
  });
});

async function sessionCookie(page: Page): Promise<string> {
  const session = (await page.context().cookies()).find((cookie) => cookie.name === 'rebound_session');
  if (!session) throw new Error('not signed in');
  return `rebound_session=${session.value}`;
}
