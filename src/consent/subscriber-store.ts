// SQL for reading, exporting and erasing subscribers: one function per statement.
import { sql } from 'kysely';
import { anyOf, type Database, type Trx } from '../db/database.js';
import { type AffinityLevel, OPEN_SUBSCRIPTION_STATUSES, type SubscriptionStatus } from '../domain.js';

type Db = Database | Trx;

const subscriberColumns = ['s.id', 's.email', 's.first_name', 's.last_name', 's.attributes', 's.locale', 's.created_at', 's.updated_at', 's.affinity_level'] as const;

export interface SubscriberFilter {
  email?: string | undefined;
  listId?: string | undefined;
  status?: SubscriptionStatus | undefined;
  /** Keyset paging: only ids after this one. */
  after?: string | undefined;
  limit: number;
}

/** One page of live (not erased) subscribers in id order; `limit + 1` rows tell whether more follow. */
export async function findSubscribers(db: Db, filter: SubscriberFilter) {
  let query = db.selectFrom('subscribers as s').select(subscriberColumns).where('s.erased_at', 'is', null);
  if (filter.email !== undefined) query = query.where(sql`lower(s.email)`, '=', filter.email.toLowerCase());
  if (filter.listId !== undefined || filter.status !== undefined) {
    query = query.where((eb) => eb.exists(eb.selectFrom('subscriptions as x').select(sql`1`.as('one'))
      .whereRef('x.subscriber_id', '=', 's.id')
      .$if(filter.listId !== undefined, (q) => q.where('x.list_id', '=', filter.listId!))
      .$if(filter.status !== undefined, (q) => q.where('x.status', '=', filter.status!))));
  }
  if (filter.after !== undefined) query = query.where('s.id', '>', filter.after);
  return query.orderBy('s.id').limit(filter.limit + 1).execute();
}

/** One page of subscriber ids after `after`, in id order, the erased too (their chains still verify). */
export async function subscriberIdsAfter(db: Db, after: string, limit: number): Promise<string[]> {
  const rows = await db.selectFrom('subscribers').select('id').where('id', '>', after).orderBy('id').limit(limit).execute();
  return rows.map((row) => row.id);
}

export async function findSubscriber(db: Db, id: string) {
  return db.selectFrom('subscribers as s').select(subscriberColumns)
    .where('s.id', '=', id).where('s.erased_at', 'is', null).executeTakeFirst();
}

export async function subscriptionsOf(db: Db, subscriberIds: string[]) {
  if (subscriberIds.length === 0) return [];
  return db.selectFrom('subscriptions as x')
    .innerJoin('lists as l', 'l.id', 'x.list_id')
    .leftJoin('list_consent_versions as v', (join) => join.onRef('v.list_id', '=', 'x.list_id').onRef('v.version', '=', 'x.consent_version'))
    .select(['x.subscriber_id', 'l.slug as list', 'x.status', 'x.consent_version', 'v.text as consent_text',
      'x.requested_at', 'x.confirmed_at', 'x.unsubscribed_at'])
    .where('x.subscriber_id', '=', anyOf(subscriberIds, 'uuid'))
    .orderBy('l.slug')
    .execute();
}

export async function affinityEventsOf(db: Db, subscriberId: string) {
  return db.selectFrom('affinity_events').select(['level', 'reason', 'recorded_by', 'occurred_at'])
    .where('subscriber_id', '=', subscriberId).orderBy('id').execute();
}

export async function insertAffinityEvent(trx: Trx, event: { subscriberId: string; level: AffinityLevel; reason: string; recordedBy: string }) {
  return trx.insertInto('affinity_events')
    .values({ subscriber_id: event.subscriberId, level: event.level, reason: event.reason, recorded_by: event.recordedBy })
    .returning(['level', 'reason', 'recorded_by', 'occurred_at'])
    .executeTakeFirstOrThrow();
}

export async function consentEventListSlugs(db: Db, subscriberId: string): Promise<Map<string, string>> {
  const rows = await db.selectFrom('consent_events as e').innerJoin('lists as l', 'l.id', 'e.list_id')
    .select(['l.id', 'l.slug']).distinct().where('e.subscriber_id', '=', subscriberId).execute();
  return new Map(rows.map((row) => [row.id, row.slug]));
}

export async function mailsTo(db: Db, subscriberId: string) {
  return db.selectFrom('outbox').select(['kind', 'message_id', 'subject', 'text', 'status', 'created_at', 'sent_at'])
    .where('subscriber_id', '=', subscriberId).orderBy('id').execute();
}

// Erasure, statement by statement. The caller holds the subscriber's row lock.

/** Lets this transaction delete the subscriber's affinity events (see migration 0002). */
export async function allowErasure(trx: Trx): Promise<void> {
  await sql`select set_config('assent.erasing', 'on', true)`.execute(trx);
}

export async function deleteEvidenceOf(trx: Trx, subscriberId: string): Promise<void> {
  await trx.deleteFrom('consent_evidence')
    .where('event_id', 'in', (eb) => eb.selectFrom('consent_events').select('id').where('subscriber_id', '=', subscriberId))
    .execute();
}

export async function deleteAffinityEventsOf(trx: Trx, subscriberId: string): Promise<void> {
  await trx.deleteFrom('affinity_events').where('subscriber_id', '=', subscriberId).execute();
}

/** Mail bodies and answers name the person; queued mail to them is never sent. */
export async function scrubMailsTo(trx: Trx, subscriberId: string): Promise<void> {
  await trx.updateTable('outbox')
    .set({
      recipient: null, subject: null, html: null, text: null, smtp_response: null,
      status: sql`case when status = 'queued' then 'failed' else status end`,
      last_error: sql`case when status = 'queued' then 'recipient erased' else null end`,
      locked_by: null, locked_until: null,
    })
    .where('subscriber_id', '=', subscriberId)
    .execute();
}

export async function closeSubscriptionsOf(trx: Trx, subscriberId: string): Promise<void> {
  const open = sql`status = any(${OPEN_SUBSCRIPTION_STATUSES}::text[])`;
  await trx.updateTable('subscriptions')
    .set({
      status: sql`case when ${open} then 'unsubscribed' else status end`,
      unsubscribed_at: sql`case when ${open} then now() else unsubscribed_at end`,
      pending_fields: null, pending_since: null, updated_at: sql`now()`,
    })
    .where('subscriber_id', '=', subscriberId)
    .execute();
}

export async function blankSubscriber(trx: Trx, subscriberId: string): Promise<void> {
  await trx.updateTable('subscribers')
    .set({
      email: null, first_name: null, last_name: null, attributes: '{}', affinity_level: null, affinity_event_id: null,
      erased_at: sql`now()`, updated_at: sql`now()`,
    })
    .where('id', '=', subscriberId)
    .execute();
}

export async function insertSuppression(trx: Trx, addressHash: Buffer, reason: string): Promise<void> {
  await trx.insertInto('suppressions').values({ address_hash: addressHash, reason })
    .onConflict((oc) => oc.column('address_hash').doNothing()).execute();
}

/**
 * Stored API answers about the person (those naming their id or address): a replayed retry
 * must not bring back what erasure removed.
 */
export async function deleteIdempotentAnswersAbout(trx: Trx, subscriber: { id: string; email: string }): Promise<void> {
  await trx.deleteFrom('idempotency_keys')
    .where((eb) => eb.or([
      eb(sql`strpos(body, ${subscriber.id})`, '>', 0),
      eb(sql`strpos(lower(body), ${subscriber.email.toLowerCase()})`, '>', 0),
    ]))
    .execute();
}

export async function affinityCapOf(db: Db, subscriberId: string): Promise<AffinityLevel | null> {
  const row = await db.selectFrom('subscribers').select('affinity_cap').where('id', '=', subscriberId).executeTakeFirst();
  return row?.affinity_cap ?? null;
}

export async function updateSubscriberLocale(db: Db, subscriberId: string, locale: string): Promise<void> {
  await db.updateTable('subscribers').set({ locale, updated_at: sql`now()` }).where('id', '=', subscriberId).execute();
}

export async function updateAffinityCap(db: Db, subscriberId: string, cap: AffinityLevel | null): Promise<void> {
  await db.updateTable('subscribers').set({ affinity_cap: cap, updated_at: sql`now()` }).where('id', '=', subscriberId).execute();
}

export async function lockSubscriberByEmail(trx: Trx, key: string): Promise<{ id: string; email: string } | undefined> {
  const row = await trx.selectFrom('subscribers').select(['id', 'email'])
    .where(sql`lower(email)`, '=', key).where('erased_at', 'is', null).forUpdate().executeTakeFirst();
  return row && row.email !== null ? { id: row.id, email: row.email } : undefined;
}
