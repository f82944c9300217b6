// A landed migration is never edited: Kysely checks names and order, not content, so this
// compares every migration file with the hash recorded when it landed.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Migrator } from 'kysely';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR } from '../src/db/migrate.js';
import { createTestDatabase, migrationFiles } from './helpers/db.js';

const landed = JSON.parse(readFileSync(new URL('./migrations.lock.json', import.meta.url), 'utf8')) as Record<string, string>;

describe('migrations', () => {
  it('are unchanged since they landed, and every one is recorded', () => {
    const files = readdirSync(MIGRATIONS_DIR).filter((file) => /^\d{4}_\w+\.ts$/.test(file)).sort();
    const hashes = Object.fromEntries(files.map((file) =>
      [file, createHash('sha256').update(readFileSync(`${MIGRATIONS_DIR}${file}`)).digest('hex')]));
    expect(hashes).toEqual(landed);
  });

  it('0011 goes down and up again: the report columns, their constraints and the index come and go', async () => {
    const tdb = await createTestDatabase();
    try {
      const shape = async () => (await tdb.query<{ name: string }>(`
        select column_name as name from information_schema.columns where table_name = 'inbound_reports' and column_name like 'reconsent%'
        union all select conname from pg_constraint where conname like 'inbound_reports_reconsent%'
        union all select indexname from pg_indexes where indexname = 'reconsent_messages_message_id'
        order by 1`)).rows.map((row) => row.name);
      const latest = await shape();
      expect(latest).toEqual(['inbound_reports_reconsent_fkey', 'inbound_reports_reconsent_whole', 'reconsent_list_id', 'reconsent_messages_message_id', 'reconsent_version']);
      const migrator = new Migrator({ db: tdb.db, provider: { getMigrations: migrationFiles } });
      expect((await migrator.migrateTo('0010_add_reconsent_and_schedules')).error).toBeUndefined();
      expect(await shape()).toEqual([]);
      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      expect(await shape()).toEqual(latest);
    } finally {
      await tdb.drop();
    }
  });
});
