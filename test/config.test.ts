import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, environmentVariables, loadConfig } from '../src/config/load.js';
import { hashPassword } from '../src/submission/passwords.js';
import { CLI, PROJECT_ROOT } from './support/child-relay.js';
import { makeTempDir } from './support/temp-dir.js';

const run = promisify(execFile);
const temps: Array<() => void> = [];
afterEach(() => {
  for (const remove of temps.splice(0)) remove();
});

function configFile(content: string | object): string {
  const temp = makeTempDir('rebound-config-');
  temps.push(temp.remove);
  const file = join(temp.dir, 'rebound.json');
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

function errorOf(load: () => unknown): string {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('config: defaults, file, environment', () => {
  it('runs on the embedded defaults: loopback submission on 2525, SQLite under ./data', () => {
    const config = loadConfig({ env: {} });
    expect(config.submission).toMatchObject({
      host: '127.0.0.1',
      port: 2525,
      allowNetworks: ['127.0.0.0/8', '::1/128'],
      maxMessageSize: 25 * 1024 * 1024,
      maxRecipients: 1000,
      campaignHeader: 'X-Campaign-ID',
      tls: { key: null, cert: null },
    });
    expect(config.store).toEqual({ path: 'data/rebound.sqlite', synchronous: 'FULL', groupCommitMaxMessages: 256, retention: { bodyDays: 7, historyDays: 90, unmatchedReportDays: 7 }, shared: { url: null, nodeName: null, catchUpSeconds: 5 } });
    expect(config.hostname.length).toBeGreaterThan(0);
  });

  it('merges an override file key by key, and the environment over both', () => {
    const file = configFile({ hostname: 'mx.example', submission: { port: 2600, allowNetworks: ['10.0.0.0/8'] } });
    const config = loadConfig({
      file,
      env: { REBOUND_SUBMISSION_MAX_RECIPIENTS: '50', REBOUND_SUBMISSION_ALLOW_NETWORKS: '192.0.2.0/24, ::1/128' },
    });
    expect(config.hostname).toBe('mx.example');
    expect(config.submission.port).toBe(2600);
    expect(config.submission.host).toBe('127.0.0.1');
    expect(config.submission.maxRecipients).toBe(50);
    expect(config.submission.allowNetworks).toEqual(['192.0.2.0/24', '::1/128']);
  });

  it('finds the override file through REBOUND_CONFIG', () => {
    const file = configFile({ submission: { port: 2700 } });
    expect(loadConfig({ env: { REBOUND_CONFIG: file } }).submission.port).toBe(2700);
  });

  it('takes delivery routes as JSON and local addresses as a list from the environment', () => {
    const config = loadConfig({
      env: { REBOUND_DELIVERY_ROUTES: '{"*":"127.0.0.1:2600"}', REBOUND_DELIVERY_LOCAL_ADDRESSES: '127.0.0.2,127.0.0.3', REBOUND_DELIVERY_ENABLED: 'false' },
    });
    expect(config.delivery).toMatchObject({ routes: { '*': '127.0.0.1:2600' }, localAddresses: ['127.0.0.2', '127.0.0.3'], enabled: false });
  });

  it('has DNS canaries by default, takes them from the environment, [] to turn the check off, and names a bad one', () => {
    expect(loadConfig({ env: {} }).delivery.dns).toMatchObject({ canaries: ['gmail.com', 'outlook.com', 'yahoo.com'], canaryRecheckSeconds: 10 });
    expect(loadConfig({ env: { REBOUND_DELIVERY_DNS_CANARIES: 'example.com, example.org' } }).delivery.dns.canaries).toEqual(['example.com', 'example.org']);
    expect(loadConfig({ file: configFile({ delivery: { dns: { canaries: [] } } }), env: {} }).delivery.dns.canaries).toEqual([]);
    expect(errorOf(() => loadConfig({ file: configFile({ delivery: { dns: { canaries: ['not a name'] } } }), env: {} }))).toMatch(
      /delivery\.dns\.canaries\.0: write a domain name such as gmail\.com/,
    );
  });

  it('takes auth users as JSON from the environment', async () => {
    const users = [{ username: 'app', passwordHash: await hashPassword('pw') }];
    const config = loadConfig({ env: { REBOUND_SUBMISSION_AUTH_USERS: JSON.stringify(users) } });
    expect(config.submission.auth.users).toEqual(users);
  });

  it('derives one environment variable per leaf key of the defaults', () => {
    const names = environmentVariables().map((variable) => variable.name);
    expect(names).toContain('REBOUND_STORE_PATH');
    expect(names).toContain('REBOUND_SUBMISSION_MAX_MESSAGE_SIZE');
    expect(names).toContain('REBOUND_SUBMISSION_TLS_CERT');
    expect(new Set(names).size).toBe(names.length);
  });
});

describe('config: errors name the key and what is wrong', () => {
  it.each([
    [{ submission: { port: 70000 } }, /submission\.port: .*65535.* \(in .*rebound\.json\)/],
    [{ submission: { port: 'abc' } }, /submission\.port: .*expected number/],
    [{ submission: { prot: 25 } }, /submission\.prot: unknown key/],
    [{ submission: { allowNetworks: ['10.0.0.0/33'] } }, /submission\.allowNetworks\.0: not a CIDR network/],
    [{ submission: { auth: { users: [{ username: 'a', passwordHash: 'plain' }] } } }, /submission\.auth\.users\.0\.passwordHash: not a password hash made by `rebound passwd`/],
    [{ submission: { tls: { key: '/x/key.pem' } } }, /submission\.tls: set both tls\.key and tls\.cert/],
    [{ store: { synchronous: 'OFF' } }, /store\.synchronous: .*"FULL"/],
    [{ log: { level: 'loud' } }, /log\.level: /],
    [{ delivery: { routes: { 'example.com': 'host:port:extra' } } }, /delivery\.routes\.example\.com: /],
    [{ delivery: { localAddresses: ['10.0.0.300'] } }, /delivery\.localAddresses\.0: not an IP address/],
    [{ delivery: { retry: { scheduleSeconds: [] } } }, /delivery\.retry\.scheduleSeconds: /],
    [{ suppression: { categories: ['bad-mailbox', 'bad-mood'] } }, /suppression\.categories\.1: /],
  ])('rejects %j', (content, expected) => {
    expect(errorOf(() => loadConfig({ file: configFile(content), env: {} }))).toMatch(expected);
  });

  it('names the environment variable that set a bad value', () => {
    expect(errorOf(() => loadConfig({ env: { REBOUND_SUBMISSION_PORT: 'twenty-five' } }))).toMatch(
      /submission\.port: .* \(from REBOUND_SUBMISSION_PORT\)/,
    );
  });

  it('says where JSON is broken, and when a file is missing or unreadable', () => {
    expect(errorOf(() => loadConfig({ file: configFile('{ "submission": { "port": 25, } }'), env: {} }))).toMatch(
      /rebound\.json is not valid JSON: /,
    );
    expect(errorOf(() => loadConfig({ file: '/nonexistent/rebound.json', env: {} }))).toMatch(
      /cannot read config file \/nonexistent\/rebound\.json \(ENOENT\)/,
    );
    expect(errorOf(() => loadConfig({ file: configFile('[1, 2]'), env: {} }))).toMatch(/must hold a JSON object/);
  });

  it('checks that the TLS files can be read', () => {
    const file = configFile({ submission: { tls: { key: '/nonexistent/key.pem', cert: '/nonexistent/cert.pem' } } });
    expect(errorOf(() => loadConfig({ file, env: {} }))).toMatch(/submission\.tls\.key: cannot read \/nonexistent\/key\.pem \(ENOENT\)/);
  });

  it('stops `rebound start` with exit code 2 and the key named, without a stack trace', async () => {
    const file = configFile({ submission: { port: -1, maxRecipients: 0 } });
    const result = await run(process.execPath, [CLI, 'start', '--config', file], { cwd: PROJECT_ROOT }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^rebound: invalid configuration:\n {2}submission\.port: .*\n {2}submission\.maxRecipients: /);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
