// Bounces and complaints (issue 18): each report about a mail of ours, kept once (its
// report_id) so that a report arriving twice is handled once; the campaign's reason for
// pausing itself; and the indexes that find a mail by its Message-ID when a report carries no
// VERP tag. Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // Only reports that matched a mail of ours are kept: a stranger's garbage leaves no row.
  // `raw` is the report as it came (the message, or the provider's event), for support; it is
  // cleared after 30 days and when the person is erased. The rest is counts and rules:
  // soft bounces in 15 days, a campaign's complaints and bounces.
  await sql`
    create table inbound_reports (
      report_id text primary key,
      provider text not null check (provider in ('smtp', 'ses', 'postmark', 'sendgrid', 'mailgun')),
      kind text not null check (kind in ('permanent', 'temporary', 'complaint', 'delivered', 'not_a_report')),
      effect text not null check (effect in ('bounced', 'complained', 'counted', 'none')),
      subscriber_id uuid not null references subscribers (id),
      campaign_id bigint references campaigns (id),
      outbox_id bigint references outbox (id),
      matched_by text not null check (matched_by in ('verp', 'message_id')),
      status text,
      diagnostic text,
      raw bytea,
      received_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index inbound_reports_subscriber on inbound_reports (subscriber_id, received_at)`.execute(db);
  await sql`create index inbound_reports_campaign on inbound_reports (campaign_id, effect) where campaign_id is not null`.execute(db);
  await sql`create index inbound_reports_raw_held on inbound_reports (received_at) where raw is not null`.execute(db);

  await sql`create index outbox_message_id on outbox (message_id)`.execute(db);
  await sql`create index campaign_messages_message_id on campaign_messages (message_id) where message_id is not null`.execute(db);

  // Why a campaign paused itself (complaint or bounce rate); null when a person paused it.
  await sql`alter table campaigns add column paused_reason text`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table campaigns drop column paused_reason`.execute(db);
  await sql`drop index campaign_messages_message_id`.execute(db);
  await sql`drop index outbox_message_id`.execute(db);
  await db.schema.dropTable('inbound_reports').execute();
}
