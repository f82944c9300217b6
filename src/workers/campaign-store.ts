// The campaign sender's SQL. Claims follow the outbox's queue pattern (lease, SKIP LOCKED,
// ownership checks). Each send runs inside a short transaction that holds the recipient's
// subscription row FOR SHARE: an unsubscribe's UPDATE of that row waits for the send in
// flight, and any send that starts after the unsubscribe committed sees it.
import { sql } from 'kysely';
import type { Database, Trx } from '../db/database.js';

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
    set locked_by = ${workerId}, locked_until = now() + ${options.leaseMs} * interval '1 millisecond', attempts = m.attempts + 1
    from due
    where m.campaign_id = due.campaign_id and m.subscriber_id = due.subscriber_id
    returning m.campaign_id, m.subscriber_id, m.attempts
  `.execute(db);
  return rows;
}

/**
 * Locks the subscription FOR SHARE for the rest of the transaction and says whether the
 * message may still go: the campaign still sending, the person still confirmed and not erased.
 */
export async function lockForSending(trx: Trx, message: { campaignId: string; subscriberId: string; listId: string }) {
  const { rows } = await sql<{ campaign_status: string; subscription_status: string; erased: boolean }>`
    select c.status as campaign_status, x.status as subscription_status, s.erased_at is not null as erased
    from subscriptions x
    join subscribers s on s.id = x.subscriber_id
    join campaigns c on c.id = ${message.campaignId}
    where x.subscriber_id = ${message.subscriberId} and x.list_id = ${message.listId}
    for share of x
  `.execute(trx);
  return rows[0];
}

type Owned = { campaignId: string; subscriberId: string; workerId: string };

const owned = (db: Database | Trx, message: Owned) => db.updateTable('campaign_messages')
  .where('campaign_id', '=', message.campaignId).where('subscriber_id', '=', message.subscriberId)
  .where('locked_by', '=', message.workerId);

export async function markMessageSent(trx: Database | Trx, message: Owned, sent: { messageId: string; response: string }): Promise<boolean> {
  const result = await owned(trx, message)
    .set({ status: 'sent', sent_at: sql`now()`, message_id: sent.messageId, smtp_response: sent.response.slice(0, 1000), last_error: null, locked_by: null, locked_until: null })
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function markMessageSkipped(db: Database | Trx, message: Owned, reason: string): Promise<void> {
  await owned(db, message).set({ status: 'skipped', last_error: reason, locked_by: null, locked_until: null }).execute();
}

export async function markMessageFailed(db: Database | Trx, message: Owned, error: string): Promise<void> {
  await owned(db, message).set({ status: 'failed', last_error: error.slice(0, 1000), locked_by: null, locked_until: null }).execute();
}

export async function scheduleMessageRetry(db: Database | Trx, message: Owned, error: string, backoff: { baseMs: number; maxMs: number }): Promise<void> {
  await owned(db, message).set({
    run_at: sql`now() + least(${backoff.maxMs}::float8, ${backoff.baseMs}::float8 * power(2, attempts - 1)) * interval '1 millisecond'`,
    last_error: error.slice(0, 1000), locked_by: null, locked_until: null,
  }).execute();
}

/** Gives a claimed message back untouched (its campaign was paused or cancelled meanwhile). */
export async function releaseMessage(db: Database | Trx, message: Owned): Promise<void> {
  await owned(db, message).set({ locked_by: null, locked_until: null, attempts: sql`greatest(attempts - 1, 0)` }).execute();
}

/** Gives back claimed messages this worker never started (it is shutting down), in one statement. */
export async function releaseMessages(db: Database, workerId: string, messages: { campaign_id: string; subscriber_id: string }[]): Promise<void> {
  await sql`
    update campaign_messages m
    set locked_by = null, locked_until = null, attempts = greatest(m.attempts - 1, 0)
    from unnest(${messages.map((m) => m.campaign_id)}::bigint[], ${messages.map((m) => m.subscriber_id)}::uuid[]) as r(campaign_id, subscriber_id)
    where m.campaign_id = r.campaign_id and m.subscriber_id = r.subscriber_id and m.locked_by = ${workerId}
  `.execute(db);
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
