// A million-person audience counted and fixed in seconds (issue 20's count, issue 21's fix):
// - What the audience query asked of every person, stored on the person: the hash
//   suppressions are keyed by, and the level of their latest affinity event. Computing the
//   hash per row and probing affinity_events per person were two thirds of the count's time
//   (EXPLAIN ANALYZE in the README). Triggers keep both, so every writer (signup, import, API,
//   erasure) keeps them without knowing.
// - campaign_messages' references checked once per statement instead of once per row: a
//   foreign key probes and share-locks the person's row for each of a million recipients,
//   which was half the time of fixing them. One anti-join over the statement's new rows
//   checks the same; the referenced rows are never deleted (refused below), and the key
//   columns never change (refused below), which is what the row locks were for.
// Depends on 0001, 0002 and 0003. Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    alter table subscribers
      add column address_hash bytea,
      add column affinity_level text,
      add column affinity_event_id bigint`.execute(db);

  // The same expression suppressions' keys are made with (consent/address.ts addressHash).
  await sql`
    create function subscribers_address_hash() returns trigger language plpgsql as $$
    begin
      new.address_hash := case when new.email is null then null else sha256(convert_to(lower(new.email), 'UTF8')) end;
      return new;
    end $$`.execute(db);
  await sql`
    create trigger subscribers_address_hash before insert or update of email on subscribers
    for each row execute function subscribers_address_hash()`.execute(db);

  // Only a later event moves the level: two changes to one person committing out of id order
  // still leave the latest id's level, as "order by id desc limit 1" read it (the update waits
  // for the other's row lock and then re-checks its condition on the row as committed).
  await sql`
    create function subscribers_affinity_level() returns trigger language plpgsql as $$
    begin
      update subscribers set affinity_level = new.level, affinity_event_id = new.id
      where id = new.subscriber_id and (affinity_event_id is null or affinity_event_id < new.id);
      return null;
    end $$`.execute(db);
  await sql`
    create trigger affinity_events_level after insert on affinity_events
    for each row execute function subscribers_affinity_level()`.execute(db);

  await sql`
    alter table campaign_messages
      drop constraint campaign_messages_subscriber_id_fkey,
      drop constraint campaign_messages_campaign_id_fkey`.execute(db);
  await sql`
    create function campaign_messages_check_references() returns trigger language plpgsql as $$
    begin
      if exists (select 1 from added a where not exists (select 1 from subscribers s where s.id = a.subscriber_id)) then
        raise exception 'campaign_messages: a subscriber_id that is not in subscribers' using errcode = 'foreign_key_violation';
      end if;
      if exists (select 1 from added a where not exists (select 1 from campaigns c where c.id = a.campaign_id)) then
        raise exception 'campaign_messages: a campaign_id that is not in campaigns' using errcode = 'foreign_key_violation';
      end if;
      return null;
    end $$`.execute(db);
  await sql`
    create trigger campaign_messages_references after insert on campaign_messages
    referencing new table as added for each statement execute function campaign_messages_check_references()`.execute(db);
  // What the foreign keys refused besides: changing a message's keys, and deleting a person
  // or campaign that messages refer to (nothing here deletes either; an operator could).
  await sql`
    create function campaign_messages_keep_references() returns trigger language plpgsql as $$
    begin
      if tg_table_name = 'campaign_messages' then
        if old.campaign_id is distinct from new.campaign_id or old.subscriber_id is distinct from new.subscriber_id then
          raise exception 'campaign_messages: its keys never change' using errcode = 'foreign_key_violation';
        end if;
        return new;
      end if;
      -- One statement per table: plpgsql plans each with old's type, uuid for one and bigint for the other.
      if tg_table_name = 'subscribers' then
        if exists (select 1 from campaign_messages m where m.subscriber_id = old.id) then
          raise exception 'subscribers: DELETE refused, campaign_messages refer to it' using errcode = 'foreign_key_violation';
        end if;
      elsif exists (select 1 from campaign_messages m where m.campaign_id = old.id) then
        raise exception 'campaigns: DELETE refused, campaign_messages refer to it' using errcode = 'foreign_key_violation';
      end if;
      return old;
    end $$`.execute(db);
  await sql`
    create trigger campaign_messages_keys_fixed before update of campaign_id, subscriber_id on campaign_messages
    for each row execute function campaign_messages_keep_references()`.execute(db);
  for (const table of ['subscribers', 'campaigns']) {
    await sql`
      create trigger ${sql.raw(`${table}_referenced_by_campaign_messages`)} before delete on ${sql.table(table)}
      for each row execute function campaign_messages_keep_references()`.execute(db);
  }

  await sql`update subscribers set address_hash = sha256(convert_to(lower(email), 'UTF8')) where email is not null`.execute(db);
  await sql`
    update subscribers s set affinity_level = a.level, affinity_event_id = a.id
    from (select distinct on (subscriber_id) subscriber_id, id, level from affinity_events order by subscriber_id, id desc) a
    where s.id = a.subscriber_id`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['subscribers', 'campaigns']) {
    await sql`drop trigger ${sql.raw(`${table}_referenced_by_campaign_messages`)} on ${sql.table(table)}`.execute(db);
  }
  await sql`drop trigger campaign_messages_keys_fixed on campaign_messages`.execute(db);
  await sql`drop function campaign_messages_keep_references()`.execute(db);
  await sql`drop trigger campaign_messages_references on campaign_messages`.execute(db);
  await sql`drop function campaign_messages_check_references()`.execute(db);
  await sql`
    alter table campaign_messages
      add constraint campaign_messages_campaign_id_fkey foreign key (campaign_id) references campaigns (id),
      add constraint campaign_messages_subscriber_id_fkey foreign key (subscriber_id) references subscribers (id)`.execute(db);
  await sql`drop trigger affinity_events_level on affinity_events`.execute(db);
  await sql`drop function subscribers_affinity_level()`.execute(db);
  await sql`drop trigger subscribers_address_hash on subscribers`.execute(db);
  await sql`drop function subscribers_address_hash()`.execute(db);
  await sql`alter table subscribers drop column affinity_event_id, drop column affinity_level, drop column address_hash`.execute(db);
}
