// Confirmed subscribers by the hundred thousand, made in SQL with generate_series (through the
// API a million would take hours). Each row has what the audience and the sender read: an
// address, a confirmed subscription, an affinity event (half also a later `known` one, with
// a first name, so that personalisation is exercised), and where asked one address in a
// hundred suppressed. Consent events are left out: neither the audience nor the sender reads them.
import type pg from 'pg';

export async function seedConfirmed(admin: pg.Pool, options: { listId: string; prefix: string; count: number; suppressSome: boolean }): Promise<void> {
  await admin.query(`
    with people as (
      insert into subscribers (email, first_name, locale)
      select $2 || n || '@bench.example', case when n % 2 = 0 then 'Ada' end, 'en'
      from generate_series(1, $3::int) n
      returning id, email, first_name
    ), subscribed as (
      insert into subscriptions (subscriber_id, list_id, status, consent_version, confirmed_at)
      select id, $1, 'confirmed', 1, now() from people
    ), affinity as (
      insert into affinity_events (subscriber_id, level, reason)
      select id, level, reason from (
        select id, 1 as step, 'confirmed' as level, 'confirmed a signup' as reason from people
        union all
        select id, 2, 'known', 'told us their name' from people where first_name is not null
      ) events
      order by step
    )
    insert into suppressions (address_hash, reason)
    select sha256(convert_to(lower(email), 'UTF8')), 'complained' from people where $4 and email like '%00@bench.example'`,
  [options.listId, options.prefix, options.count, options.suppressSome]);
  // Each affinity event updated its person's row (migration 0012's trigger), all in this one
  // statement: two dead versions a row, which a list grown over years, its space reused, would
  // not carry. Then statistics and the visibility map, as autovacuum would have them.
  await admin.query('vacuum full subscribers');
  for (const table of ['subscribers', 'subscriptions', 'affinity_events', 'suppressions']) await admin.query(`vacuum analyze ${table}`);
}
