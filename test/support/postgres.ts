import { execFile, execFileSync } from 'node:child_process';
import { accessSync, appendFileSync, chownSync, constants, existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import pg from 'pg';
import { freePort } from './free-port.js';

/** A throwaway PostgreSQL cluster on 127.0.0.1, for the shared store's tests (issue 14). */
export interface TestPostgres {
  /** postgres://rebound@127.0.0.1:PORT/postgres — the superuser, trusted on loopback. */
  url: string;
  port: number;
  /** Stops the server now (`pg_ctl stop -m immediate`) and removes its directory; safe to call twice. */
  stop(): Promise<void>;
  /** Stops the server the way an operator would (`-m fast`), keeping its data: "PostgreSQL is down". */
  stopServer(): Promise<void>;
  /** Starts the stopped server again on the same data and port; resolves once it accepts connections. */
  startServer(): Promise<void>;
}

/** The superuser initdb creates; tests connect as it. */
const SUPERUSER = 'rebound';
/** Every wait on a PostgreSQL program is bounded by this. */
const WAIT_MS = 20_000;
/** Where Debian's packages put each major version's programs (not on PATH). */
const DEBIAN_ROOT = '/usr/lib/postgresql';
const NO_BINARIES =
  `no PostgreSQL programs (initdb, pg_ctl, postgres) on PATH or under ${DEBIAN_ROOT}/*/bin: ` +
  "install Debian's postgresql package (.ci/run does)";

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** A directory holding initdb, pg_ctl and postgres side by side. */
function holdsServerPrograms(dir: string): boolean {
  return ['initdb', 'pg_ctl', 'postgres'].every((name) => isExecutable(join(dir, name)));
}

/** Where to look for PostgreSQL's programs; tests of the lookup itself pass their own. */
export interface PostgresSearch {
  /** A PATH-style list of directories; process.env.PATH by default. */
  path?: string;
  /** Holds one <version>/bin per installed major version; /usr/lib/postgresql by default. */
  debianRoot?: string;
}

/**
 * The directory of PostgreSQL's server programs: initdb's on PATH (followed through symlinks, as
 * PATH may hold only initdb and pg_ctl linked from the real directory), else the newest
 * <debianRoot>/<version>/bin. Null when there is none.
 */
export function findPostgresBinDir({ path = process.env.PATH ?? '', debianRoot = DEBIAN_ROOT }: PostgresSearch = {}): string | null {
  for (const dir of path.split(delimiter)) {
    if (!dir || !isExecutable(join(dir, 'initdb'))) continue;
    const real = dirname(realpathSync(join(dir, 'initdb')));
    if (holdsServerPrograms(real)) return real;
  }
  const versions = existsSync(debianRoot)
    ? readdirSync(debianRoot)
        .filter((name) => /^\d+(\.\d+)?$/.test(name))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  for (const version of versions) {
    const dir = join(debianRoot, version, 'bin');
    if (holdsServerPrograms(dir)) return dir;
  }
  return null;
}

/** PostgreSQL refuses to run as root, so as root its programs run as Debian's `postgres` user. */
function serverUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error("running as root but there is no user postgres to run PostgreSQL as: install Debian's postgresql package (.ci/run does)");
  }
}

/** Whether startPostgres() can find PostgreSQL's programs here. */
export function postgresAvailable(): boolean {
  return findPostgresBinDir() !== null;
}

function logTail(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no server log)';
  }
}

/** Runs one PostgreSQL program, as `postgres` when we are root, killed after WAIT_MS. */
function run(binDir: string, asPostgres: boolean, cwd: string, program: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  const file = asPostgres ? 'runuser' : join(binDir, program);
  const argv = asPostgres ? ['-u', 'postgres', '--', join(binDir, program), ...args] : args;
  // The caller's PG* variables (PGDATA, PGPORT, PGHOST) must not steer the throwaway cluster.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG')));
  return new Promise((resolve) => {
    execFile(file, argv, { cwd, env, timeout: WAIT_MS + 5_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      resolve({ ok: !error, output: `${stdout}${stderr}${error && !stderr ? error.message : ''}`.trim() });
    });
  });
}

/** Tries a real connection, for the word from outside that the server is up (bounded). */
async function waitUntilConnectable(url: string, logFile: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  let last = '';
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (error) {
      last = (error as Error).message;
    } finally {
      await client.end().catch(() => undefined);
    }
    if (Date.now() > deadline) throw new Error(`PostgreSQL at ${url} did not accept connections within ${WAIT_MS} ms (${last}); server log:\n${logTail(logFile)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Clusters still running, stopped at once should the test process exit without stop(). */
const running = new Set<() => void>();
process.once('exit', () => {
  for (const stopNow of running) stopNow();
});

/**
 * Creates and starts a throwaway cluster: initdb into a fresh temp dir (trust for loopback and
 * the socket in that dir only), then postgres on 127.0.0.1 and a free port with fsync off.
 */
export async function startPostgres(search: PostgresSearch = {}): Promise<TestPostgres> {
  const binDir = findPostgresBinDir(search);
  if (!binDir) throw new Error(NO_BINARIES);
  const owner = serverUser();
  const asPostgres = owner !== null;
  const dir = mkdtempSync(join(tmpdir(), 'rebound-pg-'));
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });

  const init = await run(binDir, asPostgres, dir, 'initdb', [
    '-D', dataDir, '-U', SUPERUSER, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions',
  ]);
  if (!init.ok) {
    removeDir();
    throw new Error(`initdb failed in ${dir}:\n${init.output}`);
  }
  // Only the socket (in a dir only postgres and root can enter) and 127.0.0.1 are trusted; no other line.
  writeFileSync(join(dataDir, 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\n');
  // Durability is not what these tests measure; fsync off keeps commits and the start fast.
  appendFileSync(
    join(dataDir, 'postgresql.conf'),
    [
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'max_connections = 50',
      '',
    ].join('\n'),
  );

  const pgCtl = (args: string[]) => run(binDir, asPostgres, dir, 'pg_ctl', args);
  const startOn = async (port: number): Promise<{ ok: boolean; output: string }> =>
    pgCtl(['start', '-D', dataDir, '-l', logFile, '-w', '-t', String(WAIT_MS / 1000), '-o', `-p ${port}`]);
  const stopNowSync = (): void => {
    try {
      const argv = ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '5'];
      if (asPostgres) execFileSync('runuser', ['-u', 'postgres', '--', join(binDir, 'pg_ctl'), ...argv], { stdio: 'ignore', timeout: 10_000 });
      else execFileSync(join(binDir, 'pg_ctl'), argv, { stdio: 'ignore', timeout: 10_000 });
    } catch {
      // already stopped
    }
    removeDir();
  };

  // The port is free when we look and may be taken before postgres binds it: try a few.
  let port = 0;
  let started: { ok: boolean; output: string } = { ok: false, output: '' };
  for (let attempt = 0; attempt < 3 && !started.ok; attempt++) {
    port = await freePort();
    started = await startOn(port);
  }
  if (!started.ok) {
    const tail = logTail(logFile);
    removeDir();
    throw new Error(`pg_ctl start failed:\n${started.output}\nserver log:\n${tail}`);
  }
  const url = `postgres://${SUPERUSER}@127.0.0.1:${port}/postgres`;
  running.add(stopNowSync);
  try {
    await waitUntilConnectable(url, logFile);
  } catch (error) {
    running.delete(stopNowSync);
    stopNowSync();
    throw error;
  }

  let removed = false;
  return {
    url,
    port,
    async stop() {
      if (removed) return;
      removed = true;
      running.delete(stopNowSync);
      const status = await pgCtl(['status', '-D', dataDir]);
      if (status.ok) {
        const stopped = await pgCtl(['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', String(WAIT_MS / 1000)]);
        if (!stopped.ok) throw new Error(`pg_ctl stop -m immediate failed:\n${stopped.output}\nserver log:\n${logTail(logFile)}`);
      }
      removeDir();
    },
    async stopServer() {
      const stopped = await pgCtl(['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', String(WAIT_MS / 1000)]);
      if (!stopped.ok) throw new Error(`pg_ctl stop -m fast failed:\n${stopped.output}\nserver log:\n${logTail(logFile)}`);
    },
    async startServer() {
      const again = await startOn(port);
      if (!again.ok) throw new Error(`pg_ctl start on port ${port} failed:\n${again.output}\nserver log:\n${logTail(logFile)}`);
      await waitUntilConnectable(url, logFile);
    },
  };
}

let databases = 0;

/** A new database in the cluster, for one test: tests sharing a cluster do not see each other's tables. */
export async function freshDatabase(postgres: TestPostgres, prefix = 'test'): Promise<string> {
  const name = `${prefix}_${process.pid}_${++databases}`;
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(postgres.url);
  url.pathname = `/${name}`;
  return url.toString();
}
