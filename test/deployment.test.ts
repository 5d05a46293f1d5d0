import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { environmentVariables, loadConfig } from '../src/config/load.js';
import { PROJECT_ROOT } from './support/child-relay.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';
import { freePort } from './support/free-port.js';

/**
 * No container engine runs here, so the image is tested from the outside in: the variables the
 * Dockerfile and compose.yaml set are ones Rebound reads, and the image's own start command and
 * health check, run with that environment, start a relay and report it healthy.
 */
const dockerfile = readFileSync(join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
const compose = readFileSync(join(PROJECT_ROOT, 'compose.yaml'), 'utf8');

/** The runtime stage's ENV block: KEY=value pairs, continued with backslashes. */
function dockerfileEnv(): Record<string, string> {
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const block = /\nENV ((?:[^\n]*\\\n)*[^\n]*)/.exec(runtime)?.[1] ?? '';
  return Object.fromEntries(block.split(/\\\n/).map((part) => part.trim().split('=') as [string, string]));
}

/** One service's environment in compose.yaml (`KEY: value` lines under `environment:`). */
function composeEnv(service: string): Record<string, string> {
  const lines = compose.split('\n');
  const start = lines.indexOf(`  ${service}:`);
  if (start === -1) throw new Error(`no service ${service} in compose.yaml`);
  const env: Record<string, string> = {};
  // The service's lines: until the next line indented two spaces or less.
  for (let i = start + 1; i < lines.length && !/^ {0,2}\S/.test(lines[i] ?? ''); i++) {
    const match = /^ {6}(REBOUND_[A-Z_]+): (.+)$/.exec(lines[i] ?? '');
    if (match) env[match[1] as string] = (match[2] as string).trim();
  }
  return env;
}

/** A JSON array instruction (ENTRYPOINT, CMD, HEALTHCHECK ... CMD), with /app read as the project. */
function instruction(pattern: RegExp): string[] {
  const json = pattern.exec(dockerfile)?.[1];
  if (!json) throw new Error(`no ${pattern} in the Dockerfile`);
  return (JSON.parse(json) as string[]).map((part) => part.replace(/^\/app\//, `${PROJECT_ROOT}/`));
}

let postgres: TestPostgres;
beforeAll(async () => {
  postgres = await startPostgres();
}, 60_000);
afterAll(async () => {
  await postgres?.stop();
});

describe('the container image, outside a container', () => {
  it('sets only variables Rebound reads, in the Dockerfile and in compose.yaml, and they make a valid configuration', () => {
    const known = new Set(environmentVariables().map((variable) => variable.name));
    const image = dockerfileEnv();
    const relays = [composeEnv('relay-a'), composeEnv('relay-b')];
    expect(Object.keys(image)).toContain('REBOUND_ADMIN_HOST');
    expect(Object.keys(relays[0] ?? {})).toContain('REBOUND_STORE_SHARED_URL');
    for (const name of [...Object.keys(image), ...relays.flatMap((env) => Object.keys(env))]) {
      if (name.startsWith('REBOUND_')) expect(known, `${name} is not a variable Rebound reads`).toContain(name);
    }
    for (const env of relays) {
      const config = loadConfig({ env: { ...image, ...env } });
      expect(config).toMatchObject({
        submission: { host: '0.0.0.0', port: 2525 },
        inbound: { host: '0.0.0.0', port: 2526 },
        admin: { host: '0.0.0.0', port: 8025 },
        store: { path: '/data/rebound.sqlite', shared: { url: 'postgres://rebound:change-me@postgres:5432/rebound' } },
      });
    }
    expect(new Set(relays.map((env) => env.REBOUND_STORE_SHARED_NODE_NAME)).size).toBe(2);
    expect(new Set(relays.map((env) => env.REBOUND_RETURN_PATH_DOMAIN)).size).toBe(2);
    // Every listener's port is published (EXPOSE) and in the health check's reach.
    expect(/\nEXPOSE ([\d ]+)\n/.exec(dockerfile)?.[1]?.split(' ')).toEqual(['2525', '2526', '8025']);
  });

  it('starts with the image\'s command and environment, passes the image\'s health check, and fails it once stopped', async () => {
    const temp = makeTempDir();
    // The image's environment, with what must differ here: servers on loopback only, free ports,
    // a temp store, and the test's PostgreSQL for the compose file's.
    const env: Record<string, string> = {
      ...dockerfileEnv(),
      ...composeEnv('relay-a'),
      REBOUND_STORE_PATH: join(temp.dir, 'rebound.sqlite'),
      REBOUND_SUBMISSION_HOST: '127.0.0.1',
      REBOUND_SUBMISSION_PORT: String(await freePort()),
      REBOUND_INBOUND_HOST: '127.0.0.1',
      REBOUND_INBOUND_PORT: String(await freePort()),
      REBOUND_ADMIN_HOST: '127.0.0.1',
      REBOUND_ADMIN_PORT: String(await freePort()),
      REBOUND_STORE_SHARED_URL: postgres.url,
      REBOUND_LOG_LEVEL: 'info',
    };
    const [program, ...args] = [...instruction(/\nENTRYPOINT (\[.*\])\n/), ...instruction(/\nCMD (\[.*\])\n/)];
    const relay = spawn(program === 'node' ? process.execPath : (program as string), args, { cwd: temp.dir, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    relay.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    relay.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => relay.once('exit', (code) => resolve(code)));
    try {
      await waitFor('the relay started', () => output, (text) => text.includes('rebound started') && text.includes('connected to the shared store'), 15_000);
      const [checkProgram, ...checkArgs] = instruction(/\nHEALTHCHECK [^\n]*CMD (\[.*\])\n/);
      const check = (): Promise<{ code: number; stdout: string; stderr: string }> =>
        promisify(execFile)(checkProgram === 'node' ? process.execPath : (checkProgram as string), checkArgs, { cwd: temp.dir, env: { PATH: process.env.PATH ?? '', ...env } }).then(
          ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
          (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
        );
      const healthy = await check();
      expect(healthy).toMatchObject({ code: 0, stdout: `healthy: http://127.0.0.1:${env.REBOUND_ADMIN_PORT}/healthz\n` });
      relay.kill('SIGTERM');
      expect(await exited).toBe(0);
      const down = await check();
      expect(down.code).toBe(1);
      expect(down.stderr).toMatch(/^no answer from http:\/\/127\.0\.0\.1:\d+\/healthz \(connect ECONNREFUSED .*\); is the relay running/);
    } finally {
      relay.kill('SIGKILL');
      temp.remove();
    }
  }, 40_000);
});
