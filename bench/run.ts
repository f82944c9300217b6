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
import { buildService } from './build.js';
import { killChildren, postmasterPid, startChild } from './lib.js';
import { markdown, type RenderResult, writeResults } from './report.js';
import { benchSend } from './send.js';
import { benchSignup } from './signup.js';

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
  step('compiling the service as the image does');
  const cli = buildService(path.join(dataDir, 'build'));
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

  step('signup: the service, then the bare baseline, 64 connections for 20 s each');
  const signup = await benchSignup(env, admin, sink.pid);
  step('send: a campaign to 100,000, then the nodemailer ceiling');
  const send = await benchSend(env, admin, sink);
  step('audience: seeding a million, fixing the audience, the sender on it');
  const audience = await benchAudience(env, admin);
  await sink.stop();

  const text = markdown({ signup, send, render, audience, postgres, loadBefore, totalSeconds: (Date.now() - started) / 1000 });
  process.stdout.write(`\n${text}\n`);
  writeResults(text, { readme: process.argv.includes('--readme') });
  step(`written to bench/results.md${process.argv.includes('--readme') ? ' and README.md' : ''}`);
} finally {
  await cleanUp();
}
