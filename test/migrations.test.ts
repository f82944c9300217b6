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

  it('0012 checks what campaign_messages refer to once per statement, refusing what the foreign keys refused', async () => {
    const tdb = await createTestDatabase();
    try {
      const { rows: [person] } = await tdb.query<{ id: string }>(`insert into subscribers (email, locale) values ('ada@example.org', 'en') returning id`);
      const { rows: [loner] } = await tdb.query<{ id: string }>(`insert into subscribers (email, locale) values ('bob@example.org', 'en') returning id`);
      const { rows: [list] } = await tdb.query<{ id: string }>(`insert into lists (slug, name) values ('news', 'News') returning id`);
      const { rows: [campaign] } = await tdb.query<{ id: string }>(`
        insert into campaigns (name, list_id, subject, mjml, html_template, text_template) values ('c', $1, 's', 'm', 'h', 't') returning id`, [list!.id]);
      const refused = (text: string, values: unknown[]) => expect(tdb.query(text, values)).rejects.toMatchObject({ code: '23503' });
      const nobody = '00000000-0000-4000-8000-000000000000';

      // One unknown person among good rows refuses the whole statement.
      await refused('insert into campaign_messages (campaign_id, subscriber_id) values ($1, $2), ($1, $3)', [campaign!.id, person!.id, nobody]);
      await refused('insert into campaign_messages (campaign_id, subscriber_id) values ($1, $2)', [Number(campaign!.id) + 1, person!.id]);
      expect((await tdb.query('select count(*)::int as n from campaign_messages')).rows[0].n).toBe(0);

      await tdb.query('insert into campaign_messages (campaign_id, subscriber_id) values ($1, $2)', [campaign!.id, person!.id]);
      await refused('update campaign_messages set subscriber_id = $1', [loner!.id]);
      await refused('delete from subscribers where id = $1', [person!.id]);
      await refused('delete from campaigns where id = $1', [campaign!.id]);
      // What nothing refers to goes as before, and a message's other columns change freely.
      await tdb.query('delete from subscribers where id = $1', [loner!.id]);
      await tdb.query(`update campaign_messages set status = 'sent'`);

      // Down: the foreign keys again, and the rows they check.
      const keys = async () => (await tdb.query<{ name: string }>(
        `select conname as name from pg_constraint where conrelid = 'campaign_messages'::regclass and contype = 'f' order by 1`)).rows.map((row) => row.name);
      expect(await keys()).toEqual([]);
      const migrator = new Migrator({ db: tdb.db, provider: { getMigrations: migrationFiles } });
      expect((await migrator.migrateTo('0011_add_reconsent_reports')).error).toBeUndefined();
      expect(await keys()).toEqual(['campaign_messages_campaign_id_fkey', 'campaign_messages_subscriber_id_fkey']);
      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      expect(await keys()).toEqual([]);
    } finally {
      await tdb.drop();
    }
  });
  it('0013 copies the facts an audience reads onto every subscription of the person, and keeps them from every writer', async () => {
    const tdb = await createTestDatabase();
    try {
      const migrator = new Migrator({ db: tdb.db, provider: { getMigrations: migrationFiles } });
      expect((await migrator.migrateTo('0012_prepare_for_large_audiences')).error).toBeUndefined();
      const { rows: [news, offers] } = await tdb.query<{ id: string }>(`insert into lists (slug, name) values ('news', 'News'), ('offers', 'Offers') returning id`);
      const { rows: [ada] } = await tdb.query<{ id: string }>(`
        insert into subscribers (email, locale, attributes, affinity_cap) values ('ada@example.org', 'fr', '{"plan":"pro"}', 'known') returning id`);
      const { rows: [bob] } = await tdb.query<{ id: string }>(`insert into subscribers (email, locale) values ('bob@example.org', 'de') returning id`);
      await tdb.query(`insert into affinity_events (subscriber_id, level, reason) values ($1, 'engaged', 'a')`, [ada!.id]);
      await tdb.query(`insert into suppressions (address_hash, reason) values ($1, 'complained')`, [addressHash('bob@example.org')]);
      await tdb.query(`insert into subscriptions (subscriber_id, list_id, status) values ($1, $3, 'confirmed'), ($2, $3, 'confirmed')`, [ada!.id, bob!.id, news!.id]);

      const facts = async (id: string) => (await tdb.query(`
        select list_id::text as list, person_locale as locale, person_attributes as attributes, person_affinity_level as level,
          person_affinity_cap as cap, person_reachable as reachable
        from subscriptions where subscriber_id = $1 order by list_id`, [id])).rows;
      // Filled for subscriptions already there.
      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      const adaOnNews = { list: news!.id, locale: 'fr', attributes: { plan: 'pro' }, level: 'engaged', cap: 'known', reachable: true };
      expect(await facts(ada!.id)).toEqual([adaOnNews]);
      expect(await facts(bob!.id)).toEqual([{ list: news!.id, locale: 'de', attributes: {}, level: null, cap: null, reachable: false }]);

      // A new subscription starts with them; a change of each reaches every subscription of the person.
      await tdb.query(`insert into subscriptions (subscriber_id, list_id, status) values ($1, $2, 'pending')`, [ada!.id, offers!.id]);
      expect(await facts(ada!.id)).toEqual([adaOnNews, { ...adaOnNews, list: offers!.id }]);
      await tdb.query(`update subscribers set locale = 'es', attributes = '{"plan":"free"}', affinity_cap = null where id = $1`, [ada!.id]);
      await tdb.query(`insert into affinity_events (subscriber_id, level, reason) values ($1, 'confirmed', 'b')`, [ada!.id]);
      const changed = { locale: 'es', attributes: { plan: 'free' }, level: 'confirmed', cap: null, reachable: true };
      expect(await facts(ada!.id)).toEqual([{ list: news!.id, ...changed }, { list: offers!.id, ...changed }]);

      // Suppressions added and lifted, and erasure.
      await tdb.query(`insert into suppressions (address_hash, reason) values ($1, 'bounced')`, [addressHash('ada@example.org')]);
      expect((await facts(ada!.id)).map((row) => row.reachable)).toEqual([false, false]);
      await tdb.query(`delete from suppressions where address_hash = $1`, [addressHash('bob@example.org')]);
      expect((await facts(bob!.id)).map((row) => row.reachable)).toEqual([true]);
      await tdb.query(`update subscribers set email = null, erased_at = now() where id = $1`, [bob!.id]);
      expect((await facts(bob!.id)).map((row) => row.reachable)).toEqual([false]);
      await tdb.query(`delete from suppressions where address_hash = $1`, [addressHash('ada@example.org')]);
      expect((await facts(ada!.id)).map((row) => row.reachable)).toEqual([true, true]);

      // Down and up again: gone, then filled anew from the people.
      expect((await migrator.migrateTo('0012_prepare_for_large_audiences')).error).toBeUndefined();
      await tdb.query(`update subscribers set locale = 'it' where id = $1`, [ada!.id]);
      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      expect((await facts(ada!.id)).map((row) => row.locale)).toEqual(['it', 'it']);
    } finally {
      await tdb.drop();
    }
  });
});
