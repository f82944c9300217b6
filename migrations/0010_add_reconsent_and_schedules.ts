// When the terms change (issue 20): a consent version may be a material change, after which
// campaigns reach only those who agreed to it or a later one; the re-consent mails, one per
// person and version; and scheduled, segmented campaigns.
// Depends on nothing after 0007. Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // A material version asks everyone confirmed on an earlier one to agree again. The list's
  // `reconsent_from` is its highest material version: derived, so it cannot disagree.
  await sql`alter table list_consent_versions add column material boolean not null default false`.execute(db);

  // One row per list, material version and person: the send ledger of the re-consent mails,
  // and what makes "mailed once per version" hold (the primary key), the queue columns as
  // campaign_messages has them. No address: it is read from the subscriber at send time.
  await sql`
    create table reconsent_messages (
      list_id bigint not null,
      version integer not null,
      subscriber_id uuid not null references subscribers (id),
      status text not null default 'queued' check (status in ('queued', 'sent', 'failed', 'skipped')),
      attempts integer not null default 0,
      run_at timestamptz not null default now(),
      locked_by text,
      locked_until timestamptz,
      message_id text,
      smtp_response text,
      last_error text,
      created_at timestamptz not null default now(),
      sent_at timestamptz,
      primary key (list_id, version, subscriber_id),
      foreign key (list_id, version) references list_consent_versions (list_id, version)
    )`.execute(db);
  await sql`create index reconsent_messages_due on reconsent_messages (run_at) where status = 'queued'`.execute(db);

  // send_at: when a scheduled campaign starts by itself; segment: who among the list it reaches.
  await sql`alter table campaigns add column send_at timestamptz`.execute(db);
  await sql`alter table campaigns add column segment jsonb`.execute(db);
  await sql`create index campaigns_scheduled on campaigns (send_at) where status = 'scheduled'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index campaigns_scheduled`.execute(db);
  await sql`alter table campaigns drop column segment`.execute(db);
  await sql`alter table campaigns drop column send_at`.execute(db);
  await db.schema.dropTable('reconsent_messages').execute();
  await sql`alter table list_consent_versions drop column material`.execute(db);
}
