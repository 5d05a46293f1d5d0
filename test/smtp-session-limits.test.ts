import { describe, expect, it } from 'vitest';
import { countRows, relaysStoppedAfterEachTest, type TestRelay } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { submissionServersStoppedAfterEachTest } from './support/submission-server.js';
import { waitFor } from './support/wait-for.js';

const relayWith = relaysStoppedAfterEachTest();
const submissionWith = submissionServersStoppedAfterEachTest();

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Writes `text` one byte at a time, `gapMs` apart, until it is written or the server hangs up. */
async function drip(dialog: SmtpDialog, text: string, gapMs: number): Promise<void> {
  for (const byte of text) {
    if (dialog.closed) return;
    dialog.write(byte);
    await pause(gapMs);
  }
}

function inboundPort(relay: TestRelay): number {
  return (relay.relay.inbound as { port: number }).port;
}

describe('connections per client address', () => {
  it('submission: refuses a connection over maxClientsPerIp with 421 4.7.0, while another address still gets in', async () => {
    // allowNetworks elsewhere: its clients are exempt from the cap, and this one must not be.
    const submission = await submissionWith({ submission: { maxClientsPerIp: 3, allowNetworks: ['10.0.0.0/8'] } });
    const held = await Promise.all([1, 2, 3].map(() => SmtpDialog.start(submission.port)));

    const refused = await SmtpDialog.open(submission.port);
    expect((await refused.read()).text).toMatch(/^421 4\.7\.0 .*Too many connections from your address \(at most 3\)/);
    await refused.waitClosed();

    const other = await SmtpDialog.start(submission.port, { localAddress: '127.0.0.2' });
    await other.quit();

    // A slot that closes is free again.
    await held[0]!.quit();
    await waitFor('the closed connection to be released', () => submission.server.stats().clientsFrom('127.0.0.1'), (open) => open === 2);
    const again = await SmtpDialog.start(submission.port);
    await Promise.all([again, ...held.slice(1)].map((dialog) => dialog.quit()));
  });

  it('submission: does not cap clients in allowNetworks (the operator\'s apps and their pools)', async () => {
    const relay = await relayWith({ submission: { maxClientsPerIp: 2 } });
    const dialogs = await Promise.all([1, 2, 3, 4, 5].map(() => SmtpDialog.start(relay.port)));
    await Promise.all(dialogs.map((dialog) => dialog.quit()));
  });

  it('inbound: refuses a connection over inbound.maxClientsPerIp, while another address still gets in', async () => {
    const relay = await relayWith({ inbound: { enabled: true, maxClientsPerIp: 2 } });
    const port = inboundPort(relay);
    const held = await Promise.all([1, 2].map(() => SmtpDialog.start(port)));
    const refused = await SmtpDialog.open(port);
    expect((await refused.read()).text).toMatch(/^421 4\.7\.0 .*Too many connections from your address \(at most 2\)/);
    await refused.waitClosed();
    const other = await SmtpDialog.start(port, { localAddress: '127.0.0.2' });
    await Promise.all([other, ...held].map((dialog) => dialog.quit()));
  });
});

describe('slow clients', () => {
  it('closes a connection whose command line is still incomplete when the idle timeout is up, however often bytes trickle in', async () => {
    const relay = await relayWith({ submission: { socketTimeoutSeconds: 1 } });
    const dialog = await SmtpDialog.start(relay.port);
    // 40 bytes at 250 ms: each byte would reset a plain idle timeout of 1 s.
    void drip(dialog, `NOOP ${'x'.repeat(33)}\r\n`, 250);
    expect((await dialog.read()).text).toMatch(/^421 4\.4\.2 .*Timeout: no complete command within 1 seconds/);
    await dialog.waitClosed();
  });

  it('submission: once 3/4 of maxClients are open, clients waiting for a command get stressSocketTimeoutSeconds, those already waiting too; back to normal below half', async () => {
    const submission = await submissionWith({ submission: { maxClients: 8, stressSocketTimeoutSeconds: 1, socketTimeoutSeconds: 300 } });
    // 5 of 8: no stress yet, the idle clients keep their 300 s.
    const idle = await Promise.all([1, 2, 3, 4, 5].map(() => SmtpDialog.start(submission.port)));
    await pause(1500);
    expect(idle.filter((dialog) => dialog.closed)).toHaveLength(0);

    // The 6th brings stress: the idle ones have waited more than 1 s already and are closed now.
    const busy = await SmtpDialog.start(submission.port);
    const replies = await Promise.all(idle.map((dialog) => dialog.read(3000)));
    for (const reply of replies) expect(reply.text).toMatch(/^421 4\.4\.2 .*Timeout: no complete command within 1 seconds/);
    await Promise.all(idle.map((dialog) => dialog.waitClosed()));

    // A client that keeps talking is not hurt.
    await busy.command('MAIL FROM:<app@shop.example>', 250);
    await busy.command('RCPT TO:<someone@example.net>', 250);
    await busy.command('DATA', 354);
    busy.write('Subject: under stress\r\n\r\nbody\r\n.\r\n');
    await busy.expect(250);

    // 1 of 8 open: the next reply ends stress, and the normal idle timeout applies again.
    await pause(200);
    await busy.command('NOOP', 250);
    await pause(1500);
    expect(busy.closed).toBe(false);
    await busy.quit();
  });

  it('closes a session at sessionTimeoutSeconds even while message content trickles in, and stores nothing', async () => {
    const relay = await relayWith({ submission: { sessionTimeoutSeconds: 2 } });
    const dialog = await SmtpDialog.start(relay.port);
    await dialog.command('MAIL FROM:<a@shop.example>', 250);
    await dialog.command('RCPT TO:<x@example.net>', 250);
    await dialog.command('DATA', 354);
    // 40 bytes at 250 ms = 10 s, well past the 2 s deadline; then the end of the message.
    const dripping = drip(dialog, `Subject: slow\r\n\r\n${'y'.repeat(23)}\r\n`, 250).then(() => dialog.closed || dialog.write('.\r\n'));
    expect((await dialog.read()).text).toMatch(/^421 4\.4\.2 .*Session time limit of 2 seconds reached/);
    await dialog.waitClosed();
    await dripping;
    expect(countRows(relay.db, 'messages')).toBe(0);
  });
});

describe('commands that send no mail', () => {
  it('submission: closes the connection past maxJunkCommands NOOPs (421 4.7.0); an accepted message starts the count again', async () => {
    const relay = await relayWith({ submission: { maxJunkCommands: 5 } });
    const dialog = await SmtpDialog.start(relay.port);
    for (let i = 0; i < 5; i++) await dialog.command('NOOP', 250);
    await dialog.command('MAIL FROM:<a@shop.example>', 250);
    await dialog.command('RCPT TO:<x@example.net>', 250);
    await dialog.command('DATA', 354);
    dialog.write('Subject: between\r\n\r\nbody\r\n.\r\n');
    expect((await dialog.read()).code).toBe(250);
    for (let i = 0; i < 4; i++) await dialog.command('NOOP', 250);
    await dialog.command('RSET', 250);
    expect((await dialog.command('VRFY someone')).text).toMatch(/^421 4\.7\.0 .*Too many commands that send no mail \(at most 5 between messages\)/);
    await dialog.waitClosed();
  });

  it('inbound: closes the connection past inbound.maxJunkCommands', async () => {
    const relay = await relayWith({ inbound: { enabled: true, maxJunkCommands: 3 } });
    const dialog = await SmtpDialog.start(inboundPort(relay));
    for (let i = 0; i < 3; i++) await dialog.command('NOOP', 250);
    expect((await dialog.command('NOOP')).text).toMatch(/^421 4\.7\.0 /);
    await dialog.waitClosed();
  });
});
