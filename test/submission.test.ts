import { readFileSync } from 'node:fs';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { hashPassword } from '../src/submission/passwords.js';
import { countRows, relaysStoppedAfterEachTest, type ConfigOverride } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';

const relayWith = relaysStoppedAfterEachTest();

function transport(port: number, options: Record<string, unknown> = {}) {
  return nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, ...options });
}

/** A fixture message, as bytes. */
function fixture(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/messages/${name}`, import.meta.url));
}

const RAW_MESSAGE = fixture('newsletter-8bit.eml');

describe('submission: accepting mail', () => {
  it('queues mail from a loopback client, commits it before the 250, and keeps the bytes unchanged', async () => {
    const relay = await relayWith();
    const info = await transport(relay.port).sendMail({
      envelope: { from: 'bounces@shop.example', to: ['alice@example.net', 'Bob@Example.NET'] },
      raw: RAW_MESSAGE,
    });
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Z]{18}$/);
    const queueId = info.response.split(' ').pop();

    // Read straight after the reply, from another connection: the 250 came after the commit.
    const message = relay.db.prepare('SELECT * FROM messages WHERE queue_id = ?').get(queueId) as Record<string, unknown>;
    expect(message).toMatchObject({
      mail_from: 'bounces@shop.example',
      client_ip: '127.0.0.1',
      client_helo: expect.any(String),
      auth_user: null,
      protocol: 'ESMTP',
      size: RAW_MESSAGE.length,
      message_id_header: 'm1@shop.example',
      from_domain: 'shop.example',
      subject: 'Grüße',
      campaign_id: 'spring-sale',
    });
    expect(Buffer.compare(message.raw as Buffer, RAW_MESSAGE)).toBe(0);
    expect(message.received_header).toMatch(
      new RegExp(`^Received: from \\S+ \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby relay\\.test \\(Rebound\\) with ESMTP id ${queueId};\\r\\n\\t\\w{3}, \\d{1,2} \\w{3} \\d{4} \\d\\d:\\d\\d:\\d\\d \\+0000\\r\\n$`),
    );

    const recipients = relay.db
      .prepare('SELECT address, domain, status, attempts, next_attempt_at FROM recipients ORDER BY id')
      .all();
    expect(recipients).toEqual([
      { address: 'alice@example.net', domain: 'example.net', status: 'queued', attempts: 0, next_attempt_at: expect.any(String) },
      { address: 'Bob@example.net', domain: 'example.net', status: 'queued', attempts: 0, next_attempt_at: expect.any(String) },
    ]);
    // The README's question: what happened to mail for x@y?
    const history = relay.db
      .prepare('SELECT event, current_status, queue_id, subject FROM v_recipient_history WHERE address = ?')
      .all('alice@example.net');
    expect(history).toEqual([{ event: 'accepted', current_status: 'queued', queue_id: queueId, subject: 'Grüße' }]);
  });

  it('names the one recipient in the Received header, and stores an IDN domain as punycode', async () => {
    const relay = await relayWith();
    const info = await transport(relay.port).sendMail({
      from: 'app@shop.example',
      to: 'kunde@bücher.example',
      subject: 'x',
      text: 'y',
    });
    const queueId = info.response.split(' ').pop();
    const row = relay.db.prepare('SELECT received_header FROM messages WHERE queue_id = ?').get(queueId) as { received_header: string };
    expect(row.received_header).toContain('for <kunde@xn--bcher-kva.example>;');
    expect(relay.db.prepare('SELECT address, domain FROM recipients').get()).toEqual({
      address: 'kunde@xn--bcher-kva.example',
      domain: 'xn--bcher-kva.example',
    });
  });

  it('accepts the null sender <> (bounces relayed by an app)', async () => {
    const relay = await relayWith();
    const dialog = await SmtpDialog.start(relay.port);
    await dialog.command('MAIL FROM:<>', 250);
    await dialog.command('RCPT TO:<x@example.net>', 250);
    await dialog.command('DATA', 354);
    dialog.write('Subject: null sender\r\n\r\nbody\r\n.\r\n');
    expect((await dialog.read()).text).toMatch(/^250 2\.0\.0 Ok: queued as /);
    expect(relay.db.prepare('SELECT mail_from FROM messages').get()).toEqual({ mail_from: '' });
    await dialog.quit();
  });

  it('stores the bytes exactly as sent: 8-bit text, a bare LF away from any dot, trailing spaces', async () => {
    const relay = await relayWith();
    const body = fixture('odd-bytes.eml');
    const dialog = await SmtpDialog.start(relay.port);
    await dialog.command('MAIL FROM:<a@shop.example> BODY=8BITMIME', 250);
    await dialog.command('RCPT TO:<x@example.net>', 250);
    await dialog.command('DATA', 354);
    dialog.write(Buffer.concat([body, Buffer.from('.\r\n')]));
    expect((await dialog.read()).code).toBe(250);
    await dialog.quit();
    const { raw, size } = relay.db.prepare('SELECT raw, size FROM messages').get() as { raw: Buffer; size: number };
    expect(raw.equals(body)).toBe(true);
    expect(size).toBe(body.length);
  });

  it('keeps a dot-stuffed "." line as content', async () => {
    const relay = await relayWith();
    const dialog = await SmtpDialog.start(relay.port);
    await dialog.command('MAIL FROM:<a@shop.example>', 250);
    await dialog.command('RCPT TO:<x@example.net>', 250);
    await dialog.command('DATA', 354);
    dialog.write('Subject: dots\r\n\r\nline one\r\n..\r\n...two dots\r\n.\r\n');
    expect((await dialog.read()).code).toBe(250);
    const { raw } = relay.db.prepare('SELECT raw FROM messages').get() as { raw: Buffer };
    expect(raw.toString()).toBe('Subject: dots\r\n\r\nline one\r\n.\r\n..two dots\r\n');
    await dialog.quit();
  });

  it('carries several messages on one connection, pipelined (PIPELINING, 8BITMIME, SMTPUTF8 offered)', async () => {
    const relay = await relayWith();
    const dialog = await SmtpDialog.open(relay.port);
    await dialog.expect(220);
    const ehlo = await dialog.command('EHLO client.test', 250);
    for (const extension of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'SIZE 26214400', 'AUTH PLAIN LOGIN']) {
      expect(ehlo.text).toContain(extension);
    }
    expect(ehlo.text).not.toContain('STARTTLS'); // no certificate configured
    const message = (n: number) =>
      `MAIL FROM:<app@shop.example> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<usér${n}@example.net>\r\nDATA\r\n`;
    dialog.write(message(1));
    expect((await dialog.read()).code).toBe(250);
    expect((await dialog.read()).code).toBe(250);
    expect((await dialog.read()).code).toBe(354);
    dialog.write('Subject: one\r\n\r\nÜnïcödé body\r\n.\r\n' + message(2));
    expect((await dialog.read()).code).toBe(250);
    expect((await dialog.read()).code).toBe(250);
    expect((await dialog.read()).code).toBe(250);
    expect((await dialog.read()).code).toBe(354);
    dialog.write('Subject: two\r\n\r\nbody\r\n.\r\n');
    expect((await dialog.read()).code).toBe(250);
    await dialog.quit();
    expect(relay.db.prepare('SELECT address FROM recipients ORDER BY id').all()).toEqual([
      { address: 'usér1@example.net' },
      { address: 'usér2@example.net' },
    ]);
  });
});

describe('submission: authentication and relay control', () => {
  let passwordHash: string;
  const authConfig = async (extra: Record<string, unknown> = {}): Promise<ConfigOverride> => {
    passwordHash ??= await hashPassword('s3cret-pass');
    return { submission: { auth: { users: [{ username: 'app', passwordHash }] }, allowNetworks: ['127.0.0.1/32'], ...extra } };
  };

  it('refuses an unauthenticated client outside allowNetworks with 530 and stores nothing', async () => {
    const relay = await relayWith(await authConfig());
    const dialog = await SmtpDialog.start(relay.port, { localAddress: '127.0.0.2' });
    expect((await dialog.command('MAIL FROM:<a@shop.example>')).text).toBe('530 5.7.0 Authentication required');
    expect((await dialog.command('RCPT TO:<x@example.net>')).code).toBe(503);
    expect((await dialog.command('DATA')).code).toBe(503);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(0);

    const sending = transport(relay.port, { localAddress: '127.0.0.2' }).sendMail({ from: 'a@shop.example', to: 'x@example.net', text: 'x' });
    await expect(sending).rejects.toMatchObject({ responseCode: 530 });
    expect(countRows(relay.db, 'messages')).toBe(0);
  });

  it.each(['PLAIN', 'LOGIN'])('relays for a client that authenticates with AUTH %s', async (method) => {
    const relay = await relayWith(await authConfig());
    const info = await transport(relay.port, {
      localAddress: '127.0.0.2',
      auth: { user: 'app', pass: 's3cret-pass' },
      authMethod: method,
    }).sendMail({ from: 'a@shop.example', to: 'x@example.net', subject: 'auth', text: 'x' });
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as /);
    expect(relay.db.prepare('SELECT auth_user, protocol, client_ip FROM messages').get()).toEqual({
      auth_user: 'app',
      protocol: 'ESMTPA',
      client_ip: '127.0.0.2',
    });
  });

  it('refuses a bad password (535 5.7.8) and an unknown user, and stores nothing', async () => {
    const relay = await relayWith(await authConfig());
    for (const auth of [{ user: 'app', pass: 'wrong' }, { user: 'nobody', pass: 's3cret-pass' }]) {
      const sending = transport(relay.port, { localAddress: '127.0.0.2', auth }).sendMail({ from: 'a@shop.example', to: 'x@example.net', text: 'x' });
      await expect(sending).rejects.toMatchObject({ responseCode: 535, response: expect.stringMatching(/^535 5\.7\.8 /) });
    }
    const dialog = await SmtpDialog.start(relay.port, { localAddress: '127.0.0.2' });
    const credentials = Buffer.from('\0app\0wrong').toString('base64');
    expect((await dialog.command(`AUTH PLAIN ${credentials}`)).code).toBe(535);
    expect((await dialog.command('MAIL FROM:<a@shop.example>')).code).toBe(530);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(0);
  });

  it('refuses AUTH on a plaintext connection from outside plaintextAuthNetworks (538)', async () => {
    const relay = await relayWith(await authConfig({ plaintextAuthNetworks: ['127.0.0.1/32'] }));
    const dialog = await SmtpDialog.start(relay.port, { localAddress: '127.0.0.2' });
    const credentials = Buffer.from('\0app\0s3cret-pass').toString('base64');
    expect((await dialog.command(`AUTH PLAIN ${credentials}`)).text).toMatch(/^538 5\.7\.0 Encryption required/);
    expect((await dialog.command('MAIL FROM:<a@shop.example>')).code).toBe(530);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(0);
  });
});
