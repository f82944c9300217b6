// The send part of `npm run bench` alone, beside its ceiling, at any size:
// `BENCH_RECIPIENTS=20000 node --import tsx bench/send-alone.ts [--before COMMIT]`
// (BENCH_PROFILE=DIR as for the whole run). With --before, the service as it was at COMMIT
// sends the same campaign first, on a database of its own, each send beside a ceiling run of
// its own: the before and after of a change, from one run. Prints the figures as JSON and a
// line of ratios for each; writes no results file.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createDatabase } from '../src/db/database.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { buildService, buildServiceAt } from './build.js';
import { killChildren, postmasterPid, startChild } from './lib.js';
import { benchSend, type SendResult } from './send.js';

const beforeAt = process.argv.indexOf('--before');
const before = beforeAt >= 0 ? process.argv[beforeAt + 1] : undefined;

const dataDir = await mkdtemp(path.join(tmpdir(), 'assent-bench-send-'));
let stopDatabase: (() => Promise<void>) | undefined;
const pools: pg.Pool[] = [];
const ms = (cpu: Record<string, number>) => Object.entries(cpu).map(([name, value]) => `${value.toFixed(2)} ${name}`).join(' + ');
const line = (label: string, send: SendResult) => `${label}: send ${send.mailsPerSecond.toFixed(0)} mails/s, ceiling `
  + `${send.ceiling.mailsPerSecond.toFixed(0)}: ${(send.mailsPerSecond / send.ceiling.mailsPerSecond).toFixed(2)}; CPU per mail `
  + `${ms(send.cpuMs)} ms against ${ms(send.ceiling.cpuMs)} ms (worker / sender ${(send.cpuMs.worker! / send.ceiling.cpuMs.sender!).toFixed(2)}); `
  + `worker peak RSS ${(send.workerPeakRss / 2 ** 20).toFixed(0)} MB; ${send.messageBytes} bytes a mail\n`;
try {
  const cli = buildService(path.join(dataDir, 'build'));
  const cliBefore = before ? buildServiceAt(before, path.join(dataDir, 'build-before')) : undefined;
  const database = await startEmbeddedDatabase(dataDir);
  stopDatabase = () => database.stop();
  const migrator = createDatabase(database.url, { max: 1 });
  await migrateToLatest(migrator);
  await migrator.destroy();
  const pool = (url: string) => {
    const created = new pg.Pool({ connectionString: url, max: 2 });
    created.on('error', () => undefined);
    pools.push(created);
    return created;
  };
  const admin = pool(database.url);
  const sink = startChild('bench/smtp-sink.ts', [], { log: path.join(dataDir, 'sink.log') });
  const { url: smtpUrl } = await sink.message<{ ready?: boolean; url: string }>((m) => m.ready === true);
  const env = { cli, databaseUrl: database.url, postgresPid: postmasterPid(dataDir), smtpUrl, dataDir };
  let out = '';
  if (cliBefore) {
    // Its own database, migrated by the service it runs (the service migrates on start).
    await admin.query('create database before_change');
    const beforeUrl = new URL(database.url);
    beforeUrl.pathname = '/before_change';
    const sent = await benchSend({ ...env, cli: cliBefore, databaseUrl: beforeUrl.href }, pool(beforeUrl.href), sink);
    process.stdout.write(`${JSON.stringify({ before, ...sent })}\n`);
    out += line(`before (${before!.slice(0, 7)})`, sent);
  }
  const send = await benchSend(env, admin, sink);
  await sink.stop();
  process.stdout.write(`${JSON.stringify(send)}\n${out}${line('now', send)}`);
} finally {
  killChildren();
  for (const pool of pools) await pool.end().catch(() => undefined);
  await stopDatabase?.().catch(() => undefined);
  if (!process.env.BENCH_KEEP) await rm(dataDir, { recursive: true, force: true });
}
