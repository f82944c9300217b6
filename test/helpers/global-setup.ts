// One PostgreSQL for the whole run: the embedded one in a temporary folder, or the server
// at DATABASE_URL. A template database is migrated once; each test file clones it
// (`create database … template …`), which takes milliseconds.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { createDatabase } from '../../src/db/database.js';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../src/db/embedded.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { countLines, findLeaks } from './log-scan.js';
import { API_KEY, TEST_SECRET } from './secrets.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    templateDatabase: string;
    logDir: string;
  }
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.href;
}

export default async function setup(project: TestProject) {
  let embedded: EmbeddedDatabase | undefined;
  let dataDir: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    dataDir = await mkdtemp(path.join(tmpdir(), 'assent-test-'));
    embedded = await startEmbeddedDatabase(dataDir);
    adminUrl = embedded.url;
  }
  const templateDatabase = `assent_tpl_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${templateDatabase}`);
  const db = createDatabase(withDatabase(adminUrl, templateDatabase), { max: 1 });
  await migrateToLatest(db);
  await db.destroy();
  project.provide('adminUrl', adminUrl);
  project.provide('templateDatabase', templateDatabase);
  const logDir = await mkdtemp(path.join(tmpdir(), 'assent-test-logs-'));
  project.provide('logDir', logDir);

  return async () => {
    // Databases the test files made and left behind (a failed file) go with the template.
    const { rows } = await admin.query<{ datname: string }>(
      `select datname from pg_database where datname like $1 or datname = $2`, [`${templateDatabase}_%`, templateDatabase]);
    for (const { datname } of rows) await admin.query(`drop database if exists ${datname} with (force)`);
    await admin.end();
    await embedded?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });

    // The promise that no log line names a subscriber or holds a secret, checked over the whole run.
    // (the embedded server's password; none when DATABASE_URL names a trust-auth server)
    const password = decodeURIComponent(new URL(adminUrl).password);
    const leaks = findLeaks(logDir, [TEST_SECRET, API_KEY, ...(password ? [password] : [])]);
    const checked = countLines(logDir);
    if (leaks.length > 0) {
      throw new Error(`${leaks.length} of ${checked} log lines hold an email address or a secret (logs kept in ${logDir}):\n`
        + leaks.slice(0, 5).map(({ file, line }) => `  ${file}: ${line}`).join('\n'));
    }
    process.stdout.write(`log check: ${checked} log lines of this run, none holds an email address or a secret\n`);
    await rm(logDir, { recursive: true, force: true });
  };
}
