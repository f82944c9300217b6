// What the audience query asked of every person, stored on the person (issue 20's count, issue
// 21's audience): the hash suppressions are keyed by, and the level of their latest affinity
// event. Computing the hash per row and probing affinity_events per person were two thirds of
// the time a million took (EXPLAIN ANALYZE in the README). Both are kept by triggers, so every
// writer (signup, import, API, erasure) keeps them without knowing.
// Depends on 0001 and 0002. Frozen once landed: fix forward in a new file.
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

  await sql`update subscribers set address_hash = sha256(convert_to(lower(email), 'UTF8')) where email is not null`.execute(db);
  await sql`
    update subscribers s set affinity_level = a.level, affinity_event_id = a.id
    from (select distinct on (subscriber_id) subscriber_id, id, level from affinity_events order by subscriber_id, id desc) a
    where s.id = a.subscriber_id`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger affinity_events_level on affinity_events`.execute(db);
  await sql`drop function subscribers_affinity_level()`.execute(db);
  await sql`drop trigger subscribers_address_hash on subscribers`.execute(db);
  await sql`drop function subscribers_address_hash()`.execute(db);
  await sql`alter table subscribers drop column affinity_event_id, drop column affinity_level, drop column address_hash`.execute(db);
}
