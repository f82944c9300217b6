// The README's walk-through, as a newcomer runs it: `npm start` on a fresh DATA_DIR (embedded
// PostgreSQL, mail to the outbox folder), a list, a form post, the .eml, its link; then how it
// ends: Ctrl-C in a terminal, and a process killed outright.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import pg from 'pg';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startEmbeddedDatabase } from '../src/db/embedded.js';
import { keepChildLog } from './helpers/logs.js';
import { allPostgresProcessesOf, postgresProcessesOf } from './helpers/processes.js';
import { until } from './helpers/wait.js';

const KEY = 'start-test-key-0123456789abcdef';
let child: ChildProcess;
let dataDir: string;
let base: string;
let output = '';

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'assent-start-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'development', PORT: String(port), DATA_DIR: path.join(dataDir, 'data'), ASSENT_API_KEY: KEY };
  for (const name of ['DATABASE_URL', 'SMTP_URL', 'TOKEN_SECRETS', 'PUBLIC_URL']) delete env[name];
  child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk) => { output += chunk; });
  child.stderr!.on('data', (chunk) => { output += chunk; });
  await until('readiness', async () => (await fetch(`${base}/readyz`)).ok, 30_000, () => `output:\n${output.slice(-3000)}`);
});

afterAll(async () => {
  if (child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
  keepChildLog('start', output);
  await rm(dataDir, { recursive: true, force: true });
});

describe('npm start on a fresh DATA_DIR', () => {
  it('takes a form post, writes an .eml whose link confirms, and logs the link', async () => {
    const list = await fetch(`${base}/api/v1/lists`, {
      method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ slug: 'news', name: 'News', consent_text: 'Send me the weekly news.' }),
    });
    expect(list.status).toBe(201);
    const signup = await fetch(`${base}/subscribe`, { method: 'POST', body: new URLSearchParams({ email: 'first.try@example.org', list: 'news' }), redirect: 'manual' });
    expect(signup.status).toBe(303);

    const outbox = path.join(dataDir, 'data', 'outbox');
    const file = await until('an .eml in the outbox', async () => (await readdir(outbox)).find((name) => name.endsWith('.eml')), 30_000, () => `output:\n${output.slice(-3000)}`);
    const mail = await simpleParser(await readFile(path.join(outbox, file)));
    const link = /http:\/\/localhost:\d+\/confirm\/[A-Za-z0-9_.-]+/.exec(mail.text ?? '')?.[0];
    expect(link).toBeDefined();
    expect(output).toContain(link!);

    const target = `${base}${new URL(link!).pathname}`;
    expect(await (await fetch(target)).text()).toContain('<form method="post"');
    const confirmed = await fetch(target, { method: 'POST' });
    expect(confirmed.status).toBe(200);
    expect(await confirmed.text()).toContain('Subscription confirmed');
    const lists = await (await fetch(`${base}/api/v1/lists`, { headers: { authorization: `Bearer ${KEY}` } })).json();
    expect(lists.data[0].counts.confirmed).toBe(1);
  });

  it('stops cleanly on SIGTERM', async () => {
    child.kill('SIGTERM');
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
  });
});

/** `npm start` as typed in a terminal: the leader of its own process group (a terminal's job). */
async function npmStart(name: string, extraEnv: Record<string, string> = {}): Promise<{ child: ChildProcess; dataDir: string; base: string; output: () => string }> {
  const dir = await mkdtemp(path.join(tmpdir(), `assent-${name}-`));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'development', PORT: String(port), DATA_DIR: path.join(dir, 'data'), ASSENT_API_KEY: KEY, ...extraEnv };
  for (const variable of ['DATABASE_URL', 'TOKEN_SECRETS', 'PUBLIC_URL']) delete env[variable];
  if (!extraEnv.SMTP_URL) delete env.SMTP_URL;
  const started = spawn('npm', ['start'], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  started.stdout!.on('data', (chunk) => { log += chunk; });
  started.stderr!.on('data', (chunk) => { log += chunk; });
  const url = `http://127.0.0.1:${port}`;
  await until('readiness', async () => (await fetch(`${url}/readyz`)).ok, 60_000, () => `output:\n${log.slice(-3000)}`);
  return { child: started, dataDir: path.join(dir, 'data'), base: url, output: () => log };
}

/** Whatever is left of a process group (a failed test), gone. */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // none left
  }
}

/** The output without npm's `> assent@0.1.0 start` banner, which the log check would take for an address. */
function npmBannerless(output: string): string {
  return output.split('\n').filter((line) => !line.startsWith('> ')).join('\n');
}

/** The JSON log lines among a process's output (npm's own lines are plain text). */
function logLines(output: string): { level: number; msg: string }[] {
  return output.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: number; msg: string });
}

/** An SMTP peer that holds every message until released: sends stay in flight as long as a test needs. */
class HoldingSmtpPeer {
  held = 0;
  private release!: () => void;
  private readonly released = new Promise<void>((resolve) => { this.release = resolve; });
  private readonly server = new SMTPServer({
    authOptional: true, disabledCommands: ['STARTTLS'], logger: false, closeTimeout: 200,
    onData: (stream, _session, callback) => {
      stream.resume();
      stream.on('end', () => {
        this.held += 1;
        void this.released.then(() => callback());
      });
    },
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    return `smtp://127.0.0.1:${(this.server.server.address() as AddressInfo).port}`;
  }

  letGo(): void {
    this.release();
  }

  async stop(): Promise<void> {
    this.release();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

describe('Ctrl-C on npm start in a terminal', () => {
  // A terminal's Ctrl-C sends SIGINT to every process of the foreground job: npm, its shell,
  // tsx, the service, and whatever the service started in the same process group. The
  // embedded PostgreSQL used to be among them: it shut down while the workers were still
  // finishing their sends, whose results then could not be recorded (`worker round failed`,
  // ECONNREFUSED, and the 10 s shutdown deadline).
  it('stops HTTP, then the workers (their sends recorded), then the embedded PostgreSQL; exits 0 with no error', async () => {
    const relay = new HoldingSmtpPeer();
    const started = await npmStart('ctrl-c', { SMTP_URL: await relay.start() });
    try {
      const list = await fetch(`${started.base}/api/v1/lists`, {
        method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ slug: 'news', name: 'News', consent_text: 'Send me the weekly news.' }),
      });
      expect(list.status).toBe(201);
      for (const email of ['one@example.org', 'two@example.org']) {
        const signup = await fetch(`${started.base}/subscribe`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, list: 'news' }) });
        expect(signup.status).toBe(202);
      }
      await until('a confirmation in flight at the relay', () => relay.held > 0, 30_000);

      const exited = new Promise<number | null>((resolve) => started.child.once('exit', resolve));
      process.kill(-started.child.pid!, 'SIGINT');
      await until('the service to begin shutting down', () => started.output().includes('"shutting down"'), 10_000);
      relay.letGo(); // the worker finishes its send and records it: the database must still be there
      expect(await exited, started.output().slice(-3000)).toBe(0);
      const lines = logLines(started.output());
      expect(lines.filter((line) => line.level >= 50)).toEqual([]);
      const order = ['shutting down', 'mail workers stopped', 'embedded PostgreSQL stopped'].map((msg) => lines.findIndex((line) => line.msg === msg));
      expect(order.every((index, i) => index >= 0 && (i === 0 || index > order[i - 1]!)), `log order ${order}`).toBe(true);
      await until('no PostgreSQL process of this DATA_DIR', async () => (await allPostgresProcessesOf(started.dataDir)).length === 0, 10_000);

      // What the workers left: every mail the relay took recorded as sent, nothing still claimed.
      const database = await startEmbeddedDatabase(started.dataDir);
      try {
        const client = new pg.Client({ connectionString: database.url });
        await client.connect();
        const { rows } = await client.query<{ status: string; claimed: boolean }>('select status, locked_by is not null as claimed from outbox');
        await client.end();
        expect(rows.filter((row) => row.status === 'sent')).toHaveLength(relay.held);
        expect(rows.filter((row) => row.claimed)).toEqual([]);
      } finally {
        await database.stop();
      }
    } finally {
      keepChildLog('start-ctrl-c', npmBannerless(started.output()));
      killGroup(started.child);
      await relay.stop();
      await rm(path.dirname(started.dataDir), { recursive: true, force: true });
    }
  }, 90_000);
});

describe('the service process killed outright (SIGKILL)', () => {
  // As the OOM killer or `kill -9` would: no handler runs, nothing of ours can stop the
  // server. The kernel's parent-death signal (setpriv --pdeathsig) makes PostgreSQL shut
  // itself down when the process that started it is gone.
  it('leaves no PostgreSQL process of its DATA_DIR behind', async () => {
    const started = await npmStart('sigkill');
    try {
      const { postmasters } = await postgresProcessesOf(started.dataDir);
      expect(postmasters).toHaveLength(1);
      const exited = new Promise((resolve) => started.child.once('exit', resolve));
      process.kill(postmasters[0]!.ppid, 'SIGKILL'); // the service: npm's and tsx's processes then end by themselves
      await exited;
      await until('no PostgreSQL process of this DATA_DIR', async () => (await allPostgresProcessesOf(started.dataDir)).length === 0, 20_000,
        () => `output:\n${started.output().slice(-2000)}`);
    } finally {
      keepChildLog('start-sigkill', npmBannerless(started.output()));
      killGroup(started.child);
      for (const pid of await allPostgresProcessesOf(started.dataDir)) process.kill(pid, 'SIGKILL');
      await rm(path.dirname(started.dataDir), { recursive: true, force: true });
    }
  }, 90_000);
});
