import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { startChildRelay, type ChildRelay } from './support/child-relay.js';
import { writeTestConfig } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { makeTempDir } from './support/temp-dir.js';

/**
 * Per-connection cost: 1,000 clients that connect and say nothing (a misbehaving app pool, a
 * port scanner, a slowloris) must not slow the others down, nor grow the relay's memory without
 * bound, and the idle timeout must clear them: with more than 3/4 of maxClients open, that is
 * submission.stressSocketTimeoutSeconds (10 s by default), not the 300 s of socketTimeoutSeconds.
 * The relay runs as its own process so its RSS is not the test runner's.
 */
const CROWD = 1000;
/** submission.stressSocketTimeoutSeconds in config/default.json. */
const IDLE_TIMEOUT_SECONDS = 10;
/** Connections opened at once while the crowd gathers, to stay clear of the listen backlog. */
const BATCH = 100;

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** Resident set size of a process, in MiB (ps reports KiB on Linux and macOS). */
function rssMiB(pid: number): number {
  return Number(execFileSync('ps', ['-o', 'rss=', '-p', String(pid)]).toString().trim()) / 1024;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** One message the way a one-connection-per-message app sends it; ms to the greeting and to the 250. */
async function sendOne(port: number): Promise<{ greetingMs: number; messageMs: number }> {
  const started = performance.now();
  const dialog = await SmtpDialog.open(port);
  await dialog.expect(220);
  const greetingMs = performance.now() - started;
  await dialog.command('EHLO app.test', 250);
  await dialog.command('MAIL FROM:<app@shop.example>', 250);
  await dialog.command('RCPT TO:<someone@example.net>', 250);
  await dialog.command('DATA', 354);
  dialog.write('Subject: while the crowd waits\r\n\r\nbody\r\n.\r\n');
  await dialog.expect(250);
  const messageMs = performance.now() - started;
  await dialog.quit();
  return { greetingMs, messageMs };
}

async function sendMany(port: number, count: number): Promise<{ greetingMs: number; messageMs: number }> {
  const results: Array<{ greetingMs: number; messageMs: number }> = [];
  for (let i = 0; i < count; i++) results.push(await sendOne(port));
  return { greetingMs: median(results.map((r) => r.greetingMs)), messageMs: median(results.map((r) => r.messageMs)) };
}

describe(`${CROWD} idle connections`, () => {
  it('leave the greeting and the 250 of a normal client prompt, cost bounded memory, are closed by the stress idle timeout; past maxClients: 421', async () => {
    const temp = makeTempDir('rebound-crowd-');
    cleanups.push(temp.remove);
    // Room for the crowd and one normal client; loopback is in allowNetworks, so the per-address
    // cap does not apply and only maxClients bounds them. Timeouts are the defaults.
    const configFile = writeTestConfig(temp.dir, { log: { level: 'info' }, submission: { maxClients: CROWD + 1 } });
    const relay: ChildRelay = await startChildRelay(configFile);
    cleanups.push(() => relay.process.kill('SIGKILL'));
    const pid = relay.process.pid as number;

    await sendMany(relay.port, 10); // warm-up: JIT, SQLite page cache
    const alone = await sendMany(relay.port, 20);
    const rssAlone = rssMiB(pid);

    const crowd: SmtpDialog[] = [];
    const gathered = performance.now();
    for (let i = 0; i < CROWD; i += BATCH) {
      const batch = await Promise.all(Array.from({ length: BATCH }, () => SmtpDialog.open(relay.port)));
      await Promise.all(batch.map((dialog) => dialog.expect(220)));
      crowd.push(...batch);
    }
    const gatherMs = performance.now() - gathered;
    const withCrowd = await sendMany(relay.port, 20);
    const rssWithCrowd = rssMiB(pid);

    // The crowd and one client fill maxClients: the next connection is refused at once.
    const holder = await SmtpDialog.start(relay.port);
    const refused = await SmtpDialog.open(relay.port);
    expect((await refused.read()).text).toMatch(/^421 .*Too many connected clients/);
    await refused.waitClosed();
    await holder.quit();

    // Everything above ran within the idle timeout: the whole crowd was there for it.
    expect(performance.now() - gathered).toBeLessThan(IDLE_TIMEOUT_SECONDS * 1000);
    expect(crowd.filter((dialog) => dialog.closed)).toHaveLength(0);

    const timeouts = await Promise.all(crowd.map((dialog) => dialog.read((IDLE_TIMEOUT_SECONDS + 10) * 1000)));
    const expected = new RegExp(`^421 4\\.4\\.2 .*Timeout: no complete command within ${IDLE_TIMEOUT_SECONDS} seconds`);
    expect(timeouts.filter((reply) => expected.test(reply.text))).toHaveLength(CROWD);
    await Promise.all(crowd.map((dialog) => dialog.waitClosed()));
    const afterTimeout = await sendMany(relay.port, 5);
    const rssAfter = rssMiB(pid);

    // eslint-disable-next-line no-console -- the numbers are the point of this test; they go in the report
    console.log(
      `idle crowd: ${CROWD} connections gathered in ${gatherMs.toFixed(0)} ms; ` +
        `median greeting / message: alone ${alone.greetingMs.toFixed(1)} / ${alone.messageMs.toFixed(1)} ms, ` +
        `with crowd ${withCrowd.greetingMs.toFixed(1)} / ${withCrowd.messageMs.toFixed(1)} ms, ` +
        `after timeout ${afterTimeout.greetingMs.toFixed(1)} / ${afterTimeout.messageMs.toFixed(1)} ms; ` +
        `relay RSS ${rssAlone.toFixed(1)} → ${rssWithCrowd.toFixed(1)} → ${rssAfter.toFixed(1)} MiB`,
    );
    // Bounds far above what was measured (a few ms, ~20 KiB per connection) and far below what
    // a per-connection stall (smtp-server's old 100 ms greeting pause) or leak would show.
    expect(withCrowd.greetingMs).toBeLessThan(100);
    expect(withCrowd.messageMs).toBeLessThan(500);
    expect(rssWithCrowd - rssAlone).toBeLessThan(64);
    expect(relay.logs.some((entry) => entry.msg === 'many connections open: clients now have the stress idle timeout to send a command')).toBe(true);
  }, 60_000);
});
