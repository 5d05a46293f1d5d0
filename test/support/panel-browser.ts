import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { relaysStoppedAfterEachTest, type ConfigOverride, type TestRelay } from './relay.js';

/** Debian's Chromium (`apt-get install chromium`; .ci/run installs it): nothing can download a browser build here. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Where the panel tests save a screenshot of every page they visit, at each width. */
export const SCREENSHOT_DIR = fileURLToPath(new URL('../../test-output/panel/', import.meta.url));

export const ADMIN_TOKEN = 'panel-admin-0123456789abcdefghij';
export const VIEWER_TOKEN = 'panel-viewer-0123456789abcdefghi';
export const PANEL_TOKENS = [
  { name: 'ops', token: ADMIN_TOKEN, role: 'admin' },
  { name: 'auditor', token: VIEWER_TOKEN, role: 'viewer' },
];

export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

export interface PanelRelay {
  relay: TestRelay;
  base: string;
}

/** A relay with its admin server (and so the panel) on 127.0.0.1, port 0, and the two test tokens. */
export function panelRelaysStoppedAfterEachTest(): (override?: ConfigOverride) => Promise<PanelRelay> {
  const start = relaysStoppedAfterEachTest();
  return async (override = {}) => {
    const relay = await start({ ...override, admin: { enabled: true, port: 0, tokens: PANEL_TOKENS, ...((override.admin ?? {}) as object) } });
    const address = relay.relay.admin;
    if (!address) throw new Error('the test relay started without its admin server');
    return { relay, base: `http://127.0.0.1:${address.port}` };
  };
}

export interface PanelBrowser {
  /** A fresh browser context (its own cookies) and page at this viewport; closed after each test. */
  page(viewport?: { width: number; height: number }): Promise<Page>;
  /** Problems the pages reported: console errors (a CSP violation is one) and uncaught exceptions. */
  problems: string[];
}

/**
 * One Chromium for the file, a context per page. Every console error and page error is collected,
 * and a test fails if there was any: a script the CSP blocked shows up there.
 */
export function panelBrowser(): PanelBrowser {
  let browser: Browser | null = null;
  const contexts: BrowserContext[] = [];
  const problems: string[] = [];
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  });
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()));
    const seen = problems.splice(0);
    expect(seen, 'the pages reported no console error and no uncaught exception').toEqual([]);
  });
  afterAll(async () => {
    await browser?.close();
  });
  return {
    problems,
    async page(viewport = DESKTOP) {
      if (!browser) throw new Error('the browser has not started');
      const context = await browser.newContext({ viewport, acceptDownloads: true });
      contexts.push(context);
      const page = await context.newPage();
      page.on('console', (message) => {
        // A failed sign-in answers 401 on purpose; Chromium logs that as a failed resource.
        if (message.type() === 'error' && !/status of 401/.test(message.text())) problems.push(`console: ${message.text()}`);
      });
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      return page;
    },
  };
}

/** Signs in through the form, as a person would; resolves on the overview. */
export async function signIn(page: Page, base: string, token: string): Promise<void> {
  await page.goto(`${base}/sign-in`);
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/`);
}

/** Saves a full-page screenshot as test-output/panel/NAME-WIDTH.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = join(SCREENSHOT_DIR, `${name}-${page.viewportSize()?.width ?? 0}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** True when nothing on the page is wider than the viewport (tables scroll inside their own box). */
export async function fitsViewport(page: Page): Promise<boolean> {
  // Runs in the page; the test project has no DOM types, so the two globals are named by shape.
  return page.evaluate(() => {
    const view = globalThis as unknown as { document: { documentElement: { scrollWidth: number } }; innerWidth: number };
    return view.document.documentElement.scrollWidth <= view.innerWidth;
  });
}
