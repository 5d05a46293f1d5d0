import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, DESKTOP, fitsViewport, panelBrowser, panelRelaysStoppedAfterEachTest, PHONE, screenshot, signIn, VIEWER_TOKEN } from './support/panel-browser.js';

const startPanel = panelRelaysStoppedAfterEachTest();
const browser = panelBrowser();

describe('the panel: sign-in, session and overview in Chromium', () => {
  it('sends a visitor without a session to the sign-in page, signs in with an admin token, shows the overview, and signs out', async () => {
    const { base } = await startPanel();
    const page = await browser.page();
    await page.goto(`${base}/`);
    expect(new URL(page.url()).pathname).toBe('/sign-in');
    await screenshot(page, 'sign-in');

    await signIn(page, base, ADMIN_TOKEN);
    await expect(page.getByRole('heading', { name: 'Overview' }).isVisible()).resolves.toBe(true);
    await expect(page.getByText('ops (admin)').isVisible()).resolves.toBe(true);
    for (const name of ['Suppressions', 'Bounces report', 'Queue', 'Recipient history', 'Webhooks']) {
      await expect(page.getByRole('navigation').getByRole('link', { name }).isVisible()).resolves.toBe(true);
    }

    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'rebound_session');
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', secure: false });
    expect(session?.value).not.toContain(ADMIN_TOKEN);
    expect(page.url()).not.toContain(ADMIN_TOKEN);

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${base}/sign-in`);
    // The old cookie, sent again by hand, opens nothing.
    const again = await fetch(`${base}/`, { headers: { cookie: `rebound_session=${session?.value}` }, redirect: 'manual' });
    expect(again.status).toBe(303);
    expect(again.headers.get('location')).toBe('/sign-in');
  });

  it('refuses a wrong token with a 401, more slowly each time, and keeps no session', async () => {
    const { base } = await startPanel();
    const page = await browser.page();
    await page.goto(`${base}/sign-in`);
    const times: number[] = [];
    for (let i = 0; i < 2; i++) {
      await page.getByLabel('Admin token').fill('not-a-token-of-this-relay-at-all');
      const started = Date.now();
      const [response] = await Promise.all([page.waitForResponse((r) => r.url() === `${base}/sign-in` && r.request().method() === 'POST'), page.getByRole('button', { name: 'Sign in' }).click()]);
      expect(response.status()).toBe(401);
      times.push(Date.now() - started);
      await expect(page.getByRole('alert').textContent()).resolves.toBe('That token is not one of admin.tokens.');
    }
    // 0.5 s, then 1 s (sign-in-throttle.ts).
    expect(times[0]).toBeGreaterThanOrEqual(450);
    expect(times[1]).toBeGreaterThanOrEqual(950);
    expect((await page.context().cookies()).some((c) => c.name === 'rebound_session')).toBe(false);
  });

  it('refuses a sign-in form posted without its CSRF token, and an API bearer token is not a panel session', async () => {
    const { base } = await startPanel();
    const forged = await fetch(`${base}/sign-in`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${ADMIN_TOKEN}`, redirect: 'manual' });
    expect(forged.status).toBe(403);
    expect(forged.headers.get('set-cookie') ?? '').not.toContain('rebound_session');
    const withBearer = await fetch(`${base}/`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, redirect: 'manual' });
    expect(withBearer.status).toBe(303);
  });

  it('shows the overview to a viewer, and serves every page with a CSP that allows no inline script and no framing', async () => {
    const { base } = await startPanel();
    const page = await browser.page();
    await signIn(page, base, VIEWER_TOKEN);
    await expect(page.getByText('auditor (viewer)').isVisible()).resolves.toBe(true);
    const response = await page.goto(`${base}/`);
    const csp = response?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(response?.headers()['x-frame-options']).toBe('DENY');
  });

  it('lays the overview out at 1280 px and at 390 px without sideways scrolling', async () => {
    const { base } = await startPanel();
    for (const viewport of [DESKTOP, PHONE]) {
      const page = await browser.page(viewport);
      await signIn(page, base, ADMIN_TOKEN);
      await expect(fitsViewport(page)).resolves.toBe(true);
      await screenshot(page, 'overview');
    }
  });
});
