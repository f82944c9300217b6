import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { Migration } from 'kysely';
import pg from 'pg';
import { inject } from 'vitest';
import { createDatabase, type Database } from '../../src/db/database.js';
import { MIGRATIONS_DIR } from '../../src/db/migrate.js';

export interface TestDatabase {
  db: Database;
  url: string;
  /** Runs SQL as the owner, outside the app (to tamper, to inspect). */
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  drop(): Promise<void>;
}

/** A fresh database cloned from the migrated template. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = inject('adminUrl');
  const template = inject('templateDatabase');
  const name = `${template}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name} template ${template}`);
  await admin.end();
  const parsed = new URL(adminUrl);
  parsed.pathname = `/${name}`;
  const url = parsed.href;
  const db = createDatabase(url, { max: 5 });
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  // `drop database … with (force)` ends any connection still closing; that is expected here.
  pool.on('error', () => undefined);
  return {
    db,
    url,
    query: (text, values) => pool.query(text, values as unknown[]),
    async drop() {
      await db.destroy();
      await pool.end();
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/** Every migration file, as the service's migrator reads them: for tests that migrate to a past version. */
export async function migrationFiles(): Promise<Record<string, Migration>> {
  const files = readdirSync(MIGRATIONS_DIR).filter((file) => /^\d{4}_\w+\.ts$/.test(file)).sort();
  return Object.fromEntries(await Promise.all(files.map(async (file) =>
    [file.replace(/\.ts$/, ''), await import(pathToFileURL(`${MIGRATIONS_DIR}${file}`).href) as Migration])));
}
