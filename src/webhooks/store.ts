// The webhooks' SQL. Deliveries are a queue in the pattern of workers/outbox-store.ts (claim
// with FOR UPDATE SKIP LOCKED, later updates check locked_by), with one rule more: a delivery
// waits while an earlier one to the same endpoint about the same subscriber is pending, so
// each subscriber's events arrive in their order. Times come from the caller's clock, so
// tests can move three days ahead.
import { sql } from 'kysely';
import { anyOf, type Database, type Trx } from '../db/database.js';
import type { ConsentEventKind } from '../domain.js';

type Db = Database | Trx;

export interface EndpointRow {
  id: string;
  url: string;
  events: string[];
  list_ids: string[] | null;
  created_by: string | null;
  created_at: Date;
  failing_since: Date | null;
  disabled_at: Date | null;
  disabled_reason: string | null;
}

const endpointColumns = ['id', 'url', 'events', 'list_ids', 'created_by', 'created_at', 'failing_since', 'disabled_at', 'disabled_reason'] as const;

/** A new endpoint, positioned after every event committed so far: it is sent what happens from now on. */
export async function insertEndpoint(db: Db, endpoint: { url: string; secret: string; events: string[]; listIds: string[] | null; createdBy: string }): Promise<EndpointRow> {
  const { rows } = await sql<EndpointRow>`
    insert into webhook_endpoints (url, secret, events, list_ids, created_by, horizon, after_event_id)
    values (${endpoint.url}, ${endpoint.secret}, ${endpoint.events}::text[], ${endpoint.listIds}::bigint[], ${endpoint.createdBy},
      pg_snapshot_xmin(pg_current_snapshot()), coalesce((select max(id) from consent_events), 0))
    returning id, url, events, list_ids, created_by, created_at, failing_since, disabled_at, disabled_reason`.execute(db);
  return rows[0]!;
}

export async function findEndpoints(db: Db): Promise<EndpointRow[]> {
  return db.selectFrom('webhook_endpoints').select(endpointColumns).orderBy('created_at').orderBy('id').execute();
}

export async function findEndpoint(db: Db, id: string): Promise<EndpointRow | undefined> {
  return db.selectFrom('webhook_endpoints').select(endpointColumns).where('id', '=', id).executeTakeFirst();
}

export async function deleteEndpoint(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('webhook_endpoints').where('id', '=', id).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

export async function findEnabledEndpointIds(db: Db): Promise<string[]> {
  const rows = await db.selectFrom('webhook_endpoints').select('id').where('disabled_at', 'is', null).execute();
  return rows.map((row) => row.id);
}

/** The endpoint's feed position, locked for this transaction; undefined when another worker feeds it now. */
export async function lockEndpointFeed(trx: Trx, id: string) {
  return trx.selectFrom('webhook_endpoints').select(['id', 'events', 'list_ids', 'horizon', 'after_event_id'])
    .where('id', '=', id).where('disabled_at', 'is', null)
    .forUpdate().skipLocked()
    .executeTakeFirst();
}

/**
 * Turns the endpoint's new consent events into deliveries, in event order, and says how many
 * and the horizon to keep: the oldest transaction still running (as the consent log's
 * sequencer does, log/store.ts findUnloggedEvents). Events of transactions from the horizon
 * on are looked at again next time, and one that already has its delivery is passed over,
 * so an event whose transaction commits late is still fed. One statement, one snapshot.
 */
export async function feedEndpoint(trx: Trx, feed: {
  endpointId: string; horizon: string | null; afterEventId: string; kinds: ConsentEventKind[]; listIds: string[] | null; now: Date; limit: number;
}): Promise<{ fed: number; horizon: string }> {
  const { rows } = await sql<{ fed: string; xmin: string }>`
    with fresh as (
      select e.id, e.subscriber_id, e.kind from consent_events e
      where e.txid >= coalesce(${feed.horizon}::xid8, '0'::xid8)
        and e.id > ${feed.afterEventId}::bigint
        and e.kind = any(${feed.kinds}::text[])
        and (${feed.listIds}::bigint[] is null
          or e.list_id = any(${feed.listIds}::bigint[])
          or (e.list_id is null and exists (select 1 from subscriptions s
                where s.subscriber_id = e.subscriber_id and s.list_id = any(${feed.listIds}::bigint[]))))
        and not exists (select 1 from webhook_deliveries d where d.endpoint_id = ${feed.endpointId} and d.event_id = e.id)
      order by e.id
      limit ${feed.limit}
    ), added as (
      insert into webhook_deliveries (endpoint_id, event_id, subscriber_id, type, run_at, created_at)
      select ${feed.endpointId}, fresh.id, fresh.subscriber_id, fresh.kind, ${feed.now}, ${feed.now} from fresh order by fresh.id
      on conflict (endpoint_id, event_id) do nothing
      returning 1
    )
    select (select count(*) from added) as fed, pg_snapshot_xmin(pg_current_snapshot())::text as xmin`.execute(trx);
  return { fed: Number(rows[0]!.fed), horizon: rows[0]!.xmin };
}

export async function saveHorizon(trx: Trx, endpointId: string, horizon: string): Promise<void> {
  await sql`update webhook_endpoints set horizon = ${horizon}::xid8 where id = ${endpointId}`.execute(trx);
}

export interface ClaimedDelivery {
  id: string;
  endpoint_id: string;
  event_id: string;
  attempts: number;
  created_at: Date;
  url: string;
  secret: string;
  failing_since: Date | null;
}

/**
 * Due deliveries to enabled endpoints, none of them behind an earlier pending delivery to the
 * same endpoint about the same subscriber (that one may be held by another worker right now:
 * it is still pending, so this one waits). `busyEndpoints`: endpoints this process already
 * calls as often as it may at once, left for the next claim.
 */
export async function claimDueDeliveries(db: Database, workerId: string, options: {
  limit: number; leaseMs: number; now: Date; busyEndpoints: string[];
}): Promise<ClaimedDelivery[]> {
  const { rows } = await sql<ClaimedDelivery>`
    with due as (
      select d.id from webhook_deliveries d
      join webhook_endpoints w on w.id = d.endpoint_id
      where d.status = 'pending' and d.run_at <= ${options.now}
        and (d.locked_until is null or d.locked_until < ${options.now})
        and w.disabled_at is null
        and d.endpoint_id <> all(${options.busyEndpoints}::uuid[])
        and not exists (select 1 from webhook_deliveries p
          where p.endpoint_id = d.endpoint_id and p.subscriber_id = d.subscriber_id
            and p.status = 'pending' and p.event_id < d.event_id)
      order by d.run_at, d.id
      limit ${options.limit}
      for update of d skip locked
    )
    update webhook_deliveries d
    set locked_by = ${workerId}, locked_until = ${options.now}::timestamptz + ${options.leaseMs} * interval '1 millisecond',
      attempts = d.attempts + 1
    from due, webhook_endpoints w
    where d.id = due.id and w.id = d.endpoint_id
    returning d.id, d.endpoint_id, d.event_id, d.attempts, d.created_at, w.url, w.secret, w.failing_since`.execute(db);
  return rows;
}

/** Gives back deliveries claimed but not started (over this process's share for their endpoint, or stopping). */
export async function releaseDeliveries(db: Database, workerId: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await sql`update webhook_deliveries set locked_by = null, locked_until = null, attempts = greatest(attempts - 1, 0)
    where id = ${anyOf(ids, 'bigint')} and locked_by = ${workerId}`.execute(db);
}

/** What a delivery's body is built from: the event, the subscriber and the list as held now. */
export async function findEventFacts(db: Db, eventId: string) {
  return db.selectFrom('consent_events as e')
    .innerJoin('subscribers as s', 's.id', 'e.subscriber_id')
    .leftJoin('lists as l', 'l.id', 'e.list_id')
    .select(['e.id', 'e.kind', 'e.occurred_at', 'e.subscriber_id', 's.email', 's.first_name', 's.last_name', 'l.slug', 'l.fields'])
    .where('e.id', '=', eventId)
    .executeTakeFirst();
}

export async function recordAttempt(db: Db, attempt: {
  deliveryId: string; endpointId: string; at: Date; statusCode: number | null; error: string | null; durationMs: number;
}): Promise<void> {
  await db.insertInto('webhook_attempts').values({
    delivery_id: attempt.deliveryId, endpoint_id: attempt.endpointId, attempted_at: attempt.at,
    status_code: attempt.statusCode, error: attempt.error?.slice(0, 500) ?? null, duration_ms: attempt.durationMs,
  }).execute();
}

export async function markDelivered(db: Db, workerId: string, delivery: { id: string; endpointId: string; at: Date }): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.updateTable('webhook_deliveries').set({ status: 'delivered', delivered_at: delivery.at, locked_by: null, locked_until: null })
      .where('id', '=', delivery.id).where('locked_by', '=', workerId).execute();
    await trx.updateTable('webhook_endpoints').set({ failing_since: null })
      .where('id', '=', delivery.endpointId).where('failing_since', 'is not', null).execute();
  });
}

/**
 * A failed attempt: tried again after base * 2^(attempts - 1) (capped), or failed for good
 * once the delivery is `giveUpMs` old; the endpoint counts as failing from its first failure
 * since its last success, and is disabled once it has failed for `giveUpMs`.
 */
export async function markAttemptFailed(db: Database, workerId: string, failure: {
  id: string; endpointId: string; at: Date; retryAt: Date; giveUpBefore: Date; reason: string;
}): Promise<{ disabled: boolean }> {
  return db.transaction().execute(async (trx) => {
    await sql`update webhook_deliveries
      set status = case when created_at <= ${failure.giveUpBefore} then 'failed' else 'pending' end,
        run_at = ${failure.retryAt}, locked_by = null, locked_until = null
      where id = ${failure.id} and locked_by = ${workerId}`.execute(trx);
    const { rows } = await sql<{ disabled: boolean }>`update webhook_endpoints
      set failing_since = coalesce(failing_since, ${failure.at}),
        disabled_at = case when failing_since <= ${failure.giveUpBefore} then ${failure.at} else disabled_at end,
        disabled_reason = case when failing_since <= ${failure.giveUpBefore} then ${failure.reason} else disabled_reason end
      where id = ${failure.endpointId}
      returning disabled_at is not null as disabled`.execute(trx);
    return { disabled: rows[0]?.disabled ?? false };
  });
}

export interface AttemptRow {
  delivery_id: string;
  event_id: string;
  type: string;
  delivery_status: string;
  attempted_at: Date;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

/** The endpoint's latest attempts, newest first. */
export async function findAttempts(db: Db, endpointId: string, limit: number): Promise<AttemptRow[]> {
  return db.selectFrom('webhook_attempts as a')
    .innerJoin('webhook_deliveries as d', 'd.id', 'a.delivery_id')
    .select(['a.delivery_id', 'd.event_id', 'd.type', 'd.status as delivery_status', 'a.attempted_at', 'a.status_code', 'a.error', 'a.duration_ms'])
    .where('a.endpoint_id', '=', endpointId)
    .orderBy('a.id', 'desc').limit(limit)
    .execute();
}

export async function countPendingDeliveries(db: Db): Promise<number> {
  const row = await db.selectFrom('webhook_deliveries').select((eb) => eb.fn.countAll<string>().as('count'))
    .where('status', '=', 'pending').executeTakeFirstOrThrow();
  return Number(row.count);
}
