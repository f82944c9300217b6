// The service as the container image runs it: the compiled JavaScript (`node dist/src/cli.js
// [serve|worker]`, see build.ts) in a process of its own, configured by the environment, so
// that its CPU and memory are its own and measurable.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../src/db/embedded.js';
import { type Child, startChild, waitUntil } from './lib.js';

export const API_KEY = 'bench-api-key-0123456789abcdef';
export const TOKEN_SECRET = 'bench-token-secret-0123456789abcdef0123456789';
/** The consent log's key in every bench process (a base64 Ed25519 seed). */
export const BENCH_LOG_KEY = Buffer.alloc(32, 9).toString('base64');

export interface Assent extends Child {
  port: number;
  api<T = unknown>(method: string, route: string, body?: unknown): Promise<T>;
}

export interface AssentEnv {
  /** The compiled cli.js to run. */
  cli: string;
  databaseUrl: string;
  /** The PostgreSQL server, whose CPU (with its backends') is counted per request. */
  postgresPid: number;
  smtpUrl: string;
  dataDir: string;
}

/**
 * The Node options docker-compose.yml gives the worker role, so that the benchmark's sender
 * runs as deployed (one source: the compose file).
 */
export const WORKER_NODE_OPTIONS: string[] = (() => {
  const compose = readFileSync('docker-compose.yml', 'utf8');
  const worker = compose.slice(compose.indexOf('\n  worker:'));
  return /NODE_OPTIONS: (.+)/.exec(worker)?.[1]!.trim().split(/\s+/) ?? [];
})();

/** Starts `assent <role>` ('all' is the default, both roles in one process) and waits until it works. */
export async function startAssent(role: 'all' | 'serve' | 'worker', env: AssentEnv, options: { nodeOptions?: string[] } = {}): Promise<Assent> {
  const port = await freePort();
  const log = path.join(env.dataDir, `assent-${role}-${port}.log`);
  // BENCH_PROFILE=DIR: every service process writes a CPU profile there when it exits.
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const nodeOptions = [...(options.nodeOptions ?? []), ...profile];
  const child = startChild(env.cli, role === 'all' ? [] : [role], {
    log,
    javascript: true,
    ...(nodeOptions.length > 0 && { nodeOptions }),
    env: {
      NODE_ENV: 'development',
      DATABASE_URL: env.databaseUrl,
      SMTP_URL: env.smtpUrl,
      DATA_DIR: env.dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: 'https://assent.bench.example',
      MAIL_FROM: 'News <news@bench.example>',
      SENDER_ADDRESS: '1 Bench Street, Testville',
      TOKEN_SECRETS: TOKEN_SECRET,
      CONSENT_LOG_KEY: BENCH_LOG_KEY,
      ASSENT_API_KEY: API_KEY,
      // The per-IP limit would turn a load generator on one address into 429s.
      SUBSCRIBE_RATE_LIMIT: '0',
      LOG_LEVEL: 'info',
    },
  });
  const base = `http://127.0.0.1:${port}`;
  const alive = child.process;
  if (role === 'worker') {
    await waitUntil(`the worker to start (${log})`, async () => {
      if (alive.exitCode !== null) throw new Error(`assent worker exited (${alive.exitCode}); see ${log}`);
      return readFileSync(log, 'utf8').includes('mail workers started');
    }, { timeoutMs: 60_000 });
  } else {
    await waitUntil(`assent to answer on ${base} (${log})`, async () => {
      if (alive.exitCode !== null) throw new Error(`assent exited (${alive.exitCode}); see ${log}`);
      return fetch(`${base}/healthz`).then((response) => response.ok, () => false);
    }, { timeoutMs: 60_000 });
  }
  return {
    ...child,
    port,
    async api<T>(method: string, route: string, body?: unknown): Promise<T> {
      const response = await fetch(`${base}${route}`, {
        method,
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
      return JSON.parse(text) as T;
    },
  };
}
