// The README's walk-through, as a newcomer runs it: `npm start` on a fresh DATA_DIR (embedded
// PostgreSQL, mail to the outbox folder), a list, a form post, the .eml, its link.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.js';
import { keepChildLog } from './helpers/logs.js';
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
