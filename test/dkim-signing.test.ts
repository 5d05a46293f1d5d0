import { runRebound as rebound } from './support/cli.js';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { startChildRelay } from './support/child-relay.js';
import { recordFromLine, verifyWithDkimpy, type DkimpyResult } from './support/dkimpy.js';
import { startDnsServer } from './support/dns-server.js';
import { startFakeMx, type FakeMx } from './support/fake-mx.js';
import { FAST_DELIVERY, startTestRelay, writeTestConfig, type ConfigOverride, type TestRelay } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});



/** Runs `rebound dkim …` on the test relay's own config (so its store), expecting success. */
async function dkim(configFile: string, ...args: string[]): Promise<string> {
  const result = await rebound(['dkim', ...args, '--config', configFile]);
  if (result.code !== 0) throw new Error(`rebound dkim ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** `rebound dkim add|rotate` output: its first line is the record, exactly as a zone would hold it. */
function publishedRecord(output: string): { name: string; text: string } {
  return recordFromLine(output.split('\n')[0] ?? '');
}

/** Records as a resolver would serve them to dkimpy, from the lines the CLI printed. */
function zone(...outputs: string[]): Record<string, string> {
  return Object.fromEntries(outputs.map((output) => publishedRecord(output)).map((record) => [record.name, record.text]));
}

/** A relay delivering every domain to one fake MX, with DKIM keys read again every 0.1 s. */
async function dkimRelay(override: ConfigOverride = {}): Promise<{ relay: TestRelay; mx: FakeMx; configFile: string }> {
  const mx = await startFakeMx();
  cleanups.push(() => mx.close());
  const relay = await startTestRelay({
    ...override,
    dkim: { reloadSeconds: 0.1, ...((override.dkim ?? {}) as object) },
    delivery: { ...FAST_DELIVERY, routes: { '*': `127.0.0.1:${mx.port}` }, ...((override.delivery ?? {}) as object) },
  });
  cleanups.push(() => relay.stop());
  return { relay, mx, configFile: join(relay.dir, 'config.json') };
}

/** Submits a message exactly as given (bare LFs, 8-bit bytes and all) over a raw SMTP session. */
async function submitRaw(port: number, from: string, to: string, raw: Buffer): Promise<void> {
  const dialog = await SmtpDialog.start(port);
  await dialog.command(`MAIL FROM:<${from}> BODY=8BITMIME`, 250);
  await dialog.command(`RCPT TO:<${to}>`, 250);
  await dialog.command('DATA', 354);
  dialog.write(raw);
  // The terminator is CRLF.CRLF: after a bare LF it needs its own CRLF first.
  dialog.write(raw.subarray(-2).toString('latin1') === '\r\n' ? '.\r\n' : '\r\n.\r\n');
  await dialog.expect(250);
  await dialog.quit();
}

function sender(port: number): ReturnType<typeof nodemailer.createTransport> {
  return nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true });
}

async function receivedFor(mx: FakeMx, to: string): Promise<Buffer> {
  const message = await waitFor(`mail for ${to}`, () => mx.received.find((m) => m.to.includes(to)), (m) => m !== undefined);
  return (message as NonNullable<typeof message>).raw;
}

function signatureFields(raw: Buffer): string[] {
  const head = raw.toString('latin1').split('\r\n\r\n')[0] ?? '';
  return head.split(/\r\n(?![ \t])/).filter((field) => /^dkim-signature:/i.test(field));
}

function expectAllValid(results: DkimpyResult[], count: number): void {
  expect(results).toHaveLength(count);
  for (const result of results) expect(result, JSON.stringify(result)).toMatchObject({ valid: true });
}

describe('DKIM signing on the way out, checked by dkimpy against the record `rebound dkim add` printed', () => {
  it('signs with RSA-2048 relaxed/relaxed over the header set, From oversigned, and keeps the stored bytes as received', async () => {
    const { relay, mx, configFile } = await dkimRelay();
    const added = await dkim(configFile, 'add', 'shop.example', '--selector', 'rb1');
    const record = publishedRecord(added);
    expect(record.name).toBe('rb1._domainkey.shop.example');
    expect(record.text).toMatch(/^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/);
    // 2048-bit SPKI: 392 characters of base64, so the line has two quoted strings of at most 255 bytes.
    expect(added.split('\n')[0]).toMatch(/^rb1\._domainkey\.shop\.example TXT "v=DKIM1; k=rsa; p=[^"]{237}" "[^"]+"$/);

    await sender(relay.port).sendMail({
      from: 'Shop <news@shop.example>',
      to: 'reader@example.net',
      cc: 'copy@example.net',
      replyTo: 'help@shop.example',
      inReplyTo: '<earlier@shop.example>',
      references: '<first@shop.example> <earlier@shop.example>',
      subject: 'Your order has shipped',
      text: 'Hello,\n\nyour parcel is on its way.\n',
      headers: { 'X-Mailer-Note': 'not signed' },
    });
    const raw = await receivedFor(mx, 'reader@example.net');
    const { signatures, asked } = await verifyWithDkimpy(raw, zone(added));
    expectAllValid(signatures, 1);
    expect(asked).toEqual(['rb1._domainkey.shop.example']);
    expect(signatures[0]).toMatchObject({ d: 'shop.example', s: 'rb1', a: 'rsa-sha256', c: 'relaxed/relaxed' });
    expect(signatures[0]?.h).toBe('From:From:To:Cc:Subject:Date:Message-ID:MIME-Version:Content-Type:Content-Transfer-Encoding:Reply-To:In-Reply-To:References');

    // The stored message is the one received: the signature exists only in the bytes sent, on top.
    const stored = relay.db.prepare('SELECT received_header AS received, raw FROM messages').get() as { received: string; raw: Buffer };
    expect(stored.raw.includes('DKIM-Signature')).toBe(false);
    const field = signatureFields(raw)[0] ?? '';
    expect(raw.subarray(0, field.length + 2).toString('latin1')).toBe(`${field}\r\n`);
    expect(raw.subarray(field.length + 2).toString('latin1')).toBe(stored.received + stored.raw.toString('latin1'));
    // Folded under 78 characters a line (RFC 5322 2.1.1's SHOULD).
    for (const line of field.split('\r\n')) expect(line.length).toBeLessThanOrEqual(78);

    // A From added on the way (a header injected by a forwarder) breaks the oversigned signature.
    const forged = Buffer.concat([Buffer.from('From: attacker@evil.test\r\n'), raw.subarray(field.length + 2)]);
    const withForgedFrom = Buffer.concat([Buffer.from(`${field}\r\n`), forged]);
    expect((await verifyWithDkimpy(withForgedFrom, zone(added))).signatures[0]?.valid).toBe(false);
    // And a changed body fails it: the check can fail.
    const tampered = Buffer.from(raw.toString('latin1').replace('parcel', 'parsel'), 'latin1');
    expect((await verifyWithDkimpy(tampered, zone(added))).signatures[0]?.valid).toBe(false);
  });

  it('signs with Ed25519 alone (RFC 8463), and twice when the domain has an RSA and an Ed25519 key', async () => {
    const { relay, mx, configFile } = await dkimRelay();
    const ed = await dkim(configFile, 'add', 'shop.example', '--algorithm', 'ed25519');
    expect(publishedRecord(ed).text).toMatch(/^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    expect(publishedRecord(ed).name).toMatch(/^rb\d{6}ed\._domainkey\.shop\.example$/);
    await sender(relay.port).sendMail({ from: 'news@shop.example', to: 'one@example.net', subject: 'ed25519', text: 'signed once' });
    const once = await verifyWithDkimpy(await receivedFor(mx, 'one@example.net'), zone(ed));
    expectAllValid(once.signatures, 1);
    expect(once.signatures[0]?.a).toBe('ed25519-sha256');

    const rsa = await dkim(configFile, 'add', 'shop.example');
    expect(publishedRecord(rsa).name).toMatch(/^rb\d{6}\._domainkey\.shop\.example$/);
    await new Promise((resolve) => setTimeout(resolve, 250)); // the relay reads keys every 0.1 s here
    await sender(relay.port).sendMail({ from: 'news@shop.example', to: 'two@example.net', subject: 'dual', text: 'signed twice' });
    const raw = await receivedFor(mx, 'two@example.net');
    const twice = await verifyWithDkimpy(raw, zone(ed, rsa));
    expectAllValid(twice.signatures, 2);
    expect(twice.signatures.map((s) => s.a).sort()).toEqual(['ed25519-sha256', 'rsa-sha256']);
    // Each verifies with its own record alone (a receiver that knows no Ed25519 still has RSA).
    const rsaOnly = await verifyWithDkimpy(raw, zone(rsa));
    expect(rsaOnly.signatures.filter((s) => s.valid).map((s) => s.a)).toEqual(['rsa-sha256']);
  });

  it('signs messages that are hard to canonicalise: 8-bit bodies, folded headers, bare LFs, long lines, trailing space and blank lines, dots', async () => {
    const { relay, mx, configFile } = await dkimRelay({ submission: { maxLineLength: 0 } });
    const rsa = await dkim(configFile, 'add', 'shop.example', '--selector', 'r');
    const ed = await dkim(configFile, 'add', 'shop.example', '--selector', 'e', '--algorithm', 'ed25519');
    await new Promise((resolve) => setTimeout(resolve, 250));
    const longLine = 'x'.repeat(4000);
    const cases: Record<string, string> = {
      'eight-bit': 'From: Zoë <news@shop.example>\r\nTo: eight-bit@example.net\r\nSubject: Grüße aus Köln, 東京\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nÇa coûte 5 €.\r\nnaïve café — ½\r\n',
      latin1: 'From: news@shop.example\r\nTo: latin1@example.net\r\nSubject: caf\xe9\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9 cr\xe8me\r\n',
      folded:
        'From:\r\n  "A Long Display Name"\r\n\t<news@shop.example>\r\nTo: folded@example.net ,\r\n   other@example.net\r\nSubject:   a subject   folded\r\n\t\tover   three\r\n lines   \r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain;\r\n charset="us-ascii";\r\n\tformat=flowed\r\n\r\nbody\r\n',
      'bare-lf': 'From: news@shop.example\nTo: bare-lf@example.net\nSubject: bare LF line ends\n\nline one\nline two  \n\n.dot after a bare LF\nlast\n',
      'bare-cr': 'From: news@shop.example\r\nTo: bare-cr@example.net\r\nSubject: a bare CR\r\n\r\nbefore\rafter\r\n',
      'long-lines': `From: news@shop.example\r\nTo: long-lines@example.net\r\nSubject: ${'s'.repeat(900)}\r\n\r\n${longLine}\r\n${'y'.repeat(997)}\r\n`,
      whitespace: 'From: news@shop.example\r\nTo: whitespace@example.net\r\nSubject: ws\r\n\r\n  leading  and   inner \t runs\t\r\ntrailing tabs\t\t\r\n \r\n\t\r\n\r\n\r\n\r\n',
      'no-final-newline': 'From: news@shop.example\r\nTo: no-final-newline@example.net\r\nSubject: no newline\r\n\r\nends without a line end   ',
      'empty-body': 'From: news@shop.example\r\nTo: empty-body@example.net\r\nSubject: nothing\r\n\r\n',
      dots: 'From: news@shop.example\r\nTo: dots@example.net\r\nSubject: dots\r\n\r\n..leading dot, stuffed by the client\r\n...\r\n',
      'two-to-fields': 'From: news@shop.example\r\nTo: two-to-fields@example.net\r\nTo: second@example.net\r\nSubject: two To fields\r\n\r\nbody\r\n',
    };
    for (const [name, text] of Object.entries(cases)) await submitRaw(relay.port, 'news@shop.example', `${name}@example.net`, Buffer.from(text, name === 'latin1' ? 'latin1' : 'utf8'));
    for (const name of Object.keys(cases)) {
      const raw = await receivedFor(mx, `${name}@example.net`);
      const { signatures } = await verifyWithDkimpy(raw, zone(rsa, ed));
      expect(signatures.map((s) => [name, s.valid, s.error ?? null])).toEqual([
        [name, true, null],
        [name, true, null],
      ]);
    }
    // Both To fields are signed (h= names To twice), and the folded From is the one oversigned.
    const two = await verifyWithDkimpy(await receivedFor(mx, 'two-to-fields@example.net'), zone(rsa));
    expect(two.signatures[0]?.h).toBe('From:From:To:To:Subject');
  });

  it('covers the List-Unsubscribe and List-Unsubscribe-Post fields Rebound adds (RFC 8058 3.1)', async () => {
    const { relay, mx, configFile } = await dkimRelay({ unsubscribe: { enabled: true, url: 'https://mail.shop.example/unsubscribe' } });
    const added = await dkim(configFile, 'add', 'shop.example');
    await new Promise((resolve) => setTimeout(resolve, 250));
    await sender(relay.port).sendMail({ from: 'news@shop.example', to: 'reader@example.net', subject: 'news', text: 'hi' });
    const raw = await receivedFor(mx, 'reader@example.net');
    const head = raw.toString('latin1').split('\r\n\r\n')[0] ?? '';
    expect(head).toMatch(/\r\nList-Unsubscribe: <mailto:unsubscribe\+/);
    const { signatures } = await verifyWithDkimpy(raw, zone(added));
    expectAllValid(signatures, 1);
    expect(signatures[0]?.h?.split(':')).toEqual(expect.arrayContaining(['List-Unsubscribe', 'List-Unsubscribe-Post']));
    // Changing the one-click link breaks the signature: a receiver can trust the URL it POSTs to.
    const swapped = Buffer.from(raw.toString('latin1').replace('https://mail.shop.example/', 'https://evil.example/'), 'latin1');
    expect((await verifyWithDkimpy(swapped, zone(added))).signatures[0]?.valid).toBe(false);
  });

  it('leaves mail from a domain without a key unsigned, and signs a subdomain with its parent key (delivery on the main thread too)', async () => {
    const { relay, mx, configFile } = await dkimRelay({ delivery: { stageThread: false } });
    const added = await dkim(configFile, 'add', 'shop.example');
    await new Promise((resolve) => setTimeout(resolve, 250));
    const send = sender(relay.port);
    await send.sendMail({ from: 'news@mail.eu.shop.example', to: 'sub@example.net', subject: 'from a subdomain', text: 'hi' });
    await send.sendMail({ from: 'someone@other.example', to: 'other@example.net', subject: 'no key', text: 'hi' });
    await send.sendMail({ from: 'someone@notshop.example', to: 'suffix@example.net', subject: 'same ending, another domain', text: 'hi' });
    await send.sendMail({ envelope: { from: 'news@shop.example', to: 'nofrom@example.net' }, raw: 'To: nofrom@example.net\r\nSubject: no From field\r\n\r\nhi\r\n' });

    const sub = await verifyWithDkimpy(await receivedFor(mx, 'sub@example.net'), zone(added));
    expectAllValid(sub.signatures, 1);
    expect(sub.signatures[0]?.d).toBe('shop.example');
    for (const to of ['other@example.net', 'suffix@example.net', 'nofrom@example.net']) {
      expect(signatureFields(await receivedFor(mx, to)), to).toEqual([]);
    }
  });

  it('switches keys while the relay runs: rotate makes a pending key, activate checks DNS, then signs with it; old mail still verifies', async () => {
    const dns = await startDnsServer({});
    cleanups.push(() => dns.close());
    const { relay, mx, configFile } = await dkimRelay({ delivery: { dns: { servers: [dns.address] } } });
    const first = await dkim(configFile, 'add', 'shop.example', '--selector', 'one');
    await new Promise((resolve) => setTimeout(resolve, 250));
    const send = (to: string) => sender(relay.port).sendMail({ from: 'news@shop.example', to, subject: 'rotation', text: 'hi' });
    await send('before@example.net');
    const before = await receivedFor(mx, 'before@example.net');

    const rotated = await dkim(configFile, 'rotate', 'shop.example', '--selector', 'two');
    expect(rotated).toMatch(/^; a new rsa-2048 key for shop\.example, selector two: pending, it does not sign yet; one signs until you switch\./m);
    await new Promise((resolve) => setTimeout(resolve, 250));
    await send('pending@example.net');
    expect((await verifyWithDkimpy(await receivedFor(mx, 'pending@example.net'), zone(first))).signatures).toMatchObject([{ valid: true, s: 'one' }]);

    // Not in DNS yet: activate refuses, names the record to publish, and nothing changes.
    const early = await rebound(['dkim', 'activate', 'shop.example', '--selector', 'two', '--config', configFile]);
    expect(early.code).toBe(2);
    expect(early.stderr).toContain('no TXT record at two._domainkey.shop.example yet');
    expect(early.stderr).toContain(rotated.split('\n')[0]);
    // A record with another key is refused too.
    const stringsOf = (output: string) => [...(output.split('\n')[0] ?? '').matchAll(/"([^"]*)"/g)].map((m) => m[1] as string);
    dns.setZone({ 'two._domainkey.shop.example': { TXT: [stringsOf(first)] } });
    const wrong = await rebound(['dkim', 'activate', 'shop.example', '--selector', 'two', '--config', configFile]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('holds another key');

    // Published as printed (two strings): activate switches, and the relay signs with it within its reload time.
    const strings = stringsOf(rotated);
    expect(strings.length).toBe(2);
    dns.setZone({ 'two._domainkey.shop.example': { TXT: [strings] } });
    const activated = await dkim(configFile, 'activate', 'shop.example', '--selector', 'two');
    expect(activated).toContain('two._domainkey.shop.example (rsa-2048) signs shop.example mail now');
    expect(activated).toContain('one is retired');
    await new Promise((resolve) => setTimeout(resolve, 250));
    await send('after@example.net');
    const after = await verifyWithDkimpy(await receivedFor(mx, 'after@example.net'), zone(first, rotated));
    expect(after.signatures).toMatchObject([{ valid: true, s: 'two' }]);
    // Mail signed before the switch still verifies while the old record stays published.
    expect((await verifyWithDkimpy(before, zone(first))).signatures).toMatchObject([{ valid: true, s: 'one' }]);

    const list = await dkim(configFile, 'list');
    expect(list).toMatch(/^shop\.example {2}one {2}rsa-2048 {2}retired/m);
    expect(list).toMatch(/^shop\.example {2}two {2}rsa-2048 {2}active/m);
    expect(await dkim(configFile, 'remove', 'shop.example', '--selector', 'one')).toContain('removed one._domainkey.shop.example (rsa-2048, retired); delete its TXT record from DNS.');
    // Removing the signing key stops signing, within the reload time.
    await dkim(configFile, 'remove', 'shop.example');
    await new Promise((resolve) => setTimeout(resolve, 250));
    await send('unsigned@example.net');
    expect(signatureFields(await receivedFor(mx, 'unsigned@example.net'))).toEqual([]);
  });
});

describe('the private key stays in the store', () => {
  it('never appears in the relay log (trace level), an admin API answer, or a dkim command output', async () => {
    const mx = await startFakeMx();
    cleanups.push(() => mx.close());
    const temp = makeTempDir();
    cleanups.push(() => temp.remove());
    const token = 'dkim-test-admin-token-0123456789';
    const configFile = writeTestConfig(temp.dir, {
      log: { level: 'trace' },
      dkim: { reloadSeconds: 0.1 },
      admin: { enabled: true, tokens: [{ name: 'ops', token }] },
      delivery: { ...FAST_DELIVERY, routes: { '*': `127.0.0.1:${mx.port}` } },
    });
    const child = await startChildRelay(configFile);
    cleanups.push(async () => {
      child.process.kill('SIGTERM');
      await child.exited;
    });
    const outputs = [
      await dkim(configFile, 'add', 'shop.example'),
      await dkim(configFile, 'add', 'shop.example', '--algorithm', 'ed25519', '--json'),
      await dkim(configFile, 'rotate', 'shop.example', '--algorithm', 'rsa-2048', '--selector', 'next'),
      await dkim(configFile, 'list', '--json'),
      await dkim(configFile, 'show', 'shop.example'),
      (await rebound(['config', '--config', configFile])).stdout,
    ];
    await new Promise((resolve) => setTimeout(resolve, 250));
    await sender(child.port).sendMail({ from: 'news@shop.example', to: 'reader@example.net', subject: 'secret keys', text: 'hi' });
    await receivedFor(mx, 'reader@example.net');

    const adminPort = await waitFor('the admin port in the log', () => child.logs.find((entry) => entry.msg === 'admin API listening')?.port, (port) => port !== undefined);
    const queueId = (child.logs.find((entry) => typeof entry.queueId === 'string')?.queueId as string | undefined) ?? 'none';
    const since = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    const answers: string[] = [];
    for (const path of ['/healthz', '/metrics', '/v1/queue', `/v1/queue/${queueId}`, '/v1/events', '/v1/suppressions', '/v1/allowlist', `/v1/reports/bounces?since=${since}`]) {
      const response = await fetch(`http://127.0.0.1:${adminPort}${path}`, { headers: { authorization: `Bearer ${token}` } });
      answers.push(`${path} ${response.status} ${await response.text()}`);
    }
    expect(answers.filter((answer) => / 200 /.test(answer)).length).toBeGreaterThanOrEqual(6);

    const db = new BetterSqlite3(join(temp.dir, 'rebound.sqlite'), { readonly: true });
    const pems = db.prepare('SELECT private_key FROM dkim_keys').pluck().all() as string[];
    db.close();
    expect(pems).toHaveLength(3);
    // Every 24-character run of each key's base64, and the PEM armour itself.
    const secrets = pems.flatMap((pem) => {
      const body = pem.replace(/-----[^-]+-----|\s/g, '');
      return Array.from({ length: Math.floor(body.length / 24) }, (_, i) => body.slice(i * 24, i * 24 + 24));
    });
    const log = JSON.stringify(child.logs);
    expect(child.logs.some((entry) => entry.msg === 'DKIM keys loaded')).toBe(true);
    for (const text of [log, ...answers, ...outputs]) {
      expect(text).not.toContain('PRIVATE KEY');
      for (const secret of secrets) expect(text.includes(secret)).toBe(false);
    }
  });
});
