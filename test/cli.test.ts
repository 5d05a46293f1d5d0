import { runRebound as rebound } from './support/cli.js';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyPassword } from '../src/submission/passwords.js';
import { CLI, PROJECT_ROOT, startChildRelay } from './support/child-relay.js';
import { startTestRelay, writeTestConfig, type TestRelay } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const execFileAsync = promisify(execFile);


const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe('rebound CLI', () => {
  it.each([[[]], [['start']], [['queue']], [['queue', 'hold']], [['passwd']], [['config']]])('prints help for %j --help', async (args) => {
    const result = await rebound([...args, '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: rebound/);
  });

  it('says which command is unknown', async () => {
    const result = await rebound(['strat']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("unknown command 'strat'");
  });

  it('`passwd` hashes a password read from stdin, and the hash verifies', async () => {
    const result = await rebound(['passwd'], 'correct horse\n');
    expect(result.code).toBe(0);
    const hash = result.stdout.trim();
    expect(hash).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(await verifyPassword('correct horse', hash)).toBe(true);
    expect(await verifyPassword('wrong horse', hash)).toBe(false);
  });

  it('`passwd` refuses empty input with a message', async () => {
    const result = await rebound(['passwd'], '');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^rebound: no password on stdin/);
  });

  it('`queue` prints counts by status and the oldest waiting entries, as text and JSON', async () => {
    const relay: TestRelay = await startTestRelay();
    cleanups.push(() => relay.stop());
    const configFile = writeTestConfig(relay.dir, { store: { path: relay.config.store.path } });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true });
    const first = await transport.sendMail({ from: 'a@shop.example', to: ['q1@example.net', 'q2@example.net'], text: 'x' });
    await transport.sendMail({ from: 'b@shop.example', to: 'q3@example.org', text: 'y' });

    const text = await rebound(['queue', '--config', configFile, '--limit', '2']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('messages: 2');
    expect(text.stdout).toMatch(/queued\s+3\n/);
    expect(text.stdout).toContain('oldest waiting (2):');
    expect(text.stdout).toContain(`${first.response.split(' ').pop()}`);
    expect(text.stdout).toContain('<a@shop.example> -> <q1@example.net>');
    expect(text.stdout).not.toContain('q3@example.org');

    const json = JSON.parse((await rebound(['queue', '--config', configFile, '--json'])).stdout) as {
      messages: number;
      recipientsByStatus: Record<string, number>;
      oldest: Array<{ address: string }>;
    };
    expect(json.messages).toBe(2);
    expect(json.recipientsByStatus).toMatchObject({ queued: 3, delivered: 0 });
    expect(json.oldest.map((entry) => entry.address)).toEqual(['q1@example.net', 'q2@example.net', 'q3@example.org']);
  });

  it('`queue hold|release|delete|bounce` change the mail they select, print what changed and what was skipped, and audit cli:<user>', async () => {
    const relay: TestRelay = await startTestRelay(); // delivery off: mail stays queued
    cleanups.push(() => relay.stop());
    const configFile = join(relay.dir, 'config.json');
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true });
    const queueIdOf = (info: { response: string }): string => info.response.split(' ').pop() as string;
    const news = queueIdOf(await transport.sendMail({ from: 'news@shop.example', to: ['a@hold.test', 'b@hold.test'], text: 'x' }));
    const tx = queueIdOf(await transport.sendMail({ from: 'tx@shop.example', to: 'c@other.test', text: 'y' }));
    const gone = queueIdOf(await transport.sendMail({ from: 'tx@shop.example', to: ['d@gone.test', 'e@gone.test'], text: 'z' }));
    const writer = new BetterSqlite3(relay.config.store.path);
    cleanups.push(() => {
      writer.close();
    });
    writer.prepare(`UPDATE recipients SET status = 'sending' WHERE address = 'e@gone.test'`).run();
    const statuses = () => Object.fromEntries((relay.db.prepare('SELECT address, status FROM recipients ORDER BY id').all() as Array<{ address: string; status: string }>).map((r) => [r.address, r.status]));

    expect(await rebound(['queue', 'hold', '--domain', 'HOLD.test', '--config', configFile])).toEqual({ code: 0, stdout: 'hold (domain hold.test): 2 recipient(s) put on hold\n', stderr: '' });
    // `queue` alone still prints the summary, held mail among what waits.
    const summary = await rebound(['queue', '--config', configFile]);
    expect(summary.stdout).toMatch(/^messages: 3\nrecipients by status:\n  queued     2\n  sending    1\n  deferred   0\n  held       2\n/);
    expect(summary.stdout).toContain('  deleted    0\n');
    expect(summary.stdout).toMatch(new RegExp(`${news}  \\S+  held     attempts=0  <news@shop.example> -> <a@hold.test>`));

    const released = await rebound(['queue', 'release', '--sender', '<NEWS@shop.example>', '--json', '--config', configFile]);
    expect(JSON.parse(released.stdout)).toMatchObject({ action: 'release', selector: { by: 'sender', sender: 'NEWS@shop.example' }, recipients: 2, skipped: { sending: 0 }, actor: `cli:${userInfo().username}` });
    expect(await rebound(['queue', 'delete', '--queue-id', gone, '--config', configFile])).toEqual({
      code: 0,
      stdout: `delete (queue id ${gone}): 1 recipient(s) deleted\nskipped: 1 recipient(s) being sent now, left to delivery; run again once they are back in the queue if they are deferred\n`,
      stderr: '',
    });
    // Two ids after one flag, or the flag again: both work.
    const bounced = await rebound(['queue', 'bounce', '--queue-id', news, '--queue-id', tx, '--config', configFile]);
    expect(bounced.stdout).toBe('bounce (2 queue ids): 3 recipient(s) bounced\n');
    expect(statuses()).toEqual({ 'a@hold.test': 'bounced', 'b@hold.test': 'bounced', 'c@other.test': 'bounced', 'd@gone.test': 'deleted', 'e@gone.test': 'sending' });
    expect(relay.db.prepare('SELECT action, selector, value, actor, recipients, skipped_sending AS skipped FROM queue_audit ORDER BY id').all()).toEqual([
      { action: 'hold', selector: 'domain', value: 'hold.test', actor: `cli:${userInfo().username}`, recipients: 2, skipped: 0 },
      { action: 'release', selector: 'sender', value: 'NEWS@shop.example', actor: `cli:${userInfo().username}`, recipients: 2, skipped: 0 },
      { action: 'delete', selector: 'queue-ids', value: gone, actor: `cli:${userInfo().username}`, recipients: 1, skipped: 1 },
      { action: 'bounce', selector: 'queue-ids', value: `${news},${tx}`, actor: `cli:${userInfo().username}`, recipients: 3, skipped: 0 },
    ]);
    expect(relay.db.prepare(`SELECT count(*) FROM suppressions`).pluck().get()).toBe(0);
  });

  it('`queue` actions refuse no selector, two, an unknown queue id, a malformed domain or sender, and an unknown action, changing nothing (exit 2)', async () => {
    const relay: TestRelay = await startTestRelay();
    cleanups.push(() => relay.stop());
    const configFile = join(relay.dir, 'config.json');
    const info = await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from: 'app@shop.example', to: 'a@example.test', text: 'x' });
    const queueId = info.response.split(' ').pop() as string;
    const refusals: Array<[string[], string]> = [
      [['hold'], 'select the mail: give --queue-id ID..., --domain DOMAIN or --sender ADDRESS (exactly one)'],
      [['hold', '--domain', 'example.test', '--sender', 'app@shop.example'], 'give only one of --queue-id, --domain, --sender (got --domain and --sender)'],
      [['delete', '--queue-id', queueId, 'NOSUCHQUEUEID00000'], 'no message with queue id "NOSUCHQUEUEID00000"; nothing was changed (`rebound queue` or GET /v1/queue lists what is waiting)'],
      [['bounce', '--domain', 'exa mple.test'], 'domain "exa mple.test" is not a domain name; give one such as example.com'],
      [['hold', '--domain', 'a@example.test'], 'domain "a@example.test" is an address; give only the part after @ (example.test), or select by sender'],
      [['release', '--sender', 'nobody'], 'sender "nobody" is not an email address (local@domain); give one such as app@shop.example, or <> for the null sender'],
      [['hodl', '--domain', 'example.test'], 'unknown queue action "hodl"; use hold, release, delete or bounce (rebound queue --help)'],
      [['--domain', 'example.test'], 'unknown option "--domain" for rebound queue; see rebound queue --help'],
    ];
    for (const [args, error] of refusals) {
      const result = await rebound(['queue', ...args, '--config', configFile]);
      expect([args, result.code, result.stderr]).toEqual([args, 2, `rebound: ${error}\n`]);
    }
    expect(relay.db.prepare('SELECT status FROM recipients').pluck().all()).toEqual(['queued']);
    expect(relay.db.prepare('SELECT count(*) FROM queue_audit').pluck().get()).toBe(0);
  });

  it('`queue` explains a missing store instead of creating one', async () => {
    const temp = makeTempDir();
    cleanups.push(temp.remove);
    const result = await rebound(['queue', '--config', writeTestConfig(temp.dir)]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^rebound: no store at .*rebound\.sqlite yet \(store\.path\); start the relay once/);
  });

  it('`queue --limit` rejects a value that is not a positive number', async () => {
    const result = await rebound(['queue', '--limit', 'many']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--limit must be a whole number above 0, got "many"');
  });

  it('`start` on a port that is taken exits 2 and names the key to change', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const temp = makeTempDir();
    cleanups.push(temp.remove);
    const port = (blocker.address() as { port: number }).port;
    const result = await rebound(['start', '--config', writeTestConfig(temp.dir, { submission: { port } })]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(new RegExp(`submission cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\); pick another submission\\.port`));
  });

  it('`npm start` stops cleanly when npm is sent SIGTERM (the script execs the relay, so npm passes it on)', async () => {
    const temp = makeTempDir();
    cleanups.push(temp.remove);
    const config = writeTestConfig(temp.dir, { log: { level: 'info' } });
    // --ignore-scripts skips prestart's build: the tests' global setup has built dist/ already.
    const relay = await startChildRelay(config, 30_000, { file: 'npm', args: ['start', '--ignore-scripts', '--', '--config', config] });
    cleanups.push(() => {
      if (!relay.logs.some((l) => l.msg === 'rebound stopped; store closed')) relay.process.kill('SIGKILL');
    });
    await waitFor('the relay to have started', () => relay.logs.map((l) => l.msg), (messages) => messages.includes('rebound started'), 10_000);
    relay.process.kill('SIGTERM');
    await waitFor('the relay to stop on its own', () => relay.logs.map((l) => l.msg), (messages) => messages.includes('rebound stopped; store closed'), 10_000);
    expect(relay.logs.find((l) => l.msg === 'stopping: no new mail, finishing messages in DATA')).toMatchObject({ signal: 'SIGTERM' });
  });

  it('`classify` prints how a reply is classified, as JSON', async () => {
    const result = await rebound(['classify', '550 5.1.1 <x@y.example>: Recipient address rejected: User unknown']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ severity: 'permanent', type: 'hard', category: 'bad-mailbox', code: 550, enhancedCode: '5.1.1' });
    const dsn = await rebound(['classify', '--status', '4.2.2', 'smtp; mailbox is over quota']);
    expect(JSON.parse(dsn.stdout)).toMatchObject({ severity: 'temporary', type: 'soft', category: 'quota-issues', code: null, enhancedCode: '4.2.2' });
  });

  it('`parse` prints the public JSON shape for one report, and JSON Lines with "file" for several', async () => {
    const fixture = (name: string) => `${PROJECT_ROOT}/fixtures/dsn/${name}`;
    const one = await rebound(['parse', fixture('postfix-delayed.eml')]);
    expect(one.code).toBe(0);
    expect(JSON.parse(one.stdout)).toEqual({
      kind: 'delay',
      recipients: [
        {
          recipient: 'oliver@example.co.uk',
          action: 'delayed',
          status: '4.4.1',
          diagnosticCode: 'X-Postfix; connect to mx.example.co.uk[203.0.113.33]:25: Connection timed out',
          remoteMta: null,
          severity: 'temporary',
          type: 'soft',
          category: 'message-expired',
          stage: 'connection',
        },
      ],
    });
    const many = await rebound(['parse', fixture('postfix-delayed.eml'), fixture('arf-complaint.eml'), fixture('empty.eml')]);
    const lines = many.stdout.trim().split('\n').map((line) => JSON.parse(line) as { file: string; kind: string });
    expect(lines.map((line) => [Object.keys(line)[0], line.file.split('/').pop(), line.kind])).toEqual([
      ['file', 'postfix-delayed.eml', 'delay'],
      ['file', 'arf-complaint.eml', 'complaint'],
      ['file', 'empty.eml', 'unknown'],
    ]);
    const missing = await rebound(['parse', '/nonexistent.eml']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('rebound: cannot read /nonexistent.eml (ENOENT)\n');
    const compact = await rebound(['parse', '--json', fixture('postfix-delayed.eml')]);
    expect(compact.stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(compact.stdout)).toEqual(JSON.parse(one.stdout));
  });

  describe('each command loads only what it uses (start-up time)', () => {
    const RECORDER = `${PROJECT_ROOT}/test/support/record-imports.mjs`;
    /** The URLs of the modules `rebound ARGS` imports. */
    async function loadedBy(args: string[]): Promise<string[]> {
      const temp = makeTempDir('rebound-imports-');
      cleanups.push(temp.remove);
      const log = `${temp.dir}/imports.log`;
      await execFileAsync(process.execPath, ['--import', RECORDER, CLI, ...args], {
        cwd: PROJECT_ROOT,
        env: { ...process.env, REBOUND_CONFIG: '', REBOUND_IMPORT_LOG: log },
      });
      return readFileSync(log, 'utf8').trim().split('\n');
    }
    const packages = (urls: string[]): string[] =>
      [...new Set(urls.flatMap((url) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1] ?? []))].sort();
    const ours = (urls: string[]): string[] => urls.flatMap((url) => /\/dist\/(.+)\.js$/.exec(url)?.[1] ?? []);

    /** Dependencies that take tens of milliseconds each to load. */
    const HEAVY = ['zod', 'libmime', 'mailparser', 'better-sqlite3', 'pino', 'smtp-server', 'nodemailer', 'fastify', 'exceljs', 'csv-parse', 'prom-client'];

    it('`--help` loads commander and the command definitions, no heavy dependency', async () => {
      const urls = await loadedBy(['--help']);
      expect(packages(urls)).toContain('commander');
      expect(packages(urls).filter((name) => HEAVY.includes(name))).toEqual([]);
      expect(ours(urls).filter((module) => /^(relay|logger|config\/|store\/database|bounces\/|inbound\/|submission\/|delivery\/)/.test(module))).toEqual([]);
    });

    it('`parse` loads the parser, not the relay, the store, the logger or the configuration loader', async () => {
      const urls = await loadedBy(['parse', `${PROJECT_ROOT}/fixtures/dsn/postfix-delayed.eml`]);
      expect(ours(urls)).toContain('bounces/report/index');
      // Not zod either (the shipped rules and patterns were checked at build time), nor libmime
      // (header-values.ts reads the usual header values itself).
      expect(packages(urls).filter((name) => HEAVY.includes(name))).toEqual([]);
      expect(ours(urls).filter((module) => /^(relay|logger|config\/|store\/database|inbound\/|submission\/|delivery\/)/.test(module))).toEqual([]);
    });
  });

  it('`config --env` lists the environment variables, and `config` hides password hashes', async () => {
    const env = await rebound(['config', '--env']);
    expect(env.stdout).toMatch(/REBOUND_SUBMISSION_PORT\s+submission\.port/);
    const { stdout } = await execFileAsync(process.execPath, [CLI, 'config'], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, REBOUND_CONFIG: '', REBOUND_SUBMISSION_AUTH_USERS: '[{"username":"u","passwordHash":"scrypt$1$1$1$AA==$AA=="}]' },
    });
    expect(JSON.parse(stdout).submission.auth.users).toEqual([{ username: 'u', passwordHash: '(set)' }]);
  });
});
