import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeMx } from './support/fake-mx.js';
import { startTestRelay } from './support/relay.js';
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
