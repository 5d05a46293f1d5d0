import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { countRows } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { submissionServersStoppedAfterEachTest } from './support/submission-server.js';
import { waitFor } from './support/wait-for.js';

const submissionWith = submissionServersStoppedAfterEachTest();

/** A message body of about 60 kB in 80-byte lines, without the final "." line. */
const BODY = `Subject: big\r\n\r\n${`${'x'.repeat(78)}\r\n`.repeat(750)}`;

async function openData(port: number, localAddress: string): Promise<SmtpDialog> {
  const dialog = await SmtpDialog.start(port, { localAddress });
  await dialog.command('MAIL FROM:<a@shop.example>', 250);
  await dialog.command('RCPT TO:<x@example.net>', 250);
  await dialog.command('DATA', 354);
  return dialog;
}

describe('submission: message content held in memory', () => {
  it('refuses a transfer that would go over maxBytesInFlight with 451 4.3.1, stores it not at all, takes the rest, and gives every byte back', async () => {
    // Room for four messages in transfer, not five.
    const submission = await submissionWith({ submission: { maxMessageSize: 100_000, maxBytesInFlight: 250_000 } });
    const inFlight = () => submission.server.stats().bytesInFlight;

    const senders: SmtpDialog[] = [];
    for (let i = 1; i <= 4; i++) {
      const dialog = await openData(submission.port, `127.0.0.${i}`);
      dialog.write(BODY);
      // The parser holds back the last 4 bytes until it knows they do not end the message.
      await waitFor(`message ${i} to be in memory`, inFlight, (bytes) => bytes >= i * (BODY.length - 4));
      senders.push(dialog);
    }

    const excess = await openData(submission.port, '127.0.0.5');
    excess.write(`${BODY}.\r\n`);
    expect((await excess.read()).text).toMatch(/^451 4\.3\.1 Insufficient system storage/);
    expect(countRows(submission.db, 'messages')).toBe(0);

    for (const dialog of senders) dialog.write('.\r\n');
    const replies = await Promise.all(senders.map((dialog) => dialog.read()));
    expect(replies.map((reply) => reply.code)).toEqual([250, 250, 250, 250]);
    expect(countRows(submission.db, 'messages')).toBe(4);
    expect(inFlight()).toBe(0);

    // The refused client may send again once there is room.
    await excess.command('MAIL FROM:<a@shop.example>', 250);
    await excess.command('RCPT TO:<x@example.net>', 250);
    await excess.command('DATA', 354);
    excess.write(`${BODY}.\r\n`);
    expect((await excess.read()).code).toBe(250);
    expect(inFlight()).toBe(0);
    await Promise.all([excess, ...senders].map((dialog) => dialog.quit()));
  });
});

describe('submission.maxBytesInFlight in the config', () => {
  it('must leave room for one message of maxMessageSize', () => {
    const env = { REBOUND_SUBMISSION_MAX_MESSAGE_SIZE: '1000', REBOUND_SUBMISSION_MAX_BYTES_IN_FLIGHT: '999' };
    expect(() => loadConfig({ env })).toThrow(/submission\.maxBytesInFlight: must be at least submission\.maxMessageSize/);
  });
});
