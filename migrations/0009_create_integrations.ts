// Issue 19: webhook endpoints fed from the consent ledger (a position per endpoint over the
// events, never a second write in the signup's transaction), their deliveries and the log
// of every attempt; and imports with their rejections by line. Assumes only 0001 to 0007.
// Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // horizon and after_event_id are the endpoint's position in the ledger, as the consent
  // log's sequencer keeps its own (migration 0006): every event of a transaction at or past
  // the horizon is looked at again until a delivery exists for it, so none committing late
  // is skipped; events up to after_event_id existed before the endpoint and are not sent.
  await sql`
    create table webhook_endpoints (
      id uuid primary key default gen_random_uuid(),
      url text not null,
      secret text not null,
      events text[] not null,
      list_ids bigint[],
      created_by text,
      created_at timestamptz not null default now(),
      horizon xid8,
      after_event_id bigint not null default 0,
      failing_since timestamptz,
      disabled_at timestamptz,
      disabled_reason text
    )`.execute(db);

  await sql`
    create table webhook_deliveries (
      id bigserial primary key,
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      event_id bigint not null references consent_events (id),
      subscriber_id uuid not null,
      type text not null,
      status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
      attempts integer not null default 0,
      run_at timestamptz not null,
      locked_by text,
      locked_until timestamptz,
      created_at timestamptz not null,
      delivered_at timestamptz,
      unique (endpoint_id, event_id)
    )`.execute(db);
  // The claim's order and its "no earlier pending delivery for this subscriber" test.
  await sql`create index webhook_deliveries_due on webhook_deliveries (run_at, id) where status = 'pending'`.execute(db);
  await sql`create index webhook_deliveries_order on webhook_deliveries (endpoint_id, subscriber_id, event_id) where status = 'pending'`.execute(db);

  await sql`
    create table webhook_attempts (
      id bigserial primary key,
      delivery_id bigint not null references webhook_deliveries (id) on delete cascade,
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      attempted_at timestamptz not null,
      status_code integer,
      error text,
      duration_ms integer not null
    )`.execute(db);
  await sql`create index webhook_attempts_endpoint on webhook_attempts (endpoint_id, id desc)`.execute(db);

  await sql`
    create table imports (
      id uuid primary key default gen_random_uuid(),
      list_id bigint not null references lists (id) on delete cascade,
      created_by text,
      format text not null check (format in ('csv', 'ndjson')),
      file_sha256 bytea not null,
      status text not null default 'running' check (status in ('running', 'finished', 'failed')),
      rows_read integer not null default 0,
      imported integer not null default 0,
      pending integer not null default 0,
      unchanged integer not null default 0,
      rejected integer not null default 0,
      error text,
      created_at timestamptz not null default now(),
      finished_at timestamptz
    )`.execute(db);
  await sql`
    create table import_rejections (
      import_id uuid not null references imports (id) on delete cascade,
      line integer not null,
      reason text not null,
      primary key (import_id, line)
    )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table import_rejections, imports, webhook_attempts, webhook_deliveries, webhook_endpoints`.execute(db);
}
