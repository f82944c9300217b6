// The audience read from one table (issue 20's count in under a second): what the audience
// asks of the person (their locale, attributes, affinity level and cap, and whether they can be
// mailed at all) is copied onto each of their subscriptions, so counting or fixing a list's
// audience scans that list's subscriptions alone. Joining a million subscriptions to a million
// subscribers was 1.3 of the count's 1.5 s (EXPLAIN ANALYZE in the README); the same count
// over one table took a third of the time.
//
// Triggers keep the copies, so every writer (signup, import, confirmation, API, erasure,
// reports, the affinity trigger of 0012) keeps them without knowing:
// - a subscription is inserted with its person's facts;
// - a change of any of them on the person is written to all their subscriptions;
// - a suppression added or removed is written to the subscriptions of the person with that
//   address hash (an index on subscribers.address_hash finds them).
// Each writer here changes a person's facts, and their suppression, under the person's row
// lock, so no two of these triggers race for one person.
// `person_reachable` says once what "may be mailed at all" means: not erased, not suppressed.
// Depends on 0001, 0002, 0003 and 0012. Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    alter table subscriptions
      add column person_locale text,
      add column person_attributes jsonb,
      add column person_affinity_level text,
      add column person_affinity_cap text,
      add column person_reachable boolean`.execute(db);
  await sql`create index subscribers_address_hash on subscribers (address_hash)`.execute(db);

  // PL/pgSQL, not SQL: a SQL function called from a trigger was planned anew on every call
  // (0.1 ms a row); PL/pgSQL keeps its plan for the session.
  await sql`
    create function person_reachable(erased_at timestamptz, address_hash bytea) returns boolean
    language plpgsql stable as $$
    begin
      return erased_at is null and not exists (select 1 from suppressions p where p.address_hash = person_reachable.address_hash);
    end $$`.execute(db);

  await sql`
    create function subscriptions_person_facts() returns trigger language plpgsql as $$
    begin
      select s.locale, s.attributes, s.affinity_level, s.affinity_cap, person_reachable(s.erased_at, s.address_hash)
      into new.person_locale, new.person_attributes, new.person_affinity_level, new.person_affinity_cap, new.person_reachable
      from subscribers s where s.id = new.subscriber_id;
      return new;
    end $$`.execute(db);
  await sql`
    create trigger subscriptions_person_facts before insert or update of subscriber_id on subscriptions
    for each row execute function subscriptions_person_facts()`.execute(db);

  await sql`
    create function subscribers_facts_to_subscriptions() returns trigger language plpgsql as $$
    begin
      update subscriptions set
        person_locale = new.locale, person_attributes = new.attributes,
        person_affinity_level = new.affinity_level, person_affinity_cap = new.affinity_cap,
        person_reachable = person_reachable(new.erased_at, new.address_hash)
      where subscriber_id = new.id;
      return null;
    end $$`.execute(db);
  // Only when a fact changed: a signup's upsert touches the row of a person already there.
  await sql`
    create trigger subscribers_facts_to_subscriptions after update on subscribers
    for each row when (
      old.locale is distinct from new.locale or old.attributes is distinct from new.attributes
      or old.affinity_level is distinct from new.affinity_level or old.affinity_cap is distinct from new.affinity_cap
      or old.erased_at is distinct from new.erased_at or old.address_hash is distinct from new.address_hash)
    execute function subscribers_facts_to_subscriptions()`.execute(db);

  await sql`
    create function suppressions_to_subscriptions() returns trigger language plpgsql as $$
    declare
      person record;
    begin
      -- Two single-table statements, each by an index: a join's plan, cached while the
      -- tables were empty, scanned every person per suppression.
      for person in select s.id, s.erased_at, s.address_hash from subscribers s
        where s.address_hash = case when tg_op = 'DELETE' then old.address_hash else new.address_hash end
      loop
        update subscriptions set person_reachable = person_reachable(person.erased_at, person.address_hash)
        where subscriber_id = person.id;
      end loop;
      return null;
    end $$`.execute(db);
  await sql`
    create trigger suppressions_to_subscriptions after insert or delete on suppressions
    for each row execute function suppressions_to_subscriptions()`.execute(db);

  await sql`
    update subscriptions x set
      person_locale = s.locale, person_attributes = s.attributes,
      person_affinity_level = s.affinity_level, person_affinity_cap = s.affinity_cap,
      person_reachable = person_reachable(s.erased_at, s.address_hash)
    from subscribers s where s.id = x.subscriber_id`.execute(db);
  await sql`alter table subscriptions alter column person_reachable set not null, alter column person_attributes set not null, alter column person_locale set not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger suppressions_to_subscriptions on suppressions`.execute(db);
  await sql`drop function suppressions_to_subscriptions()`.execute(db);
  await sql`drop trigger subscribers_facts_to_subscriptions on subscribers`.execute(db);
  await sql`drop function subscribers_facts_to_subscriptions()`.execute(db);
  await sql`drop trigger subscriptions_person_facts on subscriptions`.execute(db);
  await sql`drop function subscriptions_person_facts()`.execute(db);
  await sql`drop function person_reachable(timestamptz, bytea)`.execute(db);
  await sql`drop index subscribers_address_hash`.execute(db);
  await sql`
    alter table subscriptions
      drop column person_reachable, drop column person_affinity_cap, drop column person_affinity_level,
      drop column person_attributes, drop column person_locale`.execute(db);
}
