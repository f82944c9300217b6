// The send part of `npm run bench` alone, beside its ceiling, at any size:
// `BENCH_RECIPIENTS=20000 node --import tsx bench/send-alone.ts` (BENCH_PROFILE=DIR as for the
// whole run). Prints the figures as JSON and one line with the ratios; writes no results file.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createDatabase } from '../src/db/database.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { buildService } from './build.js';
import { killChildren, postmasterPid, startChild } from './lib.js';
import { benchSend } from './send.js';

const dataDir = await mkdtemp(path.join(tmpdir(), 'assent-bench-send-'));
let stopDatabase: (() => Promise<void>) | undefined;
let admin: pg.Pool | undefined;
try {
  const cli = buildService(path.join(dataDir, 'build'));
  const database = await startEmbeddedDatabase(dataDir);
  stopDatabase = () => database.stop();
  const migrator = createDatabase(database.url, { max: 1 });
  await migrateToLatest(migrator);
  await migrator.destroy();
  admin = new pg.Pool({ connectionString: database.url, max: 2 });
  admin.on('error', () => undefined);
  const sink = startChild('bench/smtp-sink.ts', [], { log: path.join(dataDir, 'sink.log') });
  const { url: smtpUrl } = await sink.message<{ ready?: boolean; url: string }>((m) => m.ready === true);
  const send = await benchSend({ cli, databaseUrl: database.url, postgresPid: postmasterPid(dataDir), smtpUrl, dataDir }, admin, sink);
  await sink.stop();
  const ms = (cpu: Record<string, number>) => Object.entries(cpu).map(([name, value]) => `${value.toFixed(2)} ${name}`).join(' + ');
  process.stdout.write(`${JSON.stringify(send)}\n`);
  process.stdout.write(`send ${send.mailsPerSecond.toFixed(0)} mails/s, ceiling ${send.ceiling.mailsPerSecond.toFixed(0)}: `
    + `${(send.mailsPerSecond / send.ceiling.mailsPerSecond).toFixed(2)}; CPU per mail ${ms(send.cpuMs)} ms against ${ms(send.ceiling.cpuMs)} ms; `
    + `worker peak RSS ${(send.workerPeakRss / 2 ** 20).toFixed(0)} MB; ${send.messageBytes} bytes a mail\n`);
} finally {
  killChildren();
  await admin?.end().catch(() => undefined);
  await stopDatabase?.().catch(() => undefined);
  if (!process.env.BENCH_KEEP) await rm(dataDir, { recursive: true, force: true });
}
