// A landed migration is never edited: Kysely checks names and order, not content, so this
// compares every migration file with the hash recorded when it landed.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Migrator } from 'kysely';
import { describe, expect, it } from 'vitest';
import { addressHash } from '../src/consent/address.js';
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

  it('0012 fills the stored hash and level for people already there, keeps them after, and goes down and up again', async () => {
    const tdb = await createTestDatabase();
    try {
      const migrator = new Migrator({ db: tdb.db, provider: { getMigrations: migrationFiles } });
      expect((await migrator.migrateTo('0011_add_reconsent_reports')).error).toBeUndefined();
      const { rows: [ada] } = await tdb.query<{ id: string }>(`insert into subscribers (email, locale) values ('Ada@Example.org', 'en') returning id`);
      const { rows: [bob] } = await tdb.query<{ id: string }>(`insert into subscribers (email, locale) values ('bob@example.org', 'en') returning id`);
      await tdb.query(`insert into affinity_events (subscriber_id, level, reason) values ($1, 'known', 'a'), ($1, 'confirmed', 'b'), ($2, 'engaged', 'c')`, [ada!.id, bob!.id]);

      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      const stored = async (id: string) => (await tdb.query<{ hash: Buffer | null; level: string | null }>(
        'select address_hash as hash, affinity_level as level from subscribers where id = $1', [id])).rows[0]!;
      // The hash suppressions are keyed by (consent/address.ts), and the latest event's level.
      expect(await stored(ada!.id)).toEqual({ hash: addressHash('Ada@Example.org'), level: 'confirmed' });
      expect(await stored(bob!.id)).toEqual({ hash: addressHash('bob@example.org'), level: 'engaged' });

      // Kept by the triggers from then on: a new event moves the level, a new address the hash.
      await tdb.query(`insert into affinity_events (subscriber_id, level, reason) values ($1, 'engaged', 'd')`, [ada!.id]);
      await tdb.query(`update subscribers set email = 'ada@example.net' where id = $1`, [ada!.id]);
      expect(await stored(ada!.id)).toEqual({ hash: addressHash('ada@example.net'), level: 'engaged' });
      // An earlier event committing later (a batch's row triggers run at its end) leaves the latest one's level.
      await tdb.query(`insert into affinity_events (id, subscriber_id, level, reason) overriding system value values (1000000, $1, 'known', 'e')`, [bob!.id]);
      await tdb.query(`insert into affinity_events (id, subscriber_id, level, reason) overriding system value values (999999, $1, 'confirmed', 'f')`, [bob!.id]);
      expect(await stored(bob!.id)).toMatchObject({ level: 'known' });

      const columns = async () => (await tdb.query<{ name: string }>(`
        select column_name as name from information_schema.columns
        where table_name = 'subscribers' and column_name in ('address_hash', 'affinity_level', 'affinity_event_id') order by 1`)).rows.map((row) => row.name);
      expect(await columns()).toEqual(['address_hash', 'affinity_event_id', 'affinity_level']);
      expect((await migrator.migrateTo('0011_add_reconsent_reports')).error).toBeUndefined();
      expect(await columns()).toEqual([]);
      await tdb.query(`insert into affinity_events (subscriber_id, level, reason) values ($1, 'known', 'g')`, [ada!.id]);
      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      expect(await stored(ada!.id)).toEqual({ hash: addressHash('ada@example.net'), level: 'known' });
    } finally {
      await tdb.drop();
    }
  });
});
