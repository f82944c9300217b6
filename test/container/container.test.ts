// The image as Docker builds and runs it (scripts/container-test.sh builds it and runs this
// file; `npm test` does not): containers on the host's network, in production mode, against
// a fresh database on the test PostgreSQL and a real SMTP peer in this process. A signup
// through the container ends as a mail at the peer whose link confirms; Docker itself runs the
// image's HEALTHCHECK and reports the container healthy; `docker stop` (SIGTERM) ends it with
// exit code 0; and the `serve` and `worker` roles run as docker-compose.yml runs them, one
// container each, the mail sent by the worker.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../src/db/embedded.js';
import { childLogFd } from '../helpers/logs.js';
import { API_KEY, TEST_LOG_KEY, TEST_SECRET } from '../helpers/secrets.js';
import { SmtpSink } from '../helpers/smtp.js';
import { until } from '../helpers/wait.js';

const run = promisify(execFile);
const image = process.env.ASSENT_IMAGE;
if (!image) throw new Error('ASSENT_IMAGE is not set: run scripts/container-test.sh, which builds the image');

const suffix = randomBytes(4).toString('hex');
const database = `assent_container_${suffix}`;
const started: string[] = [];
let smtp: SmtpSink;
let databaseUrl: string;

/** A docker command, bounded in time: a wedged engine fails the test instead of hanging it. */
async function docker(...args: string[]): Promise<string> {
  const { stdout } = await run('docker', args, { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.href;
}

async function admin<T>(use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: inject('adminUrl') });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

interface Container {
  name: string;
  base: string;
}

/** `docker run -d` of the image, on the host's network (no bridge: nothing leaves the loopback). */
async function startContainer(role: string, args: string[] = []): Promise<Container> {
  const name = `assent-ct-${suffix}-${role}`;
  const port = await freePort();
  const env = {
    NODE_ENV: 'production', DATABASE_URL: databaseUrl, SMTP_URL: smtp.url, PUBLIC_URL: 'https://assent.test',
    TOKEN_SECRETS: TEST_SECRET, ASSENT_API_KEY: API_KEY, CONSENT_LOG_KEY: TEST_LOG_KEY, MAIL_FROM: 'News <news@assent.test>',
    HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'debug',
  };
  started.push(name);
  await docker('run', '-d', '--name', name, '--network', 'host',
    ...Object.entries(env).flatMap(([key, value]) => ['-e', `${key}=${value}`]), image!, ...args);
  const base = `http://127.0.0.1:${port}`;
  await until(`${role} container to answer /readyz`, async () => (await fetch(`${base}/readyz`)).ok, 60_000,
    () => `last state: ${JSON.stringify(lastState)}`);
  return { name, base };
}

interface State { Status: string; ExitCode: number; Health?: { Status: string; Log: { ExitCode: number; Output: string }[] } }
/** The last state read, for the message of a wait that ran out. */
let lastState: State | undefined;

async function state(name: string): Promise<State> {
  lastState = JSON.parse(await docker('inspect', '--format', '{{json .State}}', name)) as State;
  return lastState;
}

/** Docker's own verdict from the image's HEALTHCHECK (its first probe runs 10 s after start). */
async function healthy(name: string): Promise<string> {
  return until(`${name} to be reported healthy by docker`, async () => {
    const health = (await state(name)).Health;
    return health?.Status === 'healthy' ? health.Status : undefined;
  }, 90_000, () => `last state: ${JSON.stringify(lastState)}`);
}

/** `docker stop` (SIGTERM, then SIGKILL after 20 s), and the exit code the process gave. */
async function stopContainer(name: string): Promise<number> {
  await docker('stop', '--time', '20', name);
  return (await state(name)).ExitCode;
}

async function logsOf(name: string): Promise<string[]> {
  const { stdout, stderr } = await run('docker', ['logs', name], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  return (stdout + stderr).split('\n').filter(Boolean);
}

/** A stopped container's log lines, kept with the run's logs so the address check covers them. */
async function keepLogs(name: string): Promise<string[]> {
  const lines = await logsOf(name);
  writeSync(childLogFd(`container-${name}`), `${lines.join('\n')}\n`);
  return lines;
}

/** Lines logged at error level or above (pino's 50, 60), and any line that is not JSON. */
function troubles(lines: string[]): string[] {
  return lines.filter((line) => {
    try {
      return (JSON.parse(line) as { level: number }).level >= 50;
    } catch {
      return true;
    }
  });
}

async function api(base: string, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${base}${path}`, {
    method, headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
}

async function signUpAndConfirm(serveBase: string, email: string, list: string): Promise<void> {
  const since = smtp.received.length;
  const signup = await fetch(`${serveBase}/subscribe`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, list }),
  });
  expect(signup.status).toBe(202);
  const mail = await smtp.waitForMailTo(email, since, 30_000);
  const link = /https:\/\/assent\.test(\/confirm\/[A-Za-z0-9_.-]+)/.exec(mail.parsed.text ?? '');
  expect(link).not.toBeNull();
  const confirmed = await fetch(`${serveBase}${link![1]}`, { method: 'POST' });
  expect(confirmed.status).toBe(200);
  expect(await confirmed.text()).toContain('Subscription confirmed');
}

beforeAll(async () => {
  await admin((client) => client.query(`create database ${database}`));
  databaseUrl = withDatabase(inject('adminUrl'), database);
  smtp = await new SmtpSink().start();
});

afterAll(async () => {
  for (const name of started) await docker('rm', '--force', name).catch(() => undefined);
  await smtp?.stop();
  await admin((client) => client.query(`drop database if exists ${database} with (force)`));
});

describe('the image in a real engine', () => {
  it('runs as the node user, with the health check the Dockerfile declares', async () => {
    const config = JSON.parse(await docker('image', 'inspect', '--format', '{{json .Config}}', image!));
    expect(config.User).toBe('node');
    expect(config.Healthcheck.Test[0]).toBe('CMD');
    expect(await docker('run', '--rm', '--network', 'host', '--entrypoint', 'id', image!, '-un')).toBe('node');
  });

  it('refuses to start in production without its five settings, one line each, exit code 2', async () => {
    const refused = await run('docker', ['run', '--rm', '--network', 'host', image!], { timeout: 60_000 })
      .then(() => ({ code: 0, stderr: '' }), (error: { code: number; stderr: string }) => error);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^assent: DATABASE_URL is required in production/),
      expect.stringMatching(/^assent: SMTP_URL is required in production/),
      expect.stringMatching(/^assent: PUBLIC_URL is required in production/),
      expect.stringMatching(/^assent: TOKEN_SECRETS is required in production/),
      expect.stringMatching(/^assent: CONSENT_LOG_KEY is required in production/),
    ]);
  });

  it('migrates a fresh database, takes a signup, mails it, turns healthy, and exits 0 on docker stop', async () => {
    const both = await startContainer('both');
    const list = await api(both.base, 'POST', '/api/v1/lists', { slug: 'news', name: 'News', consent_text: 'Send me the news.' });
    expect(list.status).toBe(201);
    await signUpAndConfirm(both.base, 'in.the.container@example.org', 'news');

    expect(await healthy(both.name)).toBe('healthy');
    expect(await stopContainer(both.name)).toBe(0);
    const lines = await keepLogs(both.name);
    expect(troubles(lines)).toEqual([]);
    expect(lines.some((line) => line.includes('"shutting down"') && line.includes('SIGTERM'))).toBe(true);
  }, 180_000);

  it('runs serve and worker in containers of their own, as docker-compose.yml does', async () => {
    const worker = await startContainer('worker', ['worker']);
    const serve = await startContainer('serve', ['serve']);
    // The worker listens for operations only.
    expect((await fetch(`${worker.base}/subscribe`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${worker.base}/metrics`)).headers.get('content-type')).toMatch(/^text\/plain/);
    // serve alone runs no mail workers: the mail below can only come from the worker container.
    const serveLines = await logsOf(serve.name);
    expect(serveLines.some((line) => line.includes('mail workers started'))).toBe(false);

    const list = await api(serve.base, 'POST', '/api/v1/lists', { slug: 'weekly', name: 'Weekly', consent_text: 'Send me the weekly.' });
    expect(list.status).toBe(201);
    await signUpAndConfirm(serve.base, 'split.roles@example.org', 'weekly');

    expect(await healthy(worker.name)).toBe('healthy');
    expect(await healthy(serve.name)).toBe('healthy');
    expect(await stopContainer(worker.name)).toBe(0);
    expect(await stopContainer(serve.name)).toBe(0);
    for (const name of [worker.name, serve.name]) expect(troubles(await keepLogs(name))).toEqual([]);
  }, 240_000);
});
