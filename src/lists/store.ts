// The lists' SQL: lists, their versioned consent wording, and counts of their subscriptions.
// consent/ and campaigns/ both read lists, so their statements live here, below both.
import { type Expression, type QueryCreator, sql } from 'kysely';
import type { Database, Trx } from '../db/database.js';
import type { DB } from '../db/schema.js';
import type { SubscriptionStatus } from '../domain.js';

type Db = Database | Trx;

export interface ListWithConsent {
  id: string;
  slug: string;
  name: string;
  fields: string[];
  consentVersion: number;
  consentText: string;
}

/** A list with its current consent wording: a query to finish, or a CTE of a larger statement (consent/store.ts). */
export const listWithConsent = (db: QueryCreator<DB>) => db
  .selectFrom('lists as l')
  .innerJoin('list_consent_versions as v', 'v.list_id', 'l.id')
  .select(['l.id', 'l.slug', 'l.name', 'l.fields', 'v.version as consentVersion', 'v.text as consentText'])
  .where('v.version', '=', (eb) => eb.selectFrom('list_consent_versions').select(eb.fn.max('version').as('v')).whereRef('list_id', '=', 'l.id'));

export async function findListBySlug(db: Db, slug: string): Promise<ListWithConsent | undefined> {
  return listWithConsent(db).where('l.slug', '=', slug).executeTakeFirst();
}

export async function findListById(db: Db, id: string): Promise<ListWithConsent | undefined> {
  return listWithConsent(db).where('l.id', '=', id).executeTakeFirst();
}

/** At most two lists: enough to tell whether exactly one exists. */
export async function findOnlyLists(db: Db): Promise<ListWithConsent[]> {
  return listWithConsent(db).orderBy('l.id').limit(2).execute();
}

export async function listAllLists(db: Db): Promise<ListWithConsent[]> {
  return listWithConsent(db).orderBy('l.slug').execute();
}

export async function listNamesBySlug(db: Db): Promise<Map<string, string>> {
  const rows = await db.selectFrom('lists').select(['slug', 'name']).execute();
  return new Map(rows.map((list) => [list.slug, list.name]));
}

export async function countSubscriptionsByStatus(db: Db): Promise<{ listId: string; status: SubscriptionStatus; count: number }[]> {
  const rows = await db.selectFrom('subscriptions')
    .select(['list_id as listId', 'status', (eb) => eb.fn.countAll<string>().as('count')])
    .groupBy(['list_id', 'status'])
    .execute();
  return rows.map((row) => ({ ...row, count: Number(row.count) }));
}

export async function insertList(trx: Trx, list: { slug: string; name: string; fields: string[] }): Promise<string | undefined> {
  const row = await trx.insertInto('lists')
    .values(list)
    .onConflict((oc) => oc.column('slug').doNothing())
    .returning('id')
    .executeTakeFirst();
  return row?.id;
}

/** Locks the list row, so concurrent edits number their consent versions one after another. */
export async function lockListBySlug(trx: Trx, slug: string): Promise<{ id: string } | undefined> {
  return trx.selectFrom('lists').select('id').where('slug', '=', slug).forUpdate().executeTakeFirst();
}

export async function updateList(trx: Trx, id: string, changes: { name?: string; fields?: string[] }): Promise<void> {
  await trx.updateTable('lists').set({ ...changes, updated_at: sql`now()` }).where('id', '=', id).execute();
}

/**
 * The next version of a list's wording; inserts nothing when the text is unchanged. Says
 * whether it inserted. `material`: a change people must agree to again (reconsent).
 */
export async function insertConsentVersion(trx: Trx, listId: string, text: string, options: { material?: boolean } = {}): Promise<boolean> {
  const result = await sql`
    insert into list_consent_versions (list_id, version, text, material)
    select ${listId}, coalesce(max(version), 0) + 1, ${text}, ${options.material ?? false}
    from list_consent_versions where list_id = ${listId}
    having coalesce((array_agg(text order by version desc))[1], '') <> ${text}
  `.execute(trx);
  return Number(result.numAffectedRows ?? 0n) > 0;
}

/**
 * The version from which a list's campaigns need agreement: its highest material version, or
 * null when none was. In SQL for the statements that use it as a rule (the audience, the
 * re-consent run): one uncorrelated subquery, evaluated once per statement.
 */
export function reconsentFromSql(listId: Expression<string> | string) {
  return sql<number | null>`(select max(v.version) from list_consent_versions v where v.list_id = ${listId} and v.material)`;
}

/**
 * Per list that had a material change: its version, and how many confirmed subscribers have
 * not yet agreed to it or a later one (those the terms rule keeps out of campaigns).
 */
export async function reconsentStates(db: Db, listIds: string[]): Promise<Map<string, { reconsentFrom: number; awaiting: number }>> {
  if (listIds.length === 0) return new Map();
  const { rows } = await sql<{ list_id: string; reconsent_from: number; awaiting: string }>`
    select m.list_id::text as list_id, m.reconsent_from,
      (select count(*) from subscriptions x
        where x.list_id = m.list_id and x.status = 'confirmed' and coalesce(x.consent_version, 0) < m.reconsent_from) as awaiting
    from (
      select list_id, max(version) as reconsent_from from list_consent_versions
      where material and list_id = any(${listIds}::bigint[]) group by list_id
    ) m
  `.execute(db);
  return new Map(rows.map((row) => [row.list_id, { reconsentFrom: row.reconsent_from, awaiting: Number(row.awaiting) }]));
}

export async function findConsentText(db: Db, listId: string, version: number): Promise<string | undefined> {
  const row = await db.selectFrom('list_consent_versions').select('text')
    .where('list_id', '=', listId).where('version', '=', version).executeTakeFirst();
  return row?.text;
}
