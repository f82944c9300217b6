// `npm run bench`: every benchmark beside its baseline, on an embedded PostgreSQL in a temporary
// folder (never the machine's own server), with one SMTP sink process shared by all sends.
// Prints one table and writes it to bench/results.md; `npm run bench -- --readme` also puts
// it in the README. Not part of `npm test`: no test asserts a time.
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createDatabase } from '../src/db/database.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { benchAudience } from './audience.js';
import { buildService, buildServiceAt } from './build.js';
import { benchConsentLog } from './consent-log.js';
import { benchIntegrations } from './integrations.js';
import { killChildren, postmasterPid, startChild } from './lib.js';
import { markdown, type RenderResult, writeResults } from './report.js';
import { benchSend } from './send.js';
import { benchSignup } from './signup.js';

// The last commit before the consent log was wired in: the signup's "before" for its CPU cost.
const BEFORE_CONSENT_LOG = '4ec4dad0902b8b283ecd0aaeb7c81f35649f6edd';

const started = Date.now();
const loadBefore = loadavg()[0]!;
const step = (what: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${what}\n`);

const dataDir = await mkdtemp(path.join(tmpdir(), 'assent-bench-'));
let stopDatabase: (() => Promise<void>) | undefined;
let admin: pg.Pool | undefined;
const cleanUp = async () => {
  killChildren();
  await admin?.end().catch(() => undefined);
  await stopDatabase?.().catch(() => undefined);
  await rm(dataDir, { recursive: true, force: true });
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void cleanUp().finally(() => process.exit(130)); });
}

try {
  step('compiling the service as the image does, and as it was before the consent log');
  const cli = buildService(path.join(dataDir, 'build'));
  const cliBeforeLog = buildServiceAt(BEFORE_CONSENT_LOG, path.join(dataDir, 'build-before-log'));
  step(`embedded PostgreSQL in ${dataDir}`);
  const database = await startEmbeddedDatabase(dataDir);
  stopDatabase = () => database.stop();
  const migrator = createDatabase(database.url, { max: 1 });
  await migrateToLatest(migrator);
  await migrator.destroy();
  admin = new pg.Pool({ connectionString: database.url, max: 2 });
  // pg's end() resolves before its idle clients have left; the server stopping right after
  // would otherwise reach one of them as an unhandled 'error'.
  admin.on('error', () => undefined);
  const { rows: [version] } = await admin.query<{ server_version: string }>('show server_version');
  const postgres = `PostgreSQL ${version!.server_version} (embedded, default settings)`;

  step('render: per recipient against one MJML compile');
  const renderer = startChild('bench/render.ts', [], { log: path.join(dataDir, 'render.log') });
  const render = await renderer.message<RenderResult>((m) => typeof m.renderUs === 'number');
  await renderer.stop();

  const sink = startChild('bench/smtp-sink.ts', [], { log: path.join(dataDir, 'sink.log') });
  const { url: smtpUrl } = await sink.message<{ ready?: boolean; url: string }>((m) => m.ready === true);
  const env = { cli, databaseUrl: database.url, postgresPid: postmasterPid(dataDir), smtpUrl, dataDir };

  step('signup: the service before the consent log, the service, then the bare baseline, 64 connections for 20 s each');
  await admin.query('create database before_log');
  const beforeUrl = new URL(database.url);
  beforeUrl.pathname = '/before_log';
  const signup = await benchSignup(env, admin, sink.pid, {
    label: `before the consent log (${BEFORE_CONSENT_LOG.slice(0, 7)})`,
    env: { ...env, cli: cliBeforeLog, databaseUrl: beforeUrl.href },
    // That build's migrations already gave consent_events its txid column: without its default, nothing of the log is left.
    prepare: async () => {
      const before = new pg.Client({ connectionString: beforeUrl.href });
      await before.connect();
      await before.query('alter table consent_events alter column txid drop default');
      await before.end();
    },
  });
  step('send: a campaign to 100,000, then the nodemailer ceiling');
  const send = await benchSend(env, admin, sink);
  step('audience: seeding a million, fixing the audience, the sender on it');
  const audience = await benchAudience(env, admin);
  await sink.stop();
  step('consent log: a million events sequenced, then proofs on the tree of a million');
  const consentLog = await benchConsentLog(database.url, admin);
  step('integrations: a million rows through assent import, then webhooks to a local receiver beside a bare fetch loop');
  const integrations = await benchIntegrations({
    databaseUrl: database.url, dataDir, cli: { script: cli, javascript: true }, rows: 1_000_000, deliveries: 20_000,
  });

  const text = markdown({ signup, send, render, audience, consentLog, integrations, postgres, loadBefore, totalSeconds: (Date.now() - started) / 1000 });
  process.stdout.write(`\n${text}\n`);
  writeResults(text, { readme: process.argv.includes('--readme') });
  step(`written to bench/results.md${process.argv.includes('--readme') ? ' and README.md' : ''}`);
} finally {
  await cleanUp();
}
