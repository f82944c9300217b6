// The consent module's SQL: one exported function per statement, named for what it does.
import { sql } from 'kysely';
import { type Database, precompiled, type Trx } from '../db/database.js';
import type { NewOutboxMail } from '../db/schema.js';
import type { AffinityLevel, OutboxMailKind, SubscriptionStatus } from '../domain.js';
import { type ListWithConsent, listWithConsent } from '../lists/store.js';
import { chainHeadColumns } from './ledger.js';

type Db = Database | Trx;

export async function lockSubscriber(trx: Trx, id: string): Promise<{ id: string; email: string; locale: string; affinity_level: AffinityLevel | null } | undefined> {
  const row = await trx.selectFrom('subscribers').select(['id', 'email', 'locale', 'affinity_level'])
    .where('id', '=', id).where('erased_at', 'is', null).forUpdate().executeTakeFirst();
  return row && row.email !== null ? { ...row, email: row.email } : undefined;
}

export async function findSubscriberLocale(db: Db, id: string): Promise<string | undefined> {
  const row = await db.selectFrom('subscribers').select('locale')
    .where('id', '=', id).where('erased_at', 'is', null).executeTakeFirst();
  return row?.locale;
}

// Signups of one mailbox take turns, whatever its spelling: spellings are different subscriber
// rows, so row locks alone let `a.b+x@gmail.com` and `ab@gmail.com` pass the throttles side by
// side. The lock is PostgreSQL's transaction-level advisory lock in its two-key form: this
// class ('mbox'), then a hash of the mailbox key. A hash collision only makes two unrelated
// signups wait for each other.
const MAILBOX_LOCK_CLASS = 0x6d626f78;

/**
 * A signup's first statement: the mailbox's lock, then the list with its current wording,
 * and the subscriber and their subscription to it, each found or created (as pending) and
 * locked for the transaction, subscriber first. The insert reads from the lock's CTE, so the
 * lock is taken before any row lock. One statement rather than four, because each round trip
 * to PostgreSQL costs the signup more than the SQL does (npm run bench). No row when there
 * is no such list (the caller rolls back).
 */
const upsertSignupStatement = precompiled((db, signup: { listSlug: string; email: string; locale: string }) => db
  .with('list', (db) => listWithConsent(db).where('l.slug', '=', signup.listSlug))
  .with('mailbox', (db) => db.selectNoFrom(
    sql`pg_advisory_xact_lock(${sql.lit(MAILBOX_LOCK_CLASS)}, hashtext(mailbox_key_of(${signup.email}::text)))`.as('locked')))
  .with('subscriber', (db) => db.insertInto('subscribers')
    .columns(['email', 'locale'])
    .expression((eb) => eb.selectFrom('mailbox')
      .select([sql<string>`${signup.email}::text`.as('email'), sql<string>`${signup.locale}::text`.as('locale')]))
    .onConflict((oc) => oc.expression(sql`lower(email)`).doUpdateSet({ updated_at: sql`subscribers.updated_at` }))
    .returning(['id', 'email', 'mailbox_key']))
  .with('subscription', (db) => db.insertInto('subscriptions')
    .columns(['subscriber_id', 'list_id', 'status'])
    .expression((eb) => eb.selectFrom(['subscriber', 'list'])
      .select(['subscriber.id as subscriber_id', 'list.id as list_id', sql<SubscriptionStatus>`'pending'`.as('status')]))
    .onConflict((oc) => oc.columns(['subscriber_id', 'list_id']).doUpdateSet({ status: sql`subscriptions.status` }))
    .returning(['status', 'pending_since']))
  .selectFrom(['list', 'subscriber', 'subscription'])
  .select(['list.id as listId', 'list.slug', 'list.name', 'list.fields', 'list.consentVersion', 'list.consentText',
    'subscriber.id as subscriberId', 'subscriber.email', 'subscriber.mailbox_key as mailboxKey',
    'subscription.status', 'subscription.pending_since']));

export async function upsertSignup(trx: Trx, signup: { listSlug: string; email: string; locale: string }) {
  const row = (await upsertSignupStatement(trx, signup)).rows[0];
  if (!row) return undefined;
  const { listId, slug, name, fields, consentVersion, consentText, subscriberId, email, mailboxKey, ...subscription } = row;
  return {
    list: { id: listId, slug, name, fields, consentVersion, consentText } satisfies ListWithConsent,
    subscriber: { id: subscriberId, email: email!, mailboxKey: mailboxKey! },
    subscription,
  };
}

export async function lockSubscription(trx: Trx, subscriberId: string, listId: string) {
  return trx.selectFrom('subscriptions')
    .select(['status', 'pending_since', 'pending_fields', 'pending_consent_version', 'consent_version'])
    .where('subscriber_id', '=', subscriberId).where('list_id', '=', listId)
    .forUpdate()
    .executeTakeFirst();
}

export async function findSubscription(db: Db, subscriberId: string, listId: string) {
  return db.selectFrom('subscriptions')
    .select(['status', 'pending_since'])
    .where('subscriber_id', '=', subscriberId).where('list_id', '=', listId)
    .executeTakeFirst();
}

/**
 * What a signup checks once it holds the mailbox's lock, in one round trip: the head of the
 * subscriber's consent chain (ledger.chainHeadColumns), how many confirmation mails went to
 * the mailbox since `since`, and when one last went to it for this list, over every spelling
 * of the address. All are read after the lock, so all see every earlier signup.
 */
const signupHeadStatement = precompiled((db, args: { subscriberId: string; mailboxKey: string; listId: string; since: Date }) => db
  .selectNoFrom((eb) => {
    const spellings = eb.selectFrom('subscribers').select('id').where('mailbox_key', '=', args.mailboxKey);
    return [
      ...chainHeadColumns(eb, args.subscriberId),
      eb.selectFrom('outbox').select((ob) => ob.fn.countAll<string>().as('count'))
        .where('subscriber_id', 'in', spellings).where('kind', '=', 'confirmation').where('created_at', '>', args.since).as('mails'),
      eb.selectFrom('subscriptions').select((sb) => sb.fn.max('last_confirmation_mail_at').as('last'))
        .where('subscriber_id', 'in', spellings).where('list_id', '=', args.listId).as('last_mail_to_list'),
    ];
  }));

export async function signupHead(trx: Trx, key: { subscriberId: string; mailboxKey: string; listId: string }, since: Date): Promise<{
  head: { now: Date; prevHash: Buffer | null }; mailsSince: number; lastMailToList: Date | null;
}> {
  const row = (await signupHeadStatement(trx, { ...key, since })).rows[0]!;
  return { head: { now: row.now, prevHash: row.prev_hash }, mailsSince: Number(row.mails), lastMailToList: row.last_mail_to_list };
}

/** Takes the mailbox's lock (MAILBOX_LOCK_CLASS) for the rest of the transaction, whatever the spelling. */
export async function lockMailbox(trx: Trx, email: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(${sql.lit(MAILBOX_LOCK_CLASS)}, hashtext(mailbox_key_of(${email}::text)))`.execute(trx);
}

/**
 * Takes the mailbox locks of many addresses at once (an import's batch), in the order of
 * their keys so that two batches sharing addresses cannot deadlock; signups take one lock each.
 */
export async function lockMailboxes(trx: Trx, emails: readonly string[]): Promise<void> {
  if (emails.length === 0) return;
  await sql`select pg_advisory_xact_lock(${sql.lit(MAILBOX_LOCK_CLASS)}, k)
    from (select distinct hashtext(mailbox_key_of(e)) as k from unnest(${[...emails]}::text[]) as e order by k) as keys`.execute(trx);
}

/** Mails of one kind to a person's mailbox, over every spelling of it, since a time: the resend throttles. */
export async function countMailboxMailsSince(trx: Trx, subscriberId: string, kind: OutboxMailKind, since: Date): Promise<number> {
  const row = await trx.selectFrom('outbox').select((eb) => eb.fn.countAll<string>().as('count'))
    .where('subscriber_id', 'in', (eb) => eb.selectFrom('subscribers as spelling').select('spelling.id')
      .where('spelling.mailbox_key', '=', (eb) => eb.selectFrom('subscribers').select('mailbox_key').where('id', '=', subscriberId)))
    .where('kind', '=', kind).where('created_at', '>', since)
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

/** The subscription asked for again, with its confirmation mail queued in the outbox: one statement. */
const markSubscriptionRequestedStatement = precompiled((db, args: {
  subscriberId: string; listId: string; now: Date; pendingSince: Date; fields: string; consentVersion: number;
  kind: OutboxMailKind; recipient: string; messageId: string; subject: string; html: string; text: string;
}) => db
  .with('mail', (db) => db.insertInto('outbox').values({
    kind: args.kind, subscriber_id: args.subscriberId, recipient: args.recipient, message_id: args.messageId,
    subject: args.subject, html: args.html, text: args.text, created_at: args.now,
  }))
  .updateTable('subscriptions')
  .set({
    status: 'pending',
    pending_since: args.pendingSince,
    pending_fields: args.fields,
    pending_consent_version: args.consentVersion,
    requested_at: args.now,
    last_confirmation_mail_at: args.now,
    updated_at: sql`now()`,
  })
  .where('subscriber_id', '=', args.subscriberId).where('list_id', '=', args.listId));

export async function markSubscriptionRequested(trx: Trx, key: { subscriberId: string; listId: string }, request: {
  now: Date; pendingSince: Date; fields: Record<string, string>; consentVersion: number;
  mail: { kind: OutboxMailKind; recipient: string; messageId: string; subject: string; html: string; text: string };
}): Promise<void> {
  await markSubscriptionRequestedStatement(trx, {
    ...key, ...request.mail, now: request.now, pendingSince: request.pendingSince,
    fields: JSON.stringify(request.fields), consentVersion: request.consentVersion,
  });
}

export async function markSubscriptionConfirmed(trx: Trx, key: { subscriberId: string; listId: string }, confirmation: {
  at: Date; consentVersion: number;
}): Promise<void> {
  await trx.updateTable('subscriptions')
    .set({
      status: 'confirmed',
      consent_version: confirmation.consentVersion,
      confirmed_at: confirmation.at,
      pending_since: null,
      pending_fields: null,
      pending_consent_version: null,
      updated_at: sql`now()`,
    })
    .where('subscriber_id', '=', key.subscriberId).where('list_id', '=', key.listId)
    .execute();
}

export async function markSubscriptionWithdrawn(trx: Trx, key: { subscriberId: string; listId: string }, at: Date): Promise<void> {
  await trx.updateTable('subscriptions')
    .set({ status: 'unsubscribed', unsubscribed_at: at, pending_since: null, pending_fields: null, pending_consent_version: null, updated_at: sql`now()` })
    .where('subscriber_id', '=', key.subscriberId).where('list_id', '=', key.listId)
    .execute();
}

/** What the person typed with their signup, applied once their click proves the address is theirs. */
export async function applySubscriberFields(trx: Trx, id: string, fields: { first_name?: string; last_name?: string; locale?: string; attributes?: string }): Promise<void> {
  if (Object.keys(fields).length === 0) return;
  // attributes: a JSON object as text (a server's signup), merged over what is held.
  const { attributes, ...names } = fields;
  await trx.updateTable('subscribers')
    .set({ ...names, ...(attributes !== undefined && { attributes: sql`attributes || ${attributes}::jsonb` }), updated_at: sql`now()` })
    .where('id', '=', id).execute();
}

/** The first affinity level, on the first confirmation; later confirmations keep what was recorded. */
export async function recordFirstAffinity(trx: Trx, subscriberId: string): Promise<void> {
  await sql`
    insert into affinity_events (subscriber_id, level, reason)
    select ${subscriberId}, 'confirmed', 'confirmed a signup'
    where not exists (select 1 from affinity_events where subscriber_id = ${subscriberId})
  `.execute(trx);
}

export async function deleteSuppression(trx: Trx, addressHash: Buffer): Promise<void> {
  await trx.deleteFrom('suppressions').where('address_hash', '=', addressHash).execute();
}

export async function latestRequestEventId(trx: Trx, subscriberId: string, listId: string): Promise<string | undefined> {
  const row = await trx.selectFrom('consent_events').select('id')
    .where('subscriber_id', '=', subscriberId).where('list_id', '=', listId).where('kind', '=', 'requested')
    .orderBy('id', 'desc').limit(1).executeTakeFirst();
  return row?.id;
}

export async function insertOutboxMail(trx: Trx, mail: NewOutboxMail): Promise<void> {
  await trx.insertInto('outbox').values(mail).execute();
}

export async function insertPreferencesLinkRequest(db: Db, request: { email: string; locale: string; requestedAt: Date }): Promise<void> {
  await db.insertInto('preferences_link_requests')
    .values({ email: request.email, locale: request.locale, requested_at: request.requestedAt })
    .execute();
}

/**
 * Takes the oldest waiting "Lost your mail?" request that no other worker holds: deleted with
 * the transaction, so it is handled once, or stays queued if the transaction fails.
 */
export async function takePreferencesLinkRequest(trx: Trx): Promise<{ email: string; locale: string; requested_at: Date } | undefined> {
  return trx.deleteFrom('preferences_link_requests')
    .where('id', '=', (eb) => eb.selectFrom('preferences_link_requests').select('id').orderBy('id').limit(1).forUpdate().skipLocked())
    .returning(['email', 'locale', 'requested_at'])
    .executeTakeFirst();
}
