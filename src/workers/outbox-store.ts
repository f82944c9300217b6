// The outbox's SQL, as the outbox worker sends its mails: the queue pattern of
// graphile/worker. A claim takes due rows nobody holds (or whose holder's lease ran out) with
// FOR UPDATE SKIP LOCKED, so any number of workers share the queue without waiting on each
// other; later updates check that the row is still ours (locked_by), so a worker whose lease
// was taken over cannot overwrite.
import { sql } from 'kysely';
import { anyOf, type Database, precompiled } from '../db/database.js';
import type { OutboxMailKind } from '../domain.js';
import { type Backoff, leaseUntil, retryAt } from './queue-sql.js';

export interface ClaimedMail {
  id: string;
  kind: OutboxMailKind;
  recipient: string | null;
  message_id: string;
  subject: string | null;
  html: string | null;
  text: string | null;
  attempts: number;
}

export async function claimDueMails(db: Database, workerId: string, options: { limit: number; leaseMs: number }): Promise<ClaimedMail[]> {
  const { rows } = await sql<ClaimedMail>`
    with due as (
      select id from outbox
      where status = 'queued' and run_at <= now() and (locked_until is null or locked_until < now())
      order by run_at, id
      limit ${options.limit}
      for update skip locked
    )
    update outbox o
    set locked_by = ${workerId}, locked_until = ${leaseUntil(options.leaseMs)}, attempts = o.attempts + 1
    from due where o.id = due.id
    returning o.id, o.kind, o.recipient, o.message_id, o.subject, o.html, o.text, o.attempts
  `.execute(db);
  return rows;
}

const markMailSentStatement = precompiled((db, args: { workerId: string; id: string; response: string }) => db
  .updateTable('outbox')
  .set({ status: 'sent', sent_at: sql`now()`, smtp_response: args.response, last_error: null, locked_by: null, locked_until: null })
  .where('id', '=', args.id).where('locked_by', '=', args.workerId));

export async function markMailSent(db: Database, workerId: string, id: string, response: string): Promise<boolean> {
  const result = await markMailSentStatement(db, { workerId, id, response: response.slice(0, 1000) });
  return (result.numAffectedRows ?? 0n) > 0n;
}

export async function scheduleMailRetry(db: Database, workerId: string, id: string, error: string, backoff: Backoff): Promise<boolean> {
  const result = await db.updateTable('outbox')
    .set((eb) => ({
      run_at: retryAt(eb.ref('attempts'), backoff),
      last_error: error.slice(0, 1000),
      locked_by: null,
      locked_until: null,
    }))
    .where('id', '=', id).where('locked_by', '=', workerId)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function markMailFailed(db: Database, workerId: string, id: string, error: string): Promise<boolean> {
  const result = await db.updateTable('outbox')
    .set({ status: 'failed', last_error: error.slice(0, 1000), locked_by: null, locked_until: null })
    .where('id', '=', id).where('locked_by', '=', workerId)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function countQueuedMails(db: Database): Promise<number> {
  const row = await db.selectFrom('outbox').select((eb) => eb.fn.countAll<string>().as('count'))
    .where('status', '=', 'queued').executeTakeFirstOrThrow();
  return Number(row.count);
}

/** Gives back claimed mails this worker never started (it is shutting down), in one statement. */
export async function releaseMails(db: Database, workerId: string, ids: string[]): Promise<void> {
  await db.updateTable('outbox')
    .set({ locked_by: null, locked_until: null, attempts: sql`greatest(attempts - 1, 0)` })
    .where('id', '=', anyOf(ids, 'bigint')).where('locked_by', '=', workerId)
    .execute();
}
