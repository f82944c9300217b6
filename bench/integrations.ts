// Integrations: an import of a million rows through `assent import` (seconds, the process's
// peak RSS: the file streams, so memory must not follow its size), and webhook delivery to a
// local receiver (deliveries/s) beside a bare `fetch` loop to the same receiver at the same
// concurrency, the ceiling. Part of `npm run bench`; alone, on its own embedded PostgreSQL:
//   node --import tsx bench/integrations.ts [--rows N] [--deliveries N]
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createDatabase, type Database } from '../src/db/database.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { createList } from '../src/lists/lists.js';
import { buildDeps, loadConfig } from '../src/main.js';
import { createEndpoint } from '../src/webhooks/endpoints.js';
import { DEFAULT_WEBHOOK_OPTIONS, WebhookWorker } from '../src/workers/webhooks.js';
import { fixed, killChildren, mb, peakRss, ROOT, startChild, waitUntil } from './lib.js';
import { BENCH_LOG_KEY, TOKEN_SECRET } from './service.js';

export interface IntegrationsResult {
  import: { rows: number; withConsent: number; bytes: number; seconds: number; peakRss: number };
  webhooks: { deliveries: number; perEndpoint: number; perSecond: number; ceilingPerSecond: number };
}

const env = (databaseUrl: string, dataDir: string) => ({
  NODE_ENV: 'development', DATABASE_URL: databaseUrl, DATA_DIR: dataDir, TOKEN_SECRETS: TOKEN_SECRET, CONSENT_LOG_KEY: BENCH_LOG_KEY,
  PUBLIC_URL: 'https://assent.bench.example', MAIL_FROM: 'News <news@bench.example>', SENDER_ADDRESS: '1 Bench Street, Testville', LOG_LEVEL: 'warn',
});

/** A CSV as an export would be: nine rows in ten bring their consent, the tenth gets the confirmation mail. */
async function writeCsv(file: string, rows: number, prefix: string): Promise<number> {
  const out = createWriteStream(file);
  out.write('email,first_name,last_name,consented_at,consent_ip,consent_source\n');
  for (let i = 0; i < rows; i += 1) {
    const line = i % 10 === 9 ? `${prefix}${i}@bench.example,Ada,Lovelace,,,\n` : `${prefix}${i}@bench.example,Ada,Lovelace,2024-03-01T10:00:00Z,203.0.113.5,old site\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return out.bytesWritten;
}

/** `assent import` as an operator runs it, timed, its peak RSS read from the kernel while it runs. */
async function runImportCli(cli: { script: string; javascript: boolean }, vars: Record<string, string>, file: string, list: string, dataDir: string) {
  const child = startChild(cli.script, ['import', file, '--list', list], { env: vars, log: path.join(dataDir, `import-${list}.log`), javascript: cli.javascript });
  const started = process.hrtime.bigint();
  let peak = 0;
  const sampler = setInterval(() => { try { peak = Math.max(peak, peakRss(child.pid)); } catch { /* exited */ } }, 100);
  const code = await new Promise<number | null>((resolve) => child.process.once('exit', resolve));
  clearInterval(sampler);
  if (code !== 0) throw new Error(`assent import exited ${code}; see ${dataDir}/import-${list}.log`);
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, peakRss: peak };
}

async function countDelivered(db: Database): Promise<number> {
  const row = await db.selectFrom('webhook_deliveries').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'delivered').executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The ceiling: the same number of POSTs of the same size, `concurrency` at a time, by fetch over keep-alive. */
async function fetchLoop(url: string, count: number, concurrency: number, body: string): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next += 1;
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await response.arrayBuffer();
      if (response.status !== 204) throw new Error(`receiver answered ${response.status}`);
    }
  }));
  return count / (Number(process.hrtime.bigint() - started) / 1e9);
}

export async function benchIntegrations(options: {
  databaseUrl: string; dataDir: string; cli: { script: string; javascript: boolean }; rows: number; deliveries: number;
}): Promise<IntegrationsResult> {
  const vars = env(options.databaseUrl, options.dataDir);
  const db = createDatabase(options.databaseUrl, { max: 8 });
  const receiver = startChild('bench/webhook-receiver.ts', [], { log: path.join(options.dataDir, 'receiver.log') });
  try {
    const deps = await buildDeps(loadConfig(vars), pino({ level: 'silent' }), db);
    await createList(deps, { slug: 'bench-import', name: 'Bench import', consentText: 'Send me news.', fields: ['first_name', 'last_name'] });
    await createList(deps, { slug: 'bench-hooks', name: 'Bench hooks', consentText: 'Send me news.' });

    const file = path.join(options.dataDir, 'import.csv');
    const bytes = await writeCsv(file, options.rows, 'i');
    const imported = await runImportCli(options.cli, vars, file, 'bench-import', options.dataDir);

    const { url } = await receiver.message<{ ready?: boolean; url: string }>((m) => m.ready === true);
    await createEndpoint(deps, { url, events: ['subscription.confirmed'], lists: ['bench-hooks'], createdBy: 'bench' });
    // The events to deliver: an import into the endpoint's list, every row with its consent.
    const hooksFile = path.join(options.dataDir, 'hooks.csv');
    const out = createWriteStream(hooksFile);
    out.end(['email,consented_at', ...Array.from({ length: options.deliveries }, (_, i) => `h${i}@bench.example,2024-03-01T10:00:00Z`)].join('\n'));
    await once(out, 'finish');
    await runImportCli(options.cli, vars, hooksFile, 'bench-hooks', options.dataDir);

    const worker = new WebhookWorker(deps, { pollMs: 50 });
    const started = process.hrtime.bigint();
    worker.start();
    await waitUntil('every webhook delivered', async () => (await countDelivered(db)) >= options.deliveries, { timeoutMs: 30 * 60_000, everyMs: 100 });
    const perSecond = options.deliveries / (Number(process.hrtime.bigint() - started) / 1e9);
    await worker.stop();
    // A body of the size the worker sent: {type, timestamp, data: {subscriber id, list, email}}.
    const body = JSON.stringify({ type: 'subscription.confirmed', timestamp: new Date().toISOString(),
      data: { subscriber_id: '00000000-0000-0000-0000-000000000000', list: 'bench-hooks', email: 'h12345@bench.example' } });
    const ceilingPerSecond = await fetchLoop(url, options.deliveries, DEFAULT_WEBHOOK_OPTIONS.perEndpoint, body);
    return {
      import: { rows: options.rows, withConsent: options.rows - Math.floor(options.rows / 10), bytes, ...imported },
      webhooks: { deliveries: options.deliveries, perEndpoint: DEFAULT_WEBHOOK_OPTIONS.perEndpoint, perSecond, ceilingPerSecond },
    };
  } finally {
    await receiver.stop();
    await db.destroy();
  }
}

/** The part's rows of the bench table. */
export function integrationsRows(r: IntegrationsResult): string[][] {
  const { import: i, webhooks: w } = r;
  return [
    [`import: ${fixed(i.rows)} rows via \`assent import\` (${fixed(i.withConsent)} with consent, ${mb(i.bytes)} CSV)`, 'seconds, peak RSS',
      `${fixed(i.seconds, 1)} s (${fixed(i.rows / i.seconds)} rows/s), peak RSS ${mb(i.peakRss)}`, '', '', ''],
    [`webhooks: ${fixed(w.deliveries)} to one local receiver, ${w.perEndpoint} calls at once`, 'deliveries/s', fixed(w.perSecond),
      `${fixed(w.ceilingPerSecond)} (bare fetch loop, same receiver, same concurrency)`, fixed(w.perSecond / w.ceilingPerSecond, 2), ''],
  ];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, deliveries: { type: 'string', default: '20000' } } });
  const dataDir = await mkdtemp(path.join(tmpdir(), 'assent-bench-integrations-'));
  const database = await startEmbeddedDatabase(dataDir);
  try {
    const migrator = createDatabase(database.url, { max: 1 });
    await migrateToLatest(migrator);
    await migrator.destroy();
    const result = await benchIntegrations({
      databaseUrl: database.url, dataDir, cli: { script: path.join(ROOT, 'bin/assent.js'), javascript: true },
      rows: Number(values.rows), deliveries: Number(values.deliveries),
    });
    process.stdout.write(`${JSON.stringify(result)}\n${integrationsRows(result).map((row) => `| ${row.join(' | ')} |`).join('\n')}\n`);
  } finally {
    killChildren();
    await database.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
