// The imports' SQL: the import's row and its counters, its rejections by line, and what one
// batch needs to know before it writes anything (which addresses are suppressed, which on the list).
import { sql } from 'kysely';
import type { Database, Trx } from '../db/database.js';
import type { SubscriptionStatus } from '../domain.js';

type Db = Database | Trx;

export async function insertImport(db: Db, row: { listId: string; createdBy: string; format: 'csv' | 'ndjson'; sha256: Buffer }): Promise<string> {
  const inserted = await db.insertInto('imports')
    .values({ list_id: row.listId, created_by: row.createdBy, format: row.format, file_sha256: row.sha256 })
    .returning('id').executeTakeFirstOrThrow();
  return inserted.id;
}

export interface ImportCounts {
  rows_read: number;
  imported: number;
  pending: number;
  unchanged: number;
  rejected: number;
}

export async function saveProgress(db: Db, id: string, counts: ImportCounts, done?: { status: 'finished' | 'failed'; error?: string }): Promise<void> {
  await db.updateTable('imports')
    .set({ ...counts, ...(done && { status: done.status, error: done.error ?? null, finished_at: sql<Date>`now()` }) })
    .where('id', '=', id).execute();
}

export async function insertRejections(db: Db, id: string, rejections: { line: number; reason: string }[]): Promise<void> {
  if (rejections.length === 0) return;
  await db.insertInto('import_rejections')
    .values(rejections.map((r) => ({ import_id: id, line: r.line, reason: r.reason.slice(0, 300) })))
    .onConflict((oc) => oc.columns(['import_id', 'line']).doNothing())
    .execute();
}

export async function findImport(db: Db, id: string) {
  return db.selectFrom('imports as i').innerJoin('lists as l', 'l.id', 'i.list_id')
    .select(['i.id', 'l.slug as list', 'i.format', 'i.file_sha256', 'i.status', 'i.rows_read', 'i.imported', 'i.pending', 'i.unchanged',
      'i.rejected', 'i.error', 'i.created_at', 'i.finished_at'])
    .where('i.id', '=', id).executeTakeFirst();
}

export async function findRejections(db: Db, id: string, limit: number) {
  return db.selectFrom('import_rejections').select(['line', 'reason']).where('import_id', '=', id).orderBy('line').limit(limit).execute();
}

/** Which of these address hashes are suppressed (erased, bounced, complained), as hex. */
export async function findSuppressed(trx: Trx, addressHashes: readonly Buffer[]): Promise<Set<string>> {
  if (addressHashes.length === 0) return new Set();
  const rows = await trx.selectFrom('suppressions').select('address_hash')
    .where('address_hash', 'in', [...addressHashes]).execute();
  return new Set(rows.map((row) => row.address_hash.toString('hex')));
}

/** The addresses' subscriptions to the list, by lower-cased address (matched as signups match: case-insensitively). */
export async function findSubscriptionStatuses(trx: Trx, emails: readonly string[], listId: string): Promise<Map<string, SubscriptionStatus>> {
  if (emails.length === 0) return new Map();
  const rows = await trx.selectFrom('subscribers as s').innerJoin('subscriptions as x', 'x.subscriber_id', 's.id')
    .select([sql<string>`lower(s.email)`.as('email'), 'x.status'])
    .where(sql`lower(s.email)`, 'in', emails.map((email) => email.toLowerCase())).where('x.list_id', '=', listId)
    .execute();
  return new Map(rows.map((row) => [row.email, row.status]));
}

// The writes of a batch's new confirmed subscriptions (imports.ts importConsentedAtOnce): what
// consent/store.ts's upsertSignup, applySubscriberFields, markSubscriptionConfirmed and
// recordFirstAffinity do for one row, for all of a batch's rows in one statement each.

export interface ImportedPerson {
  /** Lower-cased: the key subscribers are unique on. */
  key: string;
  email: string;
  /** A new subscriber's locale; an existing one keeps theirs unless `givenLocale`. */
  locale: string;
  givenLocale: string | null;
  firstName: string | null;
  lastName: string | null;
  /** A JSON object as text, merged over what is held. */
  attributes: string | null;
}

/** Adds the subscribers not held yet (the caller holds their mailboxes' locks). */
export async function insertMissingSubscribers(trx: Trx, people: readonly ImportedPerson[]): Promise<void> {
  await sql`
    insert into subscribers (email, locale)
    select * from unnest(${people.map((p) => p.email)}::text[], ${people.map((p) => p.locale)}::text[])
    on conflict (lower(email)) do nothing`.execute(trx);
}

/** Applies each row's names, locale and attributes where the row gave them; returns the subscribers' ids by key. */
export async function applyImportedFields(trx: Trx, people: readonly ImportedPerson[]): Promise<Map<string, string>> {
  const { rows } = await sql<{ id: string; key: string }>`
    update subscribers as s set
      first_name = coalesce(given.first_name, s.first_name),
      last_name = coalesce(given.last_name, s.last_name),
      locale = coalesce(given.locale, s.locale),
      attributes = case when given.attributes is null then s.attributes else s.attributes || given.attributes end,
      updated_at = now()
    from unnest(${people.map((p) => p.key)}::text[], ${people.map((p) => p.firstName)}::text[], ${people.map((p) => p.lastName)}::text[],
      ${people.map((p) => p.givenLocale)}::text[], ${people.map((p) => p.attributes)}::jsonb[]) as given(key, first_name, last_name, locale, attributes)
    where lower(s.email) = given.key
    returning s.id, given.key`.execute(trx);
  return new Map(rows.map((row) => [row.key, row.id]));
}

/** Their subscriptions to the list, confirmed at `at` on the list's current wording (none existed: the caller checked). */
export async function insertConfirmedSubscriptions(trx: Trx, subscriberIds: readonly string[], list: { id: string; consentVersion: number }, at: Date): Promise<void> {
  await sql`
    insert into subscriptions (subscriber_id, list_id, status, consent_version, confirmed_at)
    select given.id, ${list.id}::bigint, 'confirmed', ${list.consentVersion}::int, ${at}::timestamptz from unnest(${[...subscriberIds]}::uuid[]) as given(id)`.execute(trx);
}

/** The first affinity level for those who had none (recordFirstAffinity, for many). */
export async function recordFirstAffinities(trx: Trx, subscriberIds: readonly string[]): Promise<void> {
  await sql`
    insert into affinity_events (subscriber_id, level, reason)
    select given.id, 'confirmed', 'confirmed a signup' from unnest(${[...subscriberIds]}::uuid[]) as given(id)
    where not exists (select 1 from affinity_events as a where a.subscriber_id = given.id)`.execute(trx);
}
