import { runRebound as rebound } from './support/cli.js';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import BetterSqlite3 from 'better-sqlite3';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startAdmin } from '../src/admin/server.js';
import { headersToStrip, stripHeaderFields } from '../src/delivery/strip-headers.js';
import { loadConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { openStore } from '../src/store/database.js';
import { Spool } from '../src/store/spool.js';
import { createSubmissionServer } from '../src/submission/server.js';
import { MAX_TAGS, MAX_VARIABLES_BYTES, senderControls } from '../src/submission/sender-controls.js';
import { recordFromLine, verifyWithDkimpy } from './support/dkimpy.js';
import { startFakeMx } from './support/fake-mx.js';
import { FAST_DELIVERY, logCapture, startTestRelay, writeTestConfig, type TestRelay } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';
import { startWebhookReceiver } from './support/webhook-receiver.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});


describe('senderControls: X-Mailgun-Tag and X-Mailgun-Variables as Mailgun reads them', () => {
  it('keeps tags lower-cased and once each, and combines several variables fields', () => {
    const controls = senderControls(['Welcome', ' onboarding ', 'WELCOME'], ['{"order_id": "123"}', '{"user": {"id": 7}, "order_id": "124"}']);
    expect(controls).toEqual({ tags: ['welcome', 'onboarding'], variables: '{"order_id":"124","user":{"id":7}}', problems: [] });
    expect(senderControls([], [])).toEqual({ tags: [], variables: null, problems: [] });
  });

  it('leaves out what Mailgun would not keep, and says why, without refusing the message', () => {
    const eleven = Array.from({ length: MAX_TAGS + 1 }, (_, i) => `t${i}`);
    const many = senderControls(eleven, []);
    expect(many.tags).toEqual(eleven.slice(0, MAX_TAGS));
    expect(many.problems).toEqual([`X-Mailgun-Tag "t${MAX_TAGS}" was left out: at most ${MAX_TAGS} tags per message`]);

    const bad = senderControls(['x'.repeat(129), 'x'.repeat(128), 'bell\x07', 'café', ''], []);
    expect(bad.tags).toEqual(['x'.repeat(128)]);
    expect(bad.problems).toEqual([
      'an X-Mailgun-Tag of 129 characters was left out: a tag is at most 128',
      'X-Mailgun-Tag "bell\\x07" was left out: a tag is printable ASCII only',
      'X-Mailgun-Tag "caf\\xe9" was left out: a tag is printable ASCII only',
      'an empty X-Mailgun-Tag was left out',
    ]);
  });

  it('records no variables when a field is not a JSON object or they are too large', () => {
    const fix = 'send one JSON object per field, e.g. {"order_id": "123"}';
    expect(senderControls([], ['{"a": 1}', '{not json'])).toEqual({ tags: [], variables: null, problems: [`X-Mailgun-Variables was left out: a field is not valid JSON; ${fix}`] });
    expect(senderControls([], ['[1, 2]']).problems).toEqual([`X-Mailgun-Variables was left out: a field is JSON but not an object; ${fix}`]);
    expect(senderControls([], ['null']).variables).toBeNull();
    const huge = JSON.stringify({ blob: 'x'.repeat(MAX_VARIABLES_BYTES) });
    expect(senderControls([], [huge]).problems).toEqual([`X-Mailgun-Variables was left out: ${huge.length} bytes of JSON, more than ${MAX_VARIABLES_BYTES}`]);
    // A "__proto__" key is data, kept as sent, and changes no object's prototype.
    const forged = senderControls([], ['{"__proto__": {"admin": true}, "a": 1}']);
    expect(JSON.parse(forged.variables as string)).toEqual(JSON.parse('{"__proto__": {"admin": true}, "a": 1}'));
    expect(({} as { admin?: boolean }).admin).toBeUndefined();
  });
});

describe('stripHeaderFields: control headers out of the bytes sent', () => {
  const names = headersToStrip(null, 'X-Campaign-ID');

  it('removes each named field with its folded lines, leaves every other byte, and never reads the body', () => {
    const raw = Buffer.from(
      'From: a@shop.example\r\nX-Mailgun-Tag: one\r\nx-mailgun-variables: {"a":\r\n  1}\r\nSubject: hi\r\nX-Campaign-ID: spring\r\n\r\n' +
        'X-Mailgun-Tag: in the body\r\n',
    );
    expect(stripHeaderFields(raw, names).toString()).toBe('From: a@shop.example\r\nSubject: hi\r\n\r\nX-Mailgun-Tag: in the body\r\n');
    // Bare LF line ends, and a stripped field first.
    expect(stripHeaderFields(Buffer.from('X-Mailgun-Tag: a\nTo: b@example.net\n\nbody\n'), names).toString()).toBe('To: b@example.net\n\nbody\n');
    // A header section with no body at all.
    expect(stripHeaderFields(Buffer.from('To: b@example.net\r\nX-Mailgun-Tag: a\r\n'), names).toString()).toBe('To: b@example.net\r\n');
  });

  it('returns the very same buffer when there is nothing to strip, or nothing is to be stripped', () => {
    const raw = Buffer.from('From: a@shop.example\r\nX-Mailgun-Tagged: no\r\n\r\nX-Campaign-ID: body\r\n');
    expect(stripHeaderFields(raw, names)).toBe(raw);
    const tagged = Buffer.from('X-Mailgun-Tag: a\r\n\r\n');
    expect(stripHeaderFields(tagged, headersToStrip([], 'X-Campaign-ID'))).toBe(tagged);
    expect([...headersToStrip(['X-Custom'], 'X-Campaign-ID')]).toEqual(['x-custom']);
  });
});

describe('tags and variables through the relay', () => {
  it('stores them, sends without the control headers (DKIM still valid), posts them in webhooks, and reports by tag alike in CLI and API', async () => {
    const mx = await startFakeMx({ rcpt: (address) => (address.startsWith('gone') ? { code: 550, text: '5.1.1 User unknown' } : null) });
    cleanups.push(() => mx.close());
    const hook = await startWebhookReceiver();
    cleanups.push(() => hook.close());
    const relay: TestRelay = await startTestRelay({
      dkim: { reloadSeconds: 0.1 },
      delivery: { ...FAST_DELIVERY, routes: { '*': `127.0.0.1:${mx.port}` } },
      webhooks: { endpoints: [{ url: hook.url, events: ['permanent_fail'], secret: 'whsec-0123456789abcdef' }], allowPrivateTargets: true, pollIntervalMs: 50 },
    });
    cleanups.push(() => relay.stop());
    const configFile = join(relay.dir, 'config.json');
    const added = await rebound(['dkim', 'add', 'shop.example', '--selector', 'rb1', '--config', configFile]);
    expect(added.code).toBe(0);
    const record = recordFromLine(added.stdout.split('\n')[0] ?? '');
    await new Promise((resolve) => setTimeout(resolve, 300)); // the keyring reads keys again every 0.1 s

    const since = new Date(Date.now() - 1000).toISOString();
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true });
    const send = (to: string, headers: Record<string, string | string[]>): Promise<unknown> =>
      transport.sendMail({ from: 'Shop <news@shop.example>', to, subject: 'Welcome', text: 'Hello\n', headers });
    await send('reader@example.net', {
      'X-Mailgun-Tag': ['Welcome', 'Onboarding'],
      'X-Mailgun-Variables': '{"order_id": "123", "user": {"id": 7}}',
      'X-Campaign-ID': 'spring',
    });
    await send('gone1@example.net', { 'X-Mailgun-Tag': ['welcome', 'onboarding'], 'X-Mailgun-Variables': '{"order_id": "124"}' });
    await send('gone2@example.net', { 'X-Mailgun-Tag': 'receipt' });
    // Careless input is accepted, with what could not be used left out.
    await send('gone3@example.net', {
      'X-Mailgun-Tag': [...Array.from({ length: 12 }, (_, i) => `bulk${i}`), 'x'.repeat(200)],
      'X-Mailgun-Variables': '{"order_id": 125,',
    });

    // Stored with the message.
    const tagsOf = (address: string): string[] =>
      relay.db
        .prepare('SELECT t.tag FROM message_tags t JOIN recipients r ON r.message_id = t.message_id WHERE r.address = ? ORDER BY t.tag')
        .pluck()
        .all(address) as string[];
    const variablesOf = (address: string): string | null =>
      relay.db.prepare('SELECT m.variables FROM messages m JOIN recipients r ON r.message_id = m.id WHERE r.address = ?').pluck().get(address) as string | null;
    expect(tagsOf('reader@example.net')).toEqual(['onboarding', 'welcome']);
    expect(JSON.parse(variablesOf('reader@example.net') as string)).toEqual({ order_id: '123', user: { id: 7 } });
    expect(tagsOf('gone3@example.net')).toEqual(Array.from({ length: 10 }, (_, i) => `bulk${i}`).sort());
    expect(variablesOf('gone3@example.net')).toBeNull();

    // Sent without the control headers, signed over what was sent; stored with them.
    const delivered = await waitFor('the delivery', () => mx.received.find((m) => m.to.includes('reader@example.net')), (m) => m !== undefined);
    const sent = (delivered as NonNullable<typeof delivered>).raw;
    const sentHead = sent.toString('latin1').split('\r\n\r\n')[0] ?? '';
    expect(sentHead).not.toMatch(/^x-mailgun-|^x-campaign-id/im);
    expect(sentHead).toMatch(/^DKIM-Signature:/);
    const stored = relay.db.prepare('SELECT raw FROM messages m JOIN recipients r ON r.message_id = m.id WHERE r.address = ?').pluck().get('reader@example.net') as Buffer;
    expect(stored.toString('latin1')).toMatch(/^X-Mailgun-Tag: Welcome\r\nX-Mailgun-Tag: Onboarding\r\n/m);
    expect(stored.toString('latin1')).toMatch(/^X-Campaign-ID: spring\r\n/m);
    const { signatures } = await verifyWithDkimpy(sent, { [record.name]: record.text });
    expect(signatures).toHaveLength(1);
    expect(signatures[0]).toMatchObject({ valid: true });

    // The bounce webhooks carry them.
    await waitFor('three bounce webhooks', () => hook.accepted().length, (n) => n >= 3);
    const payloadFor = (address: string): Record<string, unknown> =>
      hook.accepted().map((w) => w.body['event-data'] as Record<string, unknown>).find((data) => data.recipient === address) as Record<string, unknown>;
    expect(payloadFor('gone1@example.net')).toMatchObject({ tags: ['onboarding', 'welcome'], 'user-variables': { order_id: '124' } });
    expect(payloadFor('gone2@example.net')).toMatchObject({ tags: ['receipt'], 'user-variables': {} });
    expect(payloadFor('gone3@example.net')['user-variables']).toEqual({});

    // The bounces report by tag: the CLI and the API give the same rows.
    const until = new Date(Date.now() + 60_000).toISOString();
    const cli = await rebound(['report', 'bounces', '--since', since, '--until', until, '--type', 'hard', '--group-by', 'tag', '--format', 'csv', '--config', configFile]);
    expect(cli.code, cli.stderr).toBe(0);
    const lines = cli.stdout.trim().split('\r\n');
    expect(lines[0]).toBe('tag,bounce_text,amount,type,category,reason,first_at,last_at');
    const groups = lines.slice(1).map((line) => `${line.split(',')[0]}=${line.split(',')[2]}`);
    // A bounce counts once under each of its message's tags: 2 + 1 + 10 rows for three bounces.
    expect(groups.sort()).toEqual([...Array.from({ length: 10 }, (_, i) => `bulk${i}=1`), 'onboarding=1', 'receipt=1', 'welcome=1'].sort());

    const filtered = await rebound(['report', 'bounces', '--since', since, '--until', until, '--type', 'hard', '--tag', 'WELCOME', '--format', 'csv', '--config', configFile]);
    expect(filtered.stdout.trim().split('\r\n').slice(1).map((line) => line.split(',').slice(0, 3).join(','))).toEqual(['shop.example,550 5.1.1 User unknown,1']);

    const db = openStore(relay.config.store.path);
    const token = 'ops-0123456789abcdefghijklmnop';
    const admin = await startAdmin({ ...relay.config, admin: { ...relay.config.admin, tokens: [{ name: 'ops', token, role: 'admin' }] } }, db, createLogger('silent'));
    cleanups.push(async () => {
      await admin.stop();
      db.close();
    });
    const api = async (search: string): Promise<Response> =>
      fetch(`http://127.0.0.1:${admin.address.port}/v1/reports/bounces?${search}`, { headers: { authorization: `Bearer ${token}` } });
    const apiCsv = await api(new URLSearchParams({ since, until, type: 'hard', group_by: 'tag', format: 'csv' }).toString());
    expect(await apiCsv.text()).toBe(cli.stdout);
    const apiFiltered = await api(new URLSearchParams({ since, until, type: 'hard', tag: 'WELCOME', format: 'csv' }).toString());
    expect(await apiFiltered.text()).toBe(filtered.stdout);
    const json = (await (await api(new URLSearchParams({ since, until, type: 'hard', tag: 'welcome' }).toString())).json()) as { query: { tag: string }; bounces: number };
    expect(json).toMatchObject({ query: { tag: 'welcome' }, bounces: 1 });

    // A tag no message can carry is refused in the same words, named as each caller names it.
    const badCli = await rebound(['report', 'bounces', '--since', since, '--tag', 'x'.repeat(129), '--config', configFile]);
    expect(badCli.code).toBe(2);
    expect(badCli.stderr).toContain('--tag: no message can carry this tag; a tag is printable ASCII, at most 128 characters');
    const badApi = await api(`since=${since}&tag=%0d%0a`);
    expect(badApi.status).toBe(400);
    expect(await badApi.json()).toEqual({ error: 'tag: give a tag (an X-Mailgun-Tag value), or leave tag out for all mail' });
  }, 60_000);
});

describe('bad tags and variables at submission', () => {
  it('accepts the message with 250, stores what can be used, and logs a warning naming the queue id and why', async () => {
    const temp = makeTempDir();
    const config = loadConfig({ file: writeTestConfig(temp.dir), env: {} });
    const store = openStore(config.store.path);
    const spool = new Spool(store);
    const { logs, destination } = logCapture();
    const server = createSubmissionServer(config, spool, pino({ level: 'info' }, destination));
    const { port } = await server.listen();
    cleanups.push(async () => {
      await server.close();
      spool.close();
      store.close();
      temp.remove();
    });

    // Written by hand, as a careless or hostile client would: a control character in a tag, an
    // overlong tag, eleven good ones, and variables that are not JSON.
    const raw = Buffer.from(
      'From: app@shop.example\r\nTo: a@example.net\r\nSubject: bad controls\r\n' +
        'X-Mailgun-Tag: bell\x07tag\r\n' +
        `X-Mailgun-Tag: ${'y'.repeat(129)}\r\n` +
        Array.from({ length: 11 }, (_, i) => `X-Mailgun-Tag: t${i}\r\n`).join('') +
        'X-Mailgun-Variables: {"order_id": 1,\r\n\r\nbody\r\n',
      'latin1',
    );
    const dialog = await SmtpDialog.start(port);
    await dialog.command('MAIL FROM:<app@shop.example>', 250);
    await dialog.command('RCPT TO:<a@example.net>', 250);
    await dialog.command('DATA', 354);
    dialog.write(raw);
    dialog.write('.\r\n');
    await dialog.expect(250);
    await dialog.quit();

    const db = new BetterSqlite3(config.store.path, { readonly: true });
    cleanups.push(() => {
      db.close();
    });
    const message = db.prepare('SELECT id, queue_id AS queueId, variables FROM messages').get() as { id: number; queueId: string; variables: string | null };
    expect(message.variables).toBeNull();
    expect(db.prepare('SELECT tag FROM message_tags WHERE message_id = ? ORDER BY tag').pluck().all(message.id)).toEqual(Array.from({ length: 10 }, (_, i) => `t${i}`).sort());
    const warning = logs.find((line) => line.msg === 'message accepted without some of its tags or variables');
    expect(warning).toMatchObject({
      level: 40,
      queueId: message.queueId,
      problems: [
        'X-Mailgun-Tag "bell\\x07tag" was left out: a tag is printable ASCII only',
        'an X-Mailgun-Tag of 129 characters was left out: a tag is at most 128',
        'X-Mailgun-Tag "t10" was left out: at most 10 tags per message',
        'X-Mailgun-Variables was left out: a field is not valid JSON; send one JSON object per field, e.g. {"order_id": "123"}',
      ],
    });
  });
});
