import { describe, expect, it } from 'vitest';
import { hashPassword } from '../src/submission/passwords.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { submissionServersStoppedAfterEachTest } from './support/submission-server.js';

const submissionWith = submissionServersStoppedAfterEachTest();

// A cheap scrypt cost keeps the suite fast; the limits do not depend on the cost.
const CHEAP = { N: 1024, r: 8, p: 1 };

async function withUser(auth: Record<string, unknown> = {}, cost = CHEAP) {
  const passwordHash = await hashPassword('right-password', cost);
  return submissionWith({ submission: { auth: { users: [{ username: 'app', passwordHash }], ...auth } } });
}

function plain(username: string, password: string): string {
  return `AUTH PLAIN ${Buffer.from(`\0${username}\0${password}`).toString('base64')}`;
}

async function dialogFrom(port: number, localAddress = '127.0.0.1'): Promise<SmtpDialog> {
  return SmtpDialog.start(port, { localAddress });
}

describe('submission AUTH: password guessing', () => {
  it('closes the connection with 421 4.7.0 at its third failure, so no fourth guess is checked', async () => {
    const submission = await withUser();
    const dialog = await dialogFrom(submission.port);
    expect((await dialog.command(plain('app', 'guess-1'))).text).toMatch(/^535 5\.7\.8 /);
    expect((await dialog.command(plain('app', 'guess-2'))).text).toMatch(/^535 5\.7\.8 /);
    expect((await dialog.command(plain('app', 'guess-3'))).text).toMatch(/^421 4\.7\.0 Too many authentication failures/);
    await dialog.waitClosed();
    expect(submission.server.stats().authVerifications).toBe(3);
  });

  it('refuses even the right password without running scrypt once a client address has failed maxFailuresPerClient times; another address still logs in', async () => {
    const submission = await withUser({ maxFailuresPerClient: 4 });
    const first = await dialogFrom(submission.port);
    for (const guess of ['g1', 'g2']) expect((await first.command(plain('app', guess))).code).toBe(535);
    expect((await first.command(plain('app', 'g3'))).code).toBe(421);
    await first.waitClosed();
    const second = await dialogFrom(submission.port);
    expect((await second.command(plain('app', 'g4'))).code).toBe(535);
    const checked = submission.server.stats().authVerifications;
    expect(checked).toBe(4);

    const reply = await second.command(plain('app', 'right-password'));
    expect(reply.text).toMatch(/^454 4\.7\.0 Too many failed authentication attempts from your address/);
    expect(submission.server.stats().authVerifications).toBe(checked);
    await second.quit();

    const other = await dialogFrom(submission.port, '127.0.0.2');
    expect((await other.command(plain('app', 'right-password'))).code).toBe(235);
    await other.quit();
  });

  it('locks a username out after maxFailuresPerUser failures spread over several addresses', async () => {
    const submission = await withUser({ maxFailuresPerUser: 3 });
    for (const address of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
      const guesser = await dialogFrom(submission.port, address);
      expect((await guesser.command(plain('app', `guess-from-${address}`))).code).toBe(535);
      await guesser.quit();
    }
    const checked = submission.server.stats().authVerifications;
    const app = await dialogFrom(submission.port);
    expect((await app.command(plain('app', 'right-password'))).text).toMatch(/^454 4\.7\.0 .*for this user/);
    expect(submission.server.stats().authVerifications).toBe(checked);
    await app.quit();
  });

  it('runs one password check at a time however many clients guess at once, and checks every one', async () => {
    // A costlier hash, so the checks would overlap on the thread pool if nothing held them back.
    const submission = await withUser({ maxFailuresPerClient: 100 }, { N: 16384, r: 8, p: 1 });
    const guessers = await Promise.all(Array.from({ length: 8 }, (_, i) => dialogFrom(submission.port, `127.0.0.${i + 10}`)));
    const replies = await Promise.all(guessers.map((dialog, i) => dialog.command(plain('app', `guess-${i}`))));
    expect(replies.map((reply) => reply.code)).toEqual(Array(8).fill(535));
    expect(submission.server.stats().authVerifications).toBe(8);
    expect(submission.server.stats().peakConcurrentAuthVerifications).toBe(1);
    await Promise.all(guessers.map((dialog) => dialog.quit()));
  });
});
