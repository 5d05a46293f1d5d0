/**
 * The benchmark's connection modes (bench/smtp-load.ts, `--connection` in bench/submit.ts and
 * bench/e2e.ts): per-message opens, uses and closes one connection for every message, reused
 * keeps one per client, and the JSON report says which ran and what the connections cost.
 * Only shapes and counts are checked; timings on a shared machine prove nothing.
 */
import { execFile } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { MessageFactory, openLoadClients, type ConnectionMode, type PhaseResult } from '../bench/smtp-load.js';
import { countRows, relaysStoppedAfterEachTest } from './support/relay.js';

const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
const execFileAsync = promisify(execFile);
const startRelay = relaysStoppedAfterEachTest();

/** A loopback TCP proxy to `port` that counts the connections it is asked for. */
interface CountingProxy {
  port: number;
  connections(): number;
}

const proxies: Server[] = [];
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
});

async function countingProxy(targetPort: number): Promise<CountingProxy> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    connections++;
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  // close() waits for open connections; a failed test must not leave it waiting.
  server.on('close', () => sockets.forEach((socket) => socket.destroy()));
  proxies.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
  return { port: address.port, connections: () => connections };
}

async function sendThrough(mode: ConnectionMode, port: number, total: number, concurrency: number): Promise<PhaseResult> {
  const clients = await openLoadClients(mode, port, concurrency);
  const settings = { recipients: 1, messages: new MessageFactory(2048) };
  // Bounded in time as the benchmark is: a hung relay ends the phase instead of the test timeout.
  const result = await clients.run(total, 0, settings, AbortSignal.timeout(20_000));
  await clients.close();
  return result;
}

describe('bench load generator: connection modes', () => {
  it('per-message opens one connection per message, and each message is stored', async () => {
    const relay = await startRelay();
    const proxy = await countingProxy(relay.port);
    const result = await sendThrough('per-message', proxy.port, 24, 4);

    expect(result.failures.examples).toEqual([]);
    expect(result).toMatchObject({ accepted: 24, failed: 0, aborted: false });
    expect(proxy.connections()).toBe(24);
    expect(countRows(relay.db, 'messages')).toBe(24);
    expect(result.perConnection).not.toBeNull();
    expect(result.perConnection?.connections).toBe(24);
    expect(result.perConnection?.pipelining).toBe(true);
    expect(result.perConnection?.connectToGreetingMs).toHaveLength(24);
    expect(result.perConnection?.connectToAcceptedMs).toHaveLength(24);
    expect(result.latenciesMs).toHaveLength(24);
    // The whole connection includes the end of DATA to 250 of its message.
    expect(Math.min(...result.perConnection!.connectToAcceptedMs)).toBeGreaterThanOrEqual(Math.min(...result.latenciesMs));
  });

  it('reused sends every message over the clients’ first connections', async () => {
    const relay = await startRelay();
    const proxy = await countingProxy(relay.port);
    const result = await sendThrough('reused', proxy.port, 24, 4);

    expect(result).toMatchObject({ accepted: 24, failed: 0, aborted: false, perConnection: null });
    expect(proxy.connections()).toBe(4);
    expect(countRows(relay.db, 'messages')).toBe(24);
  });

  it('per-message counts a refused connection as that message failing, and goes on', async () => {
    const relay = await startRelay();
    const port = relay.port;
    await relay.stop();
    const result = await sendThrough('per-message', port, 6, 2);

    expect(result).toMatchObject({ accepted: 0, failed: 6, aborted: false });
    expect(result.failures.byStage.connection).toBe(6);
    expect(result.perConnection?.connections).toBe(0);
  });
});

/**
 * Runs a benchmark script as `npm run bench` does (tsx), on the dist/ the test setup built, and
 * returns its JSON report. A run with problems exits 1 but still prints the report, whose
 * `problems` the tests check, so they say what went wrong.
 */
async function runBench(script: string, args: string[]): Promise<Record<string, unknown>> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', script, ...args, '--no-build', '--json'], {
      cwd: PROJECT_ROOT,
      timeout: 90_000,
      maxBuffer: 16 * 2 ** 20,
    }));
  } catch (error) {
    const { stdout: printed, stderr } = error as { stdout?: string; stderr?: string };
    if (!printed?.trim().startsWith('{')) throw new Error(`${script} failed: ${String(error)}\n${stderr ?? ''}`);
    stdout = printed;
  }
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** What the run found wrong, but for a store on tmpfs: a note about the machine, not the run. */
function problemsOf(report: Record<string, unknown>): string[] {
  const problems = report.problems as string[] | undefined;
  return (problems ?? ['the report has no "problems" list']).filter((problem) => !problem.includes('tmpfs'));
}

const LATENCY = { p50: expect.any(Number), p90: expect.any(Number), p99: expect.any(Number), max: expect.any(Number) };
const PER_MESSAGE_COSTS = { connections: 30, connectToGreetingMs: LATENCY, connectToAcceptedMs: LATENCY };
const TARGET = { targetP99Ms: 20, targetClients: 50, measuredP99Ms: expect.any(Number), measuredClients: 3, met: expect.any(Boolean), atTargetClients: false };

describe('npm run bench -- --connection per-message (a real relay process on port 0)', () => {
  it('submit: every message accepted, the report names the mode and has the connection latencies', async () => {
    const report = await runBench('bench/submit.ts', ['--connection', 'per-message', '--messages', '30', '--warmup', '3', '--concurrency', '3', '--time-limit', '40']);

    expect(report).toMatchObject({
      settings: { connection: 'per-message', messages: 30, concurrency: 3, pipelining: true },
      accepted: 30,
      failed: 0,
      unsent: 0,
      stoppedByTimeLimit: false,
      messagesPerSecond: expect.any(Number),
      latencyMs: LATENCY,
      connectionCosts: PER_MESSAGE_COSTS,
      latencyTarget: TARGET,
      warmup: { accepted: 3, failed: 0 },
      relay: { stoppedCleanly: true, exitCode: 0, storedMessages: 33 },
    });
    expect(problemsOf(report)).toEqual([]);
  }, 120_000);

  it('e2e: every message accepted and delivered to the sink, the mode named in the report', async () => {
    const report = await runBench('bench/e2e.ts', ['--connection', 'per-message', '--messages', '30', '--warmup', '3', '--concurrency', '3', '--time-limit', '60']);

    expect(report).toMatchObject({
      settings: { connection: 'per-message', messages: 30, concurrency: 3 },
      accepted: 30,
      failed: 0,
      unsent: 0,
      delivered: 30,
      missing: 0,
      deliveredPerSecond: expect.any(Number),
      submission: { latencyMs: LATENCY, connectionCosts: PER_MESSAGE_COSTS, latencyTarget: TARGET },
    });
    expect(problemsOf(report)).toEqual([]);
  }, 120_000);
});
