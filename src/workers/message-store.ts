// Campaign messages' SQL as the campaign sender uses it, and the SEND_RATE bucket. Claims
// follow the outbox's queue pattern (lease, SKIP LOCKED, ownership checks). Sends run in
// short transactions, each over a chunk of messages, that hold the recipients' subscription
// rows FOR SHARE: an unsubscribe's UPDATE of such a row waits for the chunk in flight, and
// any send that starts after the unsubscribe committed sees it.
import { sql } from 'kysely';
import type { Database, Trx } from '../db/database.js';
import type { CampaignStatus, SubscriptionStatus } from '../domain.js';
import { type Backoff, leaseUntil, retryAt } from './queue-sql.js';

export interface ClaimedMessage {
  campaign_id: string;
  subscriber_id: string;
  attempts: number;
}

export async function claimDueMessages(db: Database, workerId: string, options: { limit: number; leaseMs: number }): Promise<ClaimedMessage[]> {
  const { rows } = await sql<ClaimedMessage>`
    with due as (
      select m.campaign_id, m.subscriber_id
      from campaign_messages m
      join campaigns c on c.id = m.campaign_id
      where m.status = 'queued' and c.status = 'sending' and m.run_at <= now()
        and (m.locked_until is null or m.locked_until < now())
      order by m.run_at
      limit ${options.limit}
      for update of m skip locked
    )
    update campaign_messages m
    set locked_by = ${workerId}, locked_until = ${leaseUntil(options.leaseMs)}, attempts = m.attempts + 1
    from due
    where m.campaign_id = due.campaign_id and m.subscriber_id = due.subscriber_id
    returning m.campaign_id, m.subscriber_id, m.attempts
  `.execute(db);
  return rows;
}

export interface MessageKey {
  campaign_id: string;
  subscriber_id: string;
}

export const messageKey = (message: MessageKey) => `${message.campaign_id}:${message.subscriber_id}`;

export interface SendGate extends MessageKey {
  campaign_status: CampaignStatus;
  subscription_status: SubscriptionStatus;
  erased: boolean;
}

/**
 * Locks the subscriptions of a chunk of messages FOR SHARE for the rest of the transaction,
 * and says for each whether it may still go: the campaign still sending, the person still
 * confirmed and not erased. Keyed by messageKey; a message with no subscription is absent.
 */
export async function lockForSending(trx: Trx, messages: (MessageKey & { list_id: string })[]): Promise<Map<string, SendGate>> {
  const { rows } = await sql<SendGate>`
    select r.campaign_id::text as campaign_id, r.subscriber_id::text as subscriber_id, c.status as campaign_status,
      x.status as subscription_status, s.erased_at is not null as erased
    from unnest(${messages.map((m) => m.campaign_id)}::bigint[], ${messages.map((m) => m.subscriber_id)}::uuid[], ${messages.map((m) => m.list_id)}::bigint[])
      as r(campaign_id, subscriber_id, list_id)
    join campaigns c on c.id = r.campaign_id
    join subscriptions x on x.subscriber_id = r.subscriber_id and x.list_id = r.list_id
    join subscribers s on s.id = r.subscriber_id
    for share of x
  `.execute(trx);
  return new Map(rows.map((row) => [messageKey(row), row]));
}

/** What became of one claimed message. */
export type Outcome =
  | { kind: 'sent'; messageId: string; response: string }
  | { kind: 'skipped'; reason: string }
  | { kind: 'failed'; error: string }
  | { kind: 'retry'; error: string }
  /** Given back untouched: its campaign was paused or cancelled meanwhile, or the worker is stopping. */
  | { kind: 'released' };

export type MessageOutcome = MessageKey & { outcome: Outcome };

const detailOf = (outcome: Outcome) => {
  switch (outcome.kind) {
    case 'sent': return outcome.response.slice(0, 1000);
    case 'skipped': return outcome.reason;
    case 'failed': case 'retry': return outcome.error.slice(0, 1000);
    case 'released': return null;
  }
};

/**
 * Records what became of a chunk of messages, in one statement, for those this worker still
 * holds. Returns the keys it recorded: a claim that passed to another worker is left alone.
 */
export async function recordOutcomes(db: Database | Trx, workerId: string, outcomes: MessageOutcome[], backoff: Backoff): Promise<Set<string>> {
  if (outcomes.length === 0) return new Set();
  const { rows } = await sql<MessageKey>`
    update campaign_messages m set
      status = case when r.kind in ('sent', 'skipped', 'failed') then r.kind else m.status end,
      sent_at = case when r.kind = 'sent' then now() else m.sent_at end,
      message_id = case when r.kind = 'sent' then r.message_id else m.message_id end,
      smtp_response = case when r.kind = 'sent' then r.detail else m.smtp_response end,
      last_error = case r.kind when 'sent' then null when 'released' then m.last_error else r.detail end,
      run_at = case when r.kind = 'retry'
        then ${retryAt(sql.ref('m.attempts'), backoff)}
        else m.run_at end,
      attempts = case when r.kind = 'released' then greatest(m.attempts - 1, 0) else m.attempts end,
      locked_by = null, locked_until = null
    from unnest(
      ${outcomes.map((o) => o.campaign_id)}::bigint[], ${outcomes.map((o) => o.subscriber_id)}::uuid[],
      ${outcomes.map((o) => o.outcome.kind)}::text[],
      ${outcomes.map((o) => (o.outcome.kind === 'sent' ? o.outcome.messageId : null))}::text[],
      ${outcomes.map((o) => detailOf(o.outcome))}::text[]
    ) as r(campaign_id, subscriber_id, kind, message_id, detail)
    where m.campaign_id = r.campaign_id and m.subscriber_id = r.subscriber_id and m.locked_by = ${workerId}
    returning m.campaign_id::text as campaign_id, m.subscriber_id::text as subscriber_id
  `.execute(db);
  return new Set(rows.map(messageKey));
}

export async function countQueuedMessages(db: Database): Promise<number> {
  const row = await db.selectFrom('campaign_messages').select((eb) => eb.fn.countAll<string>().as('count'))
    .where('status', '=', 'queued').executeTakeFirstOrThrow();
  return Number(row.count);
}

/**
 * SEND_RATE for all workers together: a token bucket in one row, refilled by elapsed time,
 * holding at most one second's worth. Returns how many mails this worker may send now.
 */
export async function takeSendTokens(db: Database, ratePerSecond: number, wanted: number): Promise<number> {
  const { rows } = await sql<{ granted: number }>`
    with bucket as (
      select least(greatest(${ratePerSecond}::float8, 1), tokens + extract(epoch from clock_timestamp() - refilled_at) * ${ratePerSecond}::float8) as available
      from send_rate_bucket where id = 1
      for update
    ), granted as (
      select least(floor(available)::int, ${wanted}::int) as n, available from bucket
    )
    update send_rate_bucket b set tokens = g.available - g.n, refilled_at = clock_timestamp()
    from granted g where b.id = 1
    returning g.n as granted
  `.execute(db);
  return rows[0]?.granted ?? 0;
}
