// The lists' SQL: lists, their versioned consent wording, and counts of their subscriptions.
// consent/ and campaigns/ both read lists, so their statements live here, below both.
import { type QueryCreator, sql } from 'kysely';
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

/** The next version of a list's wording; inserts nothing when the text is unchanged. */
export async function insertConsentVersion(trx: Trx, listId: string, text: string): Promise<void> {
  await sql`
    insert into list_consent_versions (list_id, version, text)
    select ${listId}, coalesce(max(version), 0) + 1, ${text}
    from list_consent_versions where list_id = ${listId}
    having coalesce((array_agg(text order by version desc))[1], '') <> ${text}
  `.execute(trx);
}

export async function findConsentText(db: Db, listId: string, version: number): Promise<string | undefined> {
  const row = await db.selectFrom('list_consent_versions').select('text')
    .where('list_id', '=', listId).where('version', '=', version).executeTakeFirst();
  return row?.text;
}
