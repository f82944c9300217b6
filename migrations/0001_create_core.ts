// Lists, subscribers, subscriptions, the consent ledger and the transactional outbox.
// Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table lists (
      id bigint generated always as identity primary key,
      slug text not null unique,
      name text not null,
      fields text[] not null default '{first_name,last_name}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db);

  // The wording people agree to. A new text is a new version; old versions stay so that
  // every confirmation keeps pointing at the exact words the person saw.
  await sql`
    create table list_consent_versions (
      list_id bigint not null references lists (id),
      version integer not null,
      text text not null,
      created_at timestamptz not null default now(),
      primary key (list_id, version)
    )`.execute(db);

  // One row per person. Erasure nulls every personal column but keeps the row, because the
  // consent chain of hashes refers to it and must still verify.
  await sql`
    create table subscribers (
      id uuid primary key default gen_random_uuid(),
      email text,
      first_name text,
      last_name text,
      attributes jsonb not null default '{}',
      locale text not null default 'en',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      erased_at timestamptz
    )`.execute(db);
  // Matching is case-insensitive so that changing letter case cannot dodge the throttles.
  await sql`create unique index subscribers_email_key on subscribers (lower(email))`.execute(db);

  await sql`
    create table subscriptions (
      subscriber_id uuid not null references subscribers (id),
      list_id bigint not null references lists (id),
      status text not null check (status in ('pending', 'confirmed', 'unsubscribed', 'bounced', 'complained')),
      -- when the current pending episode began: only confirm links issued since then count,
      -- so an old link cannot undo a later withdrawal
      pending_since timestamptz,
      -- what the person asked for in that request; it takes effect only on confirmation
      pending_fields jsonb,
      pending_consent_version integer,
      consent_version integer,
      requested_at timestamptz,
      confirmed_at timestamptz,
      unsubscribed_at timestamptz,
      last_confirmation_mail_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      primary key (subscriber_id, list_id)
    )`.execute(db);
  await sql`create index subscriptions_list_status on subscriptions (list_id, status)`.execute(db);

  // The ledger: hashes only, never updated or deleted. Each row's hash covers its fields, the
  // hash of its evidence and the previous row's hash for the same subscriber.
  await sql`
    create table consent_events (
      id bigint generated always as identity primary key,
      subscriber_id uuid not null references subscribers (id),
      list_id bigint references lists (id),
      kind text not null check (kind in ('requested', 'confirmed', 'withdrawn', 'erased')),
      occurred_at timestamptz not null,
      evidence_hash bytea not null,
      prev_hash bytea,
      hash bytea not null
    )`.execute(db);
  await sql`create index consent_events_subscriber on consent_events (subscriber_id, id)`.execute(db);

  // The evidence, apart from the ledger so that erasure can remove it while the chain stays.
  await sql`
    create table consent_evidence (
      event_id bigint primary key references consent_events (id),
      evidence jsonb not null
    )`.execute(db);

  await sql`
    create function refuse_change() returns trigger language plpgsql as $$
    begin
      raise exception '% is append-only: % refused', tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
    end $$`.execute(db);
  await sql`
    create trigger consent_events_append_only before update or delete on consent_events
    for each row execute function refuse_change()`.execute(db);
  await sql`
    create trigger consent_events_no_truncate before truncate on consent_events
    for each statement execute function refuse_change()`.execute(db);
  // Evidence may be deleted (erasure) but never rewritten.
  await sql`
    create trigger consent_evidence_no_update before update on consent_evidence
    for each row execute function refuse_change()`.execute(db);

  await sql`
    create table affinity_events (
      id bigint generated always as identity primary key,
      subscriber_id uuid not null references subscribers (id),
      level text not null check (level in ('confirmed', 'known', 'engaged')),
      reason text not null,
      recorded_by text,
      occurred_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index affinity_events_subscriber on affinity_events (subscriber_id, id)`.execute(db);
  await sql`
    create trigger affinity_events_append_only before update or delete on affinity_events
    for each row execute function refuse_change()`.execute(db);

  // What must never be mailed again: a hash of the address, never the address.
  await sql`
    create table suppressions (
      address_hash bytea primary key,
      reason text not null,
      created_at timestamptz not null default now()
    )`.execute(db);

  // Transactional mails, written in the same transaction as the change that causes them and
  // sent by a worker. A row is claimed by setting locked_by/locked_until (a lease): a worker
  // that dies leaves its rows to be taken over once the lease runs out.
  await sql`
    create table outbox (
      id bigint generated always as identity primary key,
      kind text not null,
      subscriber_id uuid references subscribers (id),
      recipient text,
      message_id text not null,
      subject text,
      html text,
      text text,
      status text not null default 'queued' check (status in ('queued', 'sent', 'failed')),
      attempts integer not null default 0,
      run_at timestamptz not null default now(),
      locked_by text,
      locked_until timestamptz,
      last_error text,
      smtp_response text,
      created_at timestamptz not null,
      sent_at timestamptz
    )`.execute(db);
  // The claim scans only what is still to send.
  await sql`create index outbox_due on outbox (run_at) where status = 'queued'`.execute(db);
  await sql`create index outbox_subscriber on outbox (subscriber_id, created_at)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['outbox', 'suppressions', 'affinity_events', 'consent_evidence', 'consent_events',
    'subscriptions', 'subscribers', 'list_consent_versions', 'lists']) {
    await db.schema.dropTable(table).execute();
  }
  await sql`drop function refuse_change()`.execute(db);
}
