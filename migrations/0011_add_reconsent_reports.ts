// Bounces and complaints about re-consent mails (issue 20 after issue 18): a report names the
// re-consent mail it was about, as it names a campaign's or an outbox mail; and the index that
// finds a sent re-consent mail by its Message-ID when a report carries no VERP tag.
// Depends on 0008 and 0010. Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // The mail is reconsent_messages' key: these two and the report's subscriber_id. Nullable
  // columns, not a generic (kind, id) pair, so the foreign key holds; with either null the key
  // is not checked (MATCH SIMPLE), and the check keeps them both set or both unset.
  await sql`alter table inbound_reports add column reconsent_list_id bigint, add column reconsent_version integer`.execute(db);
  await sql`
    alter table inbound_reports
      add constraint inbound_reports_reconsent_whole check ((reconsent_list_id is null) = (reconsent_version is null)),
      add constraint inbound_reports_reconsent_fkey foreign key (reconsent_list_id, reconsent_version, subscriber_id)
        references reconsent_messages (list_id, version, subscriber_id)`.execute(db);
  await sql`create index reconsent_messages_message_id on reconsent_messages (message_id) where message_id is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index reconsent_messages_message_id`.execute(db);
  await sql`alter table inbound_reports drop column reconsent_version, drop column reconsent_list_id`.execute(db);
}
