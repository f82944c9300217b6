// The re-consent mails' queue (reconsent_messages) as the sender uses it (issue 20). Claims follow the queue
// pattern of message-store.ts: lease, SKIP LOCKED, ownership checks.
import { sql } from 'kysely';
import type { ReconsentKey } from '../consent/reconsent-store.js';
import type { Database, Trx } from '../db/database.js';
import type { MessageStatus, SubscriptionStatus } from '../domain.js';
import type { Outcome } from './message-store.js';
import { type Backoff, leaseUntil, retryAt } from './queue-sql.js';

type Db = Database | Trx;

export const reconsentKey = (key: ReconsentKey) => `${key.list_id}:${key.version}:${key.subscriber_id}`;

export interface ClaimedReconsent extends ReconsentKey {
  attempts: number;
}

export async function claimDueReconsents(db: Database, workerId: string, options: { limit: number; leaseMs: number }): Promise<ClaimedReconsent[]> {
  const { rows } = await sql<ClaimedReconsent>`
    with due as (
      select list_id, version, subscriber_id from reconsent_messages
      where status = 'queued' and run_at <= now() and (locked_until is null or locked_until < now())
      order by run_at
      limit ${options.limit}
      for update skip locked
    )
    update reconsent_messages m
    set locked_by = ${workerId}, locked_until = ${leaseUntil(options.leaseMs)}, attempts = m.attempts + 1
    from due
    where m.list_id = due.list_id and m.version = due.version and m.subscriber_id = due.subscriber_id
    returning m.list_id::text as list_id, m.version, m.subscriber_id::text as subscriber_id, m.attempts
  `.execute(db);
  return rows;
}

/** What a claimed mail needs, read as it is now: the person, their subscription, both wordings. */
export interface ReconsentMailData extends ReconsentKey {
  email: string | null;
  locale: string;
  list_name: string;
  status: SubscriptionStatus;
  consent_version: number | null;
  old_text: string | null;
  new_text: string;
}

export async function findReconsentMailData(db: Database, keys: ReconsentKey[]): Promise<Map<string, ReconsentMailData>> {
  if (keys.length === 0) return new Map();
  const { rows } = await sql<ReconsentMailData>`
    select r.list_id::text as list_id, r.version, r.subscriber_id::text as subscriber_id,
      case when s.erased_at is null then s.email end as email, s.locale, l.name as list_name,
      x.status, x.consent_version, old.text as old_text, new.text as new_text
    from unnest(${keys.map((k) => k.list_id)}::bigint[], ${keys.map((k) => k.version)}::int[], ${keys.map((k) => k.subscriber_id)}::uuid[])
      as r(list_id, version, subscriber_id)
    join subscribers s on s.id = r.subscriber_id
    join lists l on l.id = r.list_id
    join subscriptions x on x.subscriber_id = r.subscriber_id and x.list_id = r.list_id
    join list_consent_versions new on new.list_id = r.list_id and new.version = r.version
    left join list_consent_versions old on old.list_id = r.list_id and old.version = x.consent_version
  `.execute(db);
  return new Map(rows.map((row) => [reconsentKey(row), row]));
}

/** The same outcomes as a campaign message's. */
export type ReconsentOutcome = Outcome;

/** Records one claimed mail's outcome if this worker still holds it; says whether it did. */
export async function recordReconsentOutcome(db: Db, workerId: string, key: ReconsentKey, outcome: ReconsentOutcome, backoff: Backoff): Promise<boolean> {
  const status: MessageStatus | null = outcome.kind === 'sent' || outcome.kind === 'skipped' || outcome.kind === 'failed' ? outcome.kind : null;
  const detail = outcome.kind === 'sent' ? outcome.response : outcome.kind === 'skipped' ? outcome.reason
    : outcome.kind === 'released' ? null : outcome.error;
  const result = await sql`
    update reconsent_messages set
      status = coalesce(${status}::text, status),
      sent_at = case when ${outcome.kind} = 'sent' then now() else sent_at end,
      message_id = ${outcome.kind === 'sent' ? outcome.messageId : null}::text,
      smtp_response = case when ${outcome.kind} = 'sent' then ${detail?.slice(0, 1000) ?? null}::text else smtp_response end,
      last_error = case when ${outcome.kind} in ('failed', 'retry', 'skipped') then ${detail?.slice(0, 1000) ?? null}::text else last_error end,
      run_at = case when ${outcome.kind} = 'retry' then ${retryAt(sql.ref('attempts'), backoff)} else run_at end,
      attempts = case when ${outcome.kind} = 'released' then greatest(attempts - 1, 0) else attempts end,
      locked_by = null, locked_until = null
    where list_id = ${key.list_id} and version = ${key.version} and subscriber_id = ${key.subscriber_id} and locked_by = ${workerId}
  `.execute(db);
  return Number(result.numAffectedRows ?? 0n) > 0;
}

export async function countQueuedReconsents(db: Database): Promise<number> {
  const row = await db.selectFrom('reconsent_messages').select((eb) => eb.fn.countAll<string>().as('count'))
    .where('status', '=', 'queued').executeTakeFirstOrThrow();
  return Number(row.count);
}
