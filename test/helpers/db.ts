import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { createDatabase, type Database } from '../../src/db/database.js';

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
