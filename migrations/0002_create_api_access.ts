// API keys, idempotent retries, and erasure of affinity history.
// Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // A key is `as_<prefix>_<secret>`; the prefix finds the row, the secret is checked against
  // its argon2id hash. The secret itself is never stored.
  await sql`
    create table api_keys (
      id bigint generated always as identity primary key,
      name text not null,
      prefix text not null unique,
      secret_hash text not null,
      created_at timestamptz not null default now(),
      last_used_at timestamptz,
      revoked_at timestamptz
    )`.execute(db);

  // The first answer to a POST with an Idempotency-Key, replayed to retries of the same request.
  await sql`
    create table idempotency_keys (
      key_owner text not null,
      key text not null,
      request_hash bytea not null,
      status integer,
      body text,
      created_at timestamptz not null default now(),
      primary key (key_owner, key)
    )`.execute(db);
  await sql`create index idempotency_keys_created on idempotency_keys (created_at)`.execute(db);

  // Affinity events stay append-only, except that erasing a person removes theirs: a reason
  // such as "bought running shoes" is personal data. Erasure sets assent.erasing for its
  // transaction only.
  await sql`
    create function refuse_affinity_change() returns trigger language plpgsql as $$
    begin
      if tg_op = 'DELETE' and current_setting('assent.erasing', true) = 'on' then
        return old;
      end if;
      raise exception '% is append-only: % refused', tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
    end $$`.execute(db);
  await sql`drop trigger affinity_events_append_only on affinity_events`.execute(db);
  await sql`
    create trigger affinity_events_append_only before update or delete on affinity_events
    for each row execute function refuse_affinity_change()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger affinity_events_append_only on affinity_events`.execute(db);
  await sql`
    create trigger affinity_events_append_only before update or delete on affinity_events
    for each row execute function refuse_change()`.execute(db);
  await sql`drop function refuse_affinity_change()`.execute(db);
  await db.schema.dropTable('idempotency_keys').execute();
  await db.schema.dropTable('api_keys').execute();
}
