// Campaigns, their per-recipient send ledger, the shared send-rate bucket, and the cap a
// person may put on how personal mails to them may be.
// Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table campaigns (
      id bigint generated always as identity primary key,
      name text not null,
      list_id bigint not null references lists (id),
      subject text not null,
      mjml text not null,
      -- the MJML compiled once, Liquid left in place for the per-recipient render
      html_template text not null,
      text_template text not null,
      min_affinity text not null default 'confirmed' check (min_affinity in ('confirmed', 'known', 'engaged')),
      status text not null default 'draft' check (status in ('draft', 'sending', 'paused', 'sent', 'cancelled')),
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      sending_at timestamptz,
      finished_at timestamptz
    )`.execute(db);

  // One row per campaign and recipient, fixed when sending starts: the send ledger, and what
  // makes sending idempotent (the primary key). No address here: it is read from the
  // subscriber at send time, so erasure and unsubscribes are seen by every later send.
  await sql`
    create table campaign_messages (
      campaign_id bigint not null references campaigns (id),
      subscriber_id uuid not null references subscribers (id),
      status text not null default 'queued' check (status in ('queued', 'sent', 'failed', 'skipped')),
      attempts integer not null default 0,
      run_at timestamptz not null default now(),
      locked_by text,
      locked_until timestamptz,
      message_id text,
      smtp_response text,
      last_error text,
      sent_at timestamptz,
      primary key (campaign_id, subscriber_id)
    )`.execute(db);
  // The claim reads only rows still to send, oldest first.
  await sql`create index campaign_messages_due on campaign_messages (run_at) where status = 'queued'`.execute(db);

  // SEND_RATE across every worker: one token bucket row, refilled by elapsed time.
  await sql`
    create table send_rate_bucket (
      id integer primary key check (id = 1),
      tokens double precision not null,
      refilled_at timestamptz not null
    )`.execute(db);
  await sql`insert into send_rate_bucket (id, tokens, refilled_at) values (1, 0, now())`.execute(db);

  // The person's own limit on personalisation: mails use the lower of this and the recorded level.
  await sql`alter table subscribers add column affinity_cap text check (affinity_cap in ('confirmed', 'known', 'engaged'))`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table subscribers drop column affinity_cap`.execute(db);
  await db.schema.dropTable('send_rate_bucket').execute();
  await db.schema.dropTable('campaign_messages').execute();
  await db.schema.dropTable('campaigns').execute();
}
