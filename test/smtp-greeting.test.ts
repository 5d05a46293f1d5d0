/**
 * When the 220 greeting goes out (src/smtp-greeting.ts). smtp-server on its own holds it back
 * 100 ms on every connection; an upgrade that brings that pause back to submission, or moves the
 * methods the hook replaces, fails here.
 */
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { relaysStoppedAfterEachTest, type TestRelay } from './support/relay.js';

const startRelay = relaysStoppedAfterEachTest();

/** smtp-server's own pause; a greeting this late means the hook is gone. */
const SMTP_SERVER_PAUSE_MS = 100;

interface Greeting {
  /** Milliseconds from the TCP connection to the first reply line. */
  afterMs: number;
  /** Every line the server sent before closing or within `readMs`. */
  lines: string[];
}

/**
 * Opens a connection, optionally writes `earlyCommand` at once (before any greeting), and returns
 * when the first reply came and what was said within `readMs`.
 */
function greet(port: number, options: { earlyCommand?: string; readMs?: number } = {}): Promise<Greeting> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let connectedAt = 0;
    let afterMs = -1;
    let text = '';
    const finish = (): void => {
      socket.destroy();
      resolve({ afterMs, lines: text.split('\r\n').filter((line) => line !== '') });
    };
    socket.setNoDelay(true);
    socket.on('connect', () => {
      connectedAt = performance.now();
      if (options.earlyCommand !== undefined) socket.write(`${options.earlyCommand}\r\n`);
    });
    socket.on('data', (chunk: Buffer) => {
      if (afterMs < 0) afterMs = performance.now() - connectedAt;
      text += chunk.toString('latin1');
      if (options.readMs === undefined) finish();
    });
    socket.on('close', finish);
    socket.on('error', reject);
    if (options.readMs !== undefined) setTimeout(finish, options.readMs);
  });
}

/** The fastest of several greetings: one slow one on a busy machine proves nothing. */
async function fastestGreeting(port: number, tries = 5): Promise<number> {
  let fastest = Number.POSITIVE_INFINITY;
  for (let n = 0; n < tries; n++) {
    const { afterMs, lines } = await greet(port);
    expect(lines[0]).toMatch(/^220 /);
    fastest = Math.min(fastest, afterMs);
  }
  return fastest;
}

function inboundPort(relay: TestRelay): number {
  const port = relay.relay.inbound?.port;
  if (port === undefined) throw new Error('inbound is not running');
  return port;
}

describe('greeting', () => {
  it('submission greets at once, without smtp-server\'s 100 ms early-talker pause', async () => {
    const relay = await startRelay();
    expect(await fastestGreeting(relay.port)).toBeLessThan(SMTP_SERVER_PAUSE_MS / 2);
  });

  it('submission answers a client that talks first instead of refusing it', async () => {
    const relay = await startRelay();
    const { lines } = await greet(relay.port, { earlyCommand: 'EHLO early.example', readMs: 300 });
    expect(lines[0]).toMatch(/^220 /);
    expect(lines.some((line) => /^250[ -]/.test(line))).toBe(true);
  });

  it('inbound greets at once by default (inbound.greetPauseMs 0)', async () => {
    const relay = await startRelay({ inbound: { enabled: true } });
    expect(await fastestGreeting(inboundPort(relay))).toBeLessThan(SMTP_SERVER_PAUSE_MS / 2);
  });

  it('inbound with greetPauseMs waits that long and turns away a client that talks first', async () => {
    const relay = await startRelay({ inbound: { enabled: true, greetPauseMs: 300 } });
    const patient = await greet(inboundPort(relay));
    expect(patient.lines[0]).toMatch(/^220 /);
    expect(patient.afterMs).toBeGreaterThanOrEqual(250);

    const early = await greet(inboundPort(relay), { earlyCommand: 'EHLO spam.example', readMs: 1_000 });
    expect(early.lines[0]).toMatch(/^421 .*talk too soon/i);
    expect(early.lines.some((line) => line.startsWith('220'))).toBe(false);
  });

  it('refuses a greeting pause that is not a whole number of milliseconds', async () => {
    await expect(startRelay({ inbound: { enabled: true, greetPauseMs: -1 } })).rejects.toThrow(/greetPauseMs/);
  });
});
