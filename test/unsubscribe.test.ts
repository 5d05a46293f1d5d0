import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { linkKeyOf, signedToken } from '../src/bounces/verp.js';
import { listUnsubscribeHeaders, readUnsubscribeToken, type UnsubscribeSettings } from '../src/unsubscribe/index.js';
import { startFakeMx } from './support/fake-mx.js';
import { startTestRelay, type TestRelay } from './support/relay.js';
import { waitFor } from './support/wait-for.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('one-click unsubscribe (RFC 8058)', () => {
  it('adds List-Unsubscribe per recipient, and a mail to its mailto: address puts the address on unsubscribes', async () => {
    const mx = await startFakeMx();
    cleanups.push(() => mx.close());
    const relay = await startTestRelay({
      returnPath: { domain: 'bounces.relay.test' },
      unsubscribe: { enabled: true, url: 'https://mail.shop.example/unsubscribe' },
      inbound: { enabled: true },
      delivery: { enabled: true, pollIntervalMs: 50, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
    });
    cleanups.push(() => relay.stop());
    const submit = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true });
    await submit.sendMail({ from: 'news@shop.example', to: ['reader@example.test', 'other@example.test'], subject: 'news', text: 'hi' });
    await waitFor('two deliveries', () => mx.received.length, (n) => n === 2);

    // One transaction per recipient, each with its own signed links.
    const forReader = mx.received.find((m) => m.to[0] === 'reader@example.test');
    const head = forReader?.raw.toString('latin1').split('\r\n\r\n')[0] ?? '';
    const match = /^List-Unsubscribe: <mailto:(unsubscribe\+[^?>]+@bounces\.relay\.test)\?subject=unsubscribe>, <(https:\/\/mail\.shop\.example\/unsubscribe\/[0-9a-z-]+)>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nReceived: /.exec(head);
    expect(match).not.toBeNull();
    const other = mx.received.find((m) => m.to[0] === 'other@example.test')?.raw.toString('latin1') ?? '';
    expect(other).toContain('List-Unsubscribe: <mailto:unsubscribe+');
    expect(other).not.toContain(match?.[1]);

    const reply = await nodemailer
      .createTransport({ host: '127.0.0.1', port: relay.relay.inbound?.port ?? 0, ignoreTLS: true })
      .sendMail({ from: 'reader@example.test', to: match?.[1], subject: 'unsubscribe', text: 'unsubscribe' });
    expect(reply.response).toMatch(/^250 .*unsubscribed/);
    expect(relay.db.prepare('SELECT address, type, source FROM suppressions').all()).toEqual([{ address: 'reader@example.test', type: 'unsubscribes', source: 'unsubscribe' }]);
    const event = relay.db.prepare("SELECT e.id, e.reason FROM events e WHERE e.event = 'unsubscribed'").get() as { id: number; reason: string };
    expect(event.reason).toBe('mailto');
    expect(relay.db.prepare('SELECT count(*) AS n FROM webhook_outbox WHERE event_id = ?').get(event.id)).toEqual({ n: 1 });

    // Later mail to that address is dropped; the other reader still gets it.
    await submit.sendMail({ from: 'news@shop.example', to: ['reader@example.test', 'other@example.test'], subject: 'more news', text: 'hi' });
    await waitFor('the next message', () => relay.db.prepare("SELECT status FROM recipients WHERE address = 'reader@example.test' ORDER BY id DESC LIMIT 1").get() as { status: string }, (row) => row.status === 'suppressed');
    await waitFor('the other delivery', () => mx.received.length, (n) => n === 3);
  });

  it('leaves a message alone that already has its own List-Unsubscribe', async () => {
    const mx = await startFakeMx();
    cleanups.push(() => mx.close());
    const relay = await startTestRelay({
      unsubscribe: { enabled: true, url: 'https://mail.shop.example/unsubscribe' },
      delivery: { enabled: true, pollIntervalMs: 50, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
    });
    cleanups.push(() => relay.stop());
    await nodemailer
      .createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true })
      .sendMail({ from: 'news@shop.example', to: 'x@example.test', subject: 'own link', text: 'hi', headers: { 'List-Unsubscribe': '<https://shop.example/u/1>' } });
    await waitFor('delivery', () => mx.received.length, (n) => n === 1);
    const raw = mx.received[0]?.raw.toString('latin1') ?? '';
    expect(raw.match(/^List-Unsubscribe:/gim)).toHaveLength(1);
    expect(raw).toContain('List-Unsubscribe: <https://shop.example/u/1>');
  });
});

describe('the one-click endpoint on the admin server', () => {
  it('unsubscribes on the RFC 8058 POST, shows only a button on GET, refuses a forged link', async () => {
    const mx = await startFakeMx();
    cleanups.push(() => mx.close());
    const relay = await startTestRelay({
      unsubscribe: { enabled: true, url: 'https://mail.shop.example/unsubscribe' },
      admin: { enabled: true },
      delivery: { enabled: true, pollIntervalMs: 50, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
    });
    cleanups.push(() => relay.stop());
    await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from: 'news@shop.example', to: 'clicker@example.test', text: 'hi' });
    await waitFor('delivery', () => mx.received.length, (n) => n === 1);
    const link = /<https:\/\/mail\.shop\.example\/unsubscribe\/([0-9a-z-]+)>/.exec(mx.received[0]?.raw.toString('latin1') ?? '')?.[1];
    expect(link).toBeDefined();
    const base = `http://127.0.0.1:${relay.relay.admin?.port}/unsubscribe`;

    const shown = await fetch(`${base}/${link}`);
    expect(shown.status).toBe(200);
    expect(await shown.text()).toContain('<form method="post"');
    expect(relay.db.prepare('SELECT count(*) AS n FROM suppressions').get()).toEqual({ n: 0 }); // a GET unsubscribes nobody

    const post = () => fetch(`${base}/${link}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    const first = await post();
    expect(first.status).toBe(200);
    expect(await first.text()).toContain('clicker@example.test will not get these emails any more');
    expect((await post()).status).toBe(200); // a client that POSTs twice changes nothing more
    expect(relay.db.prepare("SELECT address, type, source FROM suppressions").all()).toEqual([{ address: 'clicker@example.test', type: 'unsubscribes', source: 'unsubscribe' }]);
    expect(relay.db.prepare("SELECT count(*) AS n FROM events WHERE event = 'unsubscribed' AND reason = 'one-click'").get()).toEqual({ n: 1 });

    const forged = await fetch(`${base}/${link?.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a'))}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    expect(forged.status).toBe(404);
  });
});

/** A relay whose admin server serves /unsubscribe, and the token of one delivered recipient's link. */
async function oneClickRelay(): Promise<{ relay: TestRelay; base: string; link: string; address: string }> {
  const mx = await startFakeMx();
  cleanups.push(() => mx.close());
  const relay = await startTestRelay({
    unsubscribe: { enabled: true, url: 'https://mail.shop.example/unsubscribe' },
    admin: { enabled: true },
    delivery: { enabled: true, pollIntervalMs: 50, routes: { 'example.test': `127.0.0.1:${mx.port}` } },
  });
  cleanups.push(() => relay.stop());
  const address = 'reader@example.test';
  await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from: 'news@shop.example', to: address, text: 'hi' });
  await waitFor('delivery', () => mx.received.length, (n) => n === 1);
  const link = /<https:\/\/mail\.shop\.example\/unsubscribe\/([0-9a-z-]+)>/.exec(mx.received[0]?.raw.toString('latin1') ?? '')?.[1];
  if (!link) throw new Error('no one-click link in the delivered message');
  return { relay, base: `http://127.0.0.1:${relay.relay.admin?.port}`, link, address };
}

const suppressionCount = (relay: TestRelay): number => (relay.db.prepare('SELECT count(*) AS n FROM suppressions').get() as { n: number }).n;
const unsubscribedEvents = (relay: TestRelay): number => (relay.db.prepare("SELECT count(*) AS n FROM events WHERE event = 'unsubscribed'").get() as { n: number }).n;

function expectSecurityHeaders(response: Response): void {
  const csp = response.headers.get('content-security-policy') ?? '';
  expect(csp).toContain("default-src 'none'");
  expect(csp).toContain("form-action 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).toContain("base-uri 'none'");
  expect(csp).not.toMatch(/script-src|unsafe-inline/);
  expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  expect(response.headers.get('referrer-policy')).toBe('no-referrer');
}

describe('the unsubscribe page against script injection', () => {
  // Each path segment as an attacker would send it, and what must not come back in the page.
  const attacks: Array<[what: string, segment: string, leaked: string[]]> = [
    ['a javascript: URL', 'javascript:alert(document.domain)', ['javascript:', 'alert(']],
    ['an encoded https URL to another origin', encodeURIComponent('https://evil.example/collect?x=1'), ['evil.example', 'https:']],
    ['quotes and angle brackets', encodeURIComponent(`x"><script>alert(1)</script><a href='`), ['<script', 'x"', "<a href='", 'alert(1)']],
  ];

  it.each(attacks)('answers %s with a plain error page: no form, no input echoed, a strict CSP', async (_what, segment, leaked) => {
    const { relay, base } = await oneClickRelay();
    const response = await fetch(`${base}/unsubscribe/${segment}`);
    const page = await response.text();
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expectSecurityHeaders(response);
    expect(page).not.toContain('<form');
    for (const text of leaked) expect(page).not.toContain(text);
    expect(page).toContain('This is not an unsubscribe link');

    const posted = await fetch(`${base}/unsubscribe/${segment}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    const answer = await posted.text();
    expect(posted.status).toBe(400);
    for (const text of leaked) expect(answer).not.toContain(text);
    expect(suppressionCount(relay)).toBe(0);
  });

  it('answers a forged or expired token with 404 and no form; a real token shows a form that works', async () => {
    const { relay, base, link, address } = await oneClickRelay();
    const forged = await fetch(`${base}/unsubscribe/${link.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a'))}`);
    expect(forged.status).toBe(404);
    expect(await forged.text()).not.toContain('<form');
    const [id36] = link.split('-');
    const old = signedToken('not-our-secret', 'unsubscribe', parseInt(id36 ?? '1', 36), new Date('2020-01-01'));
    expect((await fetch(`${base}/unsubscribe/${old}`)).status).toBe(404);

    const shown = await fetch(`${base}/unsubscribe/${link}`);
    const page = await shown.text();
    expect(shown.status).toBe(200);
    expectSecurityHeaders(shown);
    // Submit the form as a browser would: its action resolved against the page URL, its fields urlencoded.
    const form = /<form method="post" action="([^"]*)">(.*)<\/form>/.exec(page);
    expect(form).not.toBeNull();
    const action = new URL(form?.[1] ?? '', shown.url);
    expect(action.href).toBe(`${base}/unsubscribe/${link}`);
    const fields = new URLSearchParams([...(form?.[2] ?? '').matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)].map((m): [string, string] => [m[1] ?? '', m[2] ?? '']));
    const submitted = await fetch(action, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: fields.toString() });
    expect(submitted.status).toBe(200);
    expectSecurityHeaders(submitted);
    expect(await submitted.text()).toContain(`${address} will not get these emails any more`);
    expect(relay.db.prepare('SELECT address, type FROM suppressions').all()).toEqual([{ address, type: 'unsubscribes' }]);
  });

  it('sends the security headers on every admin response, JSON and errors included', async () => {
    const { base } = await oneClickRelay();
    for (const path of ['/healthz', '/v1/suppressions', '/no/such/route']) expectSecurityHeaders(await fetch(`${base}${path}`));
  });
});

describe('the one-click POST body (RFC 8058)', () => {
  it('unsubscribes on a multipart/form-data one-click POST', async () => {
    const { relay, base, link, address } = await oneClickRelay();
    const form = new FormData();
    form.append('List-Unsubscribe', 'One-Click');
    const response = await fetch(`${base}/unsubscribe/${link}`, { method: 'POST', body: form });
    expect(response.status).toBe(200);
    expect(relay.db.prepare('SELECT address, type FROM suppressions').all()).toEqual([{ address, type: 'unsubscribes' }]);
    expect(unsubscribedEvents(relay)).toBe(1);
  });

  const notOneClick: Array<[what: string, init: RequestInit]> = [
    ['no body', {}],
    ['an empty urlencoded body', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' }],
    ['another urlencoded field', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=Yes&confirm=1' }],
    ['the right words as text/plain', { headers: { 'content-type': 'text/plain' }, body: 'List-Unsubscribe=One-Click' }],
    ['the right words as JSON', { headers: { 'content-type': 'application/json' }, body: '{"List-Unsubscribe":"One-Click"}' }],
    ['a multipart body with another field', { body: (() => { const f = new FormData(); f.append('List-Unsubscribe', 'No'); f.append('other', 'One-Click'); return f; })() }],
  ];
  it.each(notOneClick)('refuses a POST with %s: 400, nothing recorded', async (_what, init) => {
    const { relay, base, link } = await oneClickRelay();
    const response = await fetch(`${base}/unsubscribe/${link}`, { method: 'POST', ...init });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('List-Unsubscribe=One-Click');
    expect(suppressionCount(relay)).toBe(0);
    expect(unsubscribedEvents(relay)).toBe(0);
  });
});

describe('unsubscribe links of several nodes (store.shared.url)', () => {
  const settingsOf = (secret: string, nodeTag: string): UnsubscribeSettings => ({ enabled: true, url: null, prefix: 'unsubscribe', domain: 'bounces.relay.test', secret, maxAgeDays: 30, nodeTag });
  const tokenOf = (settings: UnsubscribeSettings, recipientId: number): string => {
    const header = listUnsubscribeHeaders(settings, recipientId).toString('latin1');
    return /unsubscribe\+([0-9a-z-]+)@/.exec(header)?.[1] ?? '';
  };
  const a = settingsOf('secret-of-node-a-0123456789', 'aaaaaa');
  const b = settingsOf('secret-of-node-b-0123456789', 'bbbbbb');

  it('checks its own tagged links, and another node\'s with that node\'s link key: genuine, forged, or unchecked without the key', () => {
    const token = tokenOf(a, 42);
    expect(token).toMatch(/^[0-9a-z]+-[0-9a-z]+-aaaaaa-[a-z2-7]+$/);
    expect(readUnsubscribeToken(a, token)).toMatchObject({ valid: true, recipientId: 42 });
    const keys = (tag: string): string | undefined => (tag === 'aaaaaa' ? linkKeyOf(a.secret) : undefined);
    expect(readUnsubscribeToken(b, token, keys)).toEqual({ valid: false, reason: 'other-node', nodeTag: 'aaaaaa', expired: false });
    const forged = `${token.slice(0, -4)}aaaa`;
    expect(readUnsubscribeToken(b, forged, keys)).toEqual({ valid: false, reason: 'forged' });
    // Without A's key (a node of an older version), B can only pass it on unchecked.
    expect(readUnsubscribeToken(b, forged)).toMatchObject({ valid: false, reason: 'other-node', nodeTag: 'aaaaaa' });
    // The link key signs nothing else: a return path made with it is not A's.
    expect(linkKeyOf(a.secret)).not.toBe(a.secret);
    expect(readUnsubscribeToken(a, signedToken(a.secret, 'unsubscribe', 42, new Date(), 'aaaaaa'))).toEqual({ valid: false, reason: 'forged' });
  });
});
