import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { countRows, relaysStoppedAfterEachTest, type TestRelay } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';

const relayWith = relaysStoppedAfterEachTest();

async function openTransaction(relay: TestRelay, recipients = ['x@example.net']): Promise<SmtpDialog> {
  const dialog = await SmtpDialog.start(relay.port);
  await dialog.command('MAIL FROM:<a@shop.example>', 250);
  for (const recipient of recipients) await dialog.command(`RCPT TO:<${recipient}>`, 250);
  return dialog;
}

/** Sends one good message on the same connection: a refusal must leave the session usable. */
async function sendGoodMessage(dialog: SmtpDialog): Promise<void> {
  await dialog.command('MAIL FROM:<a@shop.example>', 250);
  await dialog.command('RCPT TO:<ok@example.net>', 250);
  await dialog.command('DATA', 354);
  dialog.write('Subject: fine\r\n\r\nfine\r\n.\r\n');
  expect((await dialog.read()).code).toBe(250);
}

describe('submission: size limit', () => {
  it('refuses a declared SIZE over the limit at MAIL FROM (552 5.3.4)', async () => {
    const relay = await relayWith({ submission: { maxMessageSize: 1000 } });
    const dialog = await SmtpDialog.start(relay.port);
    const reply = await dialog.command('MAIL FROM:<a@shop.example> SIZE=5000');
    expect(reply.text).toMatch(/^552 5\.3\.4 /);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(0);
  });

  it('refuses a message over the limit after DATA even when the client lied in SIZE=, and stores nothing', async () => {
    const relay = await relayWith({ submission: { maxMessageSize: 1000 } });
    const dialog = await SmtpDialog.start(relay.port);
    await dialog.command('MAIL FROM:<a@shop.example> SIZE=100', 250);
    await dialog.command('RCPT TO:<x@example.net>', 250);
    await dialog.command('DATA', 354);
    dialog.write(`Subject: big\r\n\r\n${'x'.repeat(78)}\r\n`.repeat(40) + '.\r\n');
    expect((await dialog.read()).text).toMatch(/^552 5\.3\.4 /);
    expect(countRows(relay.db, 'messages')).toBe(0);
    await sendGoodMessage(dialog);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(1);
  });
});

describe('submission: recipients and addresses', () => {
  it('answers 452 4.5.3 past maxRecipients and queues only the recipients it accepted', async () => {
    const relay = await relayWith({ submission: { maxRecipients: 3 } });
    const dialog = await openTransaction(relay, ['r1@example.net', 'r2@example.net', 'r3@example.net']);
    expect((await dialog.command('RCPT TO:<r4@example.net>')).text).toMatch(/^452 4\.5\.3 /);
    expect(countRows(relay.db, 'messages')).toBe(0);
    await dialog.command('DATA', 354);
    dialog.write('Subject: three\r\n\r\nbody\r\n.\r\n');
    expect((await dialog.read()).code).toBe(250);
    await dialog.quit();
    expect(relay.db.prepare('SELECT address FROM recipients ORDER BY id').all()).toEqual([
      { address: 'r1@example.net' },
      { address: 'r2@example.net' },
      { address: 'r3@example.net' },
    ]);
  });

  it.each([
    ['MAIL FROM:<no-at-sign>', /^501 5\.1\.7 /],
    ['MAIL FROM:<a@b@c.example>', /^501 5\.1\.7 /],
    ['MAIL FROM:a@shop.example', /^501 5\.1\.7 /],
  ])('refuses a malformed sender: %s', async (command, expected) => {
    const relay = await relayWith();
    const dialog = await SmtpDialog.start(relay.port);
    expect((await dialog.command(command)).text).toMatch(expected);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(0);
  });

  it.each([
    ['RCPT TO:<>', /^501 5\.1\.3 /],
    ['RCPT TO:<no-domain>', /^501 5\.1\.3 /],
    ['RCPT TO:<two@at@signs.example>', /^501 5\.1\.3 /],
    ['RCPT TO:<.dot@example.net>', /^501 5\.1\.3 /],
    ['RCPT TO:<x@exa_mple..net>', /^5\d\d 5\.1\.3 /],
    ['RCPT TO:<postmaster>', /^553 5\.1\.3 .*no local mailboxes/],
  ])('refuses a malformed recipient: %s', async (command, expected) => {
    const relay = await relayWith();
    const dialog = await openTransaction(relay, []);
    expect((await dialog.command(command)).text).toMatch(expected);
    expect((await dialog.command('DATA')).code).toBe(503);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(0);
  });

  it('refuses DATA without any recipient (503) and stores nothing', async () => {
    const relay = await relayWith();
    const dialog = await openTransaction(relay, []);
    expect((await dialog.command('DATA')).text).toMatch(/^503 5\.5\.1 /);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(0);
  });
});

describe('submission: broken input', () => {
  it('stores nothing when the client disconnects in the middle of DATA, and keeps serving others', async () => {
    const relay = await relayWith();
    const dialog = await openTransaction(relay);
    await dialog.command('DATA', 354);
    dialog.write('Subject: half\r\n\r\nthe first half of a message');
    await new Promise((resolve) => setTimeout(resolve, 50));
    dialog.destroy();
    await dialog.waitClosed();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(countRows(relay.db, 'messages')).toBe(0);

    const next = await SmtpDialog.start(relay.port);
    await sendGoodMessage(next);
    await next.quit();
    expect(countRows(relay.db, 'messages')).toBe(1);
  });

  it.each([
    ['LF . LF', '\n.\n'],
    ['LF . CRLF', '\n.\r\n'],
    ['CRLF . LF', '\r\n.\n'],
    ['CR . CR', '\r.\r'],
    ['CR . CRLF', '\r.\r\n'],
  ])('does not split a message at an ambiguous %s (SMTP smuggling): one refusal, nothing stored', async (_name, separator) => {
    const relay = await relayWith();
    const dialog = await openTransaction(relay);
    await dialog.command('DATA', 354);
    dialog.write(
      `Subject: smuggler\r\n\r\nhello${separator}` +
        'MAIL FROM:<ceo@shop.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n' +
        '.\r\n',
    );
    const reply = await dialog.read();
    expect(reply.text).toMatch(/^554 5\.6\.0 Message contains a lone "\." line/);
    // The connection is still in sync: the next command gets its own reply, nothing smuggled ran.
    expect((await dialog.command('NOOP')).code).toBe(250);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(0);
    expect(countRows(relay.db, 'recipients')).toBe(0);
  });

  it('answers 451 when the store cannot commit, loses nothing accepted before, and recovers', async () => {
    const relay = await relayWith();
    const first = await SmtpDialog.start(relay.port);
    await sendGoodMessage(first);
    await first.quit();

    // A trigger stands in for a full or failing disk: the commit fails after DATA was received.
    const admin = new BetterSqlite3(relay.config.store.path);
    admin.exec(`CREATE TRIGGER fail_insert BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'disk on fire'); END`);
    const dialog = await openTransaction(relay);
    await dialog.command('DATA', 354);
    dialog.write('Subject: unlucky\r\n\r\nbody\r\n.\r\n');
    expect((await dialog.read()).text).toMatch(/^451 4\.3\.0 .*could not be stored/);
    expect(countRows(relay.db, 'messages')).toBe(1);

    admin.exec('DROP TRIGGER fail_insert');
    admin.close();
    await sendGoodMessage(dialog);
    await dialog.quit();
    expect(countRows(relay.db, 'messages')).toBe(2);
  });
});

describe('submission: line length (RFC 5321 4.5.3.1.6)', () => {
  it.each([
    ['999 octets', 999],
    ['2 MB', 2_000_000],
  ])('refuses a message with a line of %s (554 5.6.0) rather than fold it, stores nothing, and keeps the session', async (_name, length) => {
    const relay = await relayWith();
    const dialog = await openTransaction(relay);
    await dialog.command('DATA', 354);
    dialog.write(`Subject: long\r\n\r\n${'x'.repeat(length)}\r\n.\r\n`);
    expect((await dialog.read()).text).toMatch(/^554 5\.6\.0 Message has a line longer than 998 octets plus CRLF \(RFC 5321 4\.5\.3\.1\.6\)/);
    expect(countRows(relay.db, 'messages')).toBe(0);
    await sendGoodMessage(dialog);
    await dialog.quit();
  });

  it('takes a line of exactly 998 octets, and any length when maxLineLength is 0', async () => {
    const relay = await relayWith();
    const dialog = await openTransaction(relay);
    await dialog.command('DATA', 354);
    dialog.write(`Subject: longest\r\n\r\n${'x'.repeat(998)}\r\n.\r\n`);
    expect((await dialog.read()).code).toBe(250);
    await dialog.quit();

    const lenient = await relayWith({ submission: { maxLineLength: 0 } });
    const other = await openTransaction(lenient);
    await other.command('DATA', 354);
    other.write(`Subject: long\r\n\r\n${'x'.repeat(5000)}\r\n.\r\n`);
    expect((await other.read()).code).toBe(250);
    await other.quit();
  });
});

describe('submission: non-ASCII addresses (RFC 6531)', () => {
  it('refuses a non-ASCII sender without SMTPUTF8 (553 5.6.7) and takes it with SMTPUTF8', async () => {
    const relay = await relayWith();
    const dialog = await SmtpDialog.start(relay.port);
    expect((await dialog.command('MAIL FROM:<jürgen@shop.example>')).text).toMatch(/^553 5\.6\.7 Non-ASCII address requires SMTPUTF8/);
    await dialog.command('MAIL FROM:<jürgen@shop.example> SMTPUTF8', 250);
    await dialog.quit();
  });

  it('refuses a non-ASCII recipient without SMTPUTF8 (553 5.6.7), takes it with SMTPUTF8, and takes its punycode form either way', async () => {
    const relay = await relayWith();
    const dialog = await SmtpDialog.start(relay.port);
    await dialog.command('MAIL FROM:<a@shop.example>', 250);
    expect((await dialog.command('RCPT TO:<kunde@bücher.example>')).text).toMatch(/^553 5\.6\.7 Non-ASCII address requires SMTPUTF8/);
    await dialog.command('RCPT TO:<kunde@xn--bcher-kva.example>', 250);
    await dialog.command('RSET', 250);
    await dialog.command('MAIL FROM:<a@shop.example> SMTPUTF8', 250);
    await dialog.command('RCPT TO:<kunde@bücher.example>', 250);
    await dialog.quit();
  });
});
