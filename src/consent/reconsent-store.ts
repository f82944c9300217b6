// Re-consent's SQL (issue 20): queueing the mails (reconsent_messages, one row per list,
// material version and person) and the agreement's state change. Sending them is the
// workers' (workers/reconsent-message-store.ts).
import { sql } from 'kysely';
import type { Database, Trx } from '../db/database.js';
import { reconsentFromSql } from '../lists/store.js';

type Db = Database | Trx;

export async function findReconsentFrom(db: Db, listId: string): Promise<number | null> {
  const { rows } = await sql<{ version: number | null }>`select ${reconsentFromSql(listId)} as version`.execute(db);
  return rows[0]?.version ?? null;
}

/**
 * Queues one mail per confirmed, reachable subscriber still on a version before `version`:
 * one statement, never the audience in memory. The primary key makes a second run add
 * nobody twice, so each person is mailed once per version.
 */
export async function queueReconsentMessages(db: Db, listId: string, version: number): Promise<number> {
  const result = await sql`
    insert into reconsent_messages (list_id, version, subscriber_id)
    select ${listId}, ${version}, x.subscriber_id
    from subscriptions x
    where x.list_id = ${listId}
      and x.status = 'confirmed'
      and coalesce(x.consent_version, 0) < ${version}
      and x.person_reachable
    order by x.subscriber_id
    on conflict do nothing
  `.execute(db);
  return Number(result.numAffectedRows ?? 0n);
}

export interface ReconsentKey {
  list_id: string;
  version: number;
  subscriber_id: string;
}

/** The Message-ID of the re-consent mail that carried the link, for the agreement's evidence. */
export async function findReconsentMessageId(db: Db, key: ReconsentKey): Promise<string | null> {
  const row = await db.selectFrom('reconsent_messages').select('message_id')
    .where('list_id', '=', key.list_id).where('version', '=', key.version).where('subscriber_id', '=', key.subscriber_id)
    .executeTakeFirst();
  return row?.message_id ?? null;
}

/** The agreement's state change: the subscription now stands on `version`. */
export async function markReconsented(trx: Trx, key: { subscriberId: string; listId: string }, version: number): Promise<void> {
  await trx.updateTable('subscriptions').set({ consent_version: version, updated_at: sql`now()` })
    .where('subscriber_id', '=', key.subscriberId).where('list_id', '=', key.listId).execute();
}

export interface PendingReconsent {
  list_id: string;
  slug: string;
  version: number;
  text: string;
}

/**
 * The person's confirmed subscriptions whose list had a material change they have not agreed
 * to, each with the list's current wording: agreeing to it covers the material version too.
 */
export async function findPendingReconsents(db: Db, subscriberId: string): Promise<PendingReconsent[]> {
  const { rows } = await sql<PendingReconsent>`
    select x.list_id::text as list_id, l.slug, cur.version, cur.text
    from subscriptions x
    join lists l on l.id = x.list_id
    cross join lateral (
      select v.version, v.text from list_consent_versions v where v.list_id = x.list_id order by v.version desc limit 1
    ) cur
    where x.subscriber_id = ${subscriberId} and x.status = 'confirmed'
      and coalesce(x.consent_version, 0) < ${reconsentFromSql(sql.ref('x.list_id'))}
  `.execute(db);
  return rows;
}
