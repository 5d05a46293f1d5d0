import { existsSync, readFileSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generatedTokenPath } from '../src/admin/generated-token.js';
import { PanelSessions, SESSION_IDLE_MS, SESSION_MAX_MS } from '../src/admin/panel/sessions.js';
import { SignInThrottle } from '../src/admin/panel/sign-in-throttle.js';
import { ADMIN_TOKEN, panelRelaysStoppedAfterEachTest, VIEWER_TOKEN } from './support/panel-browser.js';
import { relaysStoppedAfterEachTest } from './support/relay.js';

const startPanel = panelRelaysStoppedAfterEachTest();
const startRelay = relaysStoppedAfterEachTest();

describe('panel sessions', () => {
  it('end after 8 hours idle and 24 hours in all, and a closed or unknown id opens nothing', () => {
    let now = 0;
    const sessions = new PanelSessions(() => now);
    const holder = { name: 'ops', role: 'admin' as const };
    const idle = sessions.open(holder);
    now += SESSION_IDLE_MS + 1;
    expect(sessions.find(idle)).toBeNull();

    const busy = sessions.open(holder);
    for (let used = 0; used < SESSION_MAX_MS; used += SESSION_IDLE_MS / 2) {
      now += SESSION_IDLE_MS / 2;
      if (used + SESSION_IDLE_MS / 2 < SESSION_MAX_MS) expect(sessions.find(busy)?.holder).toEqual(holder);
    }
    now += 1;
    expect(sessions.find(busy)).toBeNull();

    const closed = sessions.open(holder);
    sessions.close(closed);
    expect(sessions.find(closed)).toBeNull();
    expect(sessions.find('made-up')).toBeNull();
    expect(sessions.find(undefined)).toBeNull();
    expect(closed).toMatch(/^[\w-]{43}$/);
  });

  it('keep at most 1,000 at once: a script signing in in a loop pushes out the least recently used', () => {
    const sessions = new PanelSessions();
    const first = sessions.open({ name: 'ops', role: 'admin' });
    const second = sessions.open({ name: 'ops', role: 'admin' });
    sessions.find(first);
    for (let i = 0; i < 1_000; i++) sessions.open({ name: 'bot', role: 'viewer' });
    expect(sessions.size).toBe(1_000);
    expect(sessions.find(second)).toBeNull();
  });
});

describe('the sign-in throttle', () => {
  it('waits 0.5 s, 1 s, 2 s ... up to 8 s after each failure, locks the address out after 10 for 15 minutes, and forgets it after a success', () => {
    let now = 0;
    const throttle = new SignInThrottle(() => now);
    const waits = Array.from({ length: 10 }, () => throttle.failed('192.0.2.1'));
    expect(waits).toEqual([500, 1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000, 8000]);
    expect(throttle.lockedFor('192.0.2.1')).toBe(15 * 60 * 1000);
    expect(throttle.lockedFor('192.0.2.2')).toBe(0);
    now += 15 * 60 * 1000 + 1;
    expect(throttle.lockedFor('192.0.2.1')).toBe(0);
    expect(throttle.failed('192.0.2.1')).toBe(500);
    throttle.succeeded('192.0.2.1');
    expect(throttle.failed('192.0.2.1')).toBe(500);
  });
});

describe('token roles in the API', () => {
  it('lets a viewer token read and refuses it every change with a 403 that says why; an admin token changes', async () => {
    const { base } = await startPanel();
    const read = await fetch(`${base}/v1/suppressions`, { headers: { authorization: `Bearer ${VIEWER_TOKEN}` } });
    expect(read.status).toBe(200);
    const change = await fetch(`${base}/v1/suppressions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${VIEWER_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ address: 'someone@example.com', type: 'bounces' }),
    });
    expect(change.status).toBe(403);
    expect(await change.json()).toEqual({ error: 'the token "auditor" has the viewer role: it may read, not change anything; use a token with "role": "admin"' });
    const removal = await fetch(`${base}/v1/suppressions/bounces/someone@example.com`, { method: 'DELETE', headers: { authorization: `Bearer ${VIEWER_TOKEN}` } });
    expect(removal.status).toBe(403);
    const admin = await fetch(`${base}/v1/suppressions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ address: 'someone@example.com', type: 'bounces' }),
    });
    expect(admin.status).toBeLessThan(300);
  });
});

describe('the generated admin token', () => {
  it('is made at the first start when admin.tokens is empty, written beside the store for its owner only, kept across restarts, and signs in to the API', async () => {
    const relay = await startRelay({ admin: { enabled: true, port: 0, tokens: [] } });
    const file = generatedTokenPath(relay.config.store.path);
    expect(existsSync(file)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const token = readFileSync(file, 'utf8').trim();
    expect(token).toMatch(/^[\w-]{43}$/);
    const base = `http://127.0.0.1:${relay.relay.admin?.port}`;
    expect((await fetch(`${base}/v1/suppressions`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await fetch(`${base}/v1/suppressions`, { headers: { authorization: 'Bearer not-the-generated-token-000000' } })).status).toBe(401);
    await relay.stopRelay();

    const again = await startRelay({ admin: { enabled: true, port: 0, tokens: [] }, store: { path: relay.config.store.path } });
    expect(readFileSync(file, 'utf8').trim()).toBe(token);
    expect((await fetch(`http://127.0.0.1:${again.relay.admin?.port}/v1/suppressions`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });

  it('is not made when admin.tokens has tokens', async () => {
    const { relay } = await startPanel();
    expect(existsSync(generatedTokenPath(relay.config.store.path))).toBe(false);
  });
});
