// The SQL of Idempotency-Key (http/api/idempotency.ts): the first answer to a request, kept
// per API key. One exported function per statement.
import { sql } from 'kysely';
import type { Database } from '../db/database.js';

export interface IdempotencyKey {
  /** The API key that used it: its prefix, or the name of ASSENT_API_KEY. */
  owner: string;
  key: string;
}

/** Claims the key for a first request; false when it was used before (answered, or still running). */
export async function claimIdempotencyKey(db: Database, key: IdempotencyKey, requestHash: Buffer): Promise<boolean> {
  const claimed = await db.insertInto('idempotency_keys')
    .values({ key_owner: key.owner, key: key.key, request_hash: requestHash })
    .onConflict((oc) => oc.columns(['key_owner', 'key']).doNothing())
    .returning('key')
    .executeTakeFirst();
  return claimed !== undefined;
}

/** What the first request with the key was, and its answer once it has one (status null until then). */
export async function findFirstRequest(db: Database, key: IdempotencyKey) {
  return db.selectFrom('idempotency_keys').select(['request_hash', 'status', 'body'])
    .where('key_owner', '=', key.owner).where('key', '=', key.key).executeTakeFirstOrThrow();
}

/** Takes over a key whose first request has been running longer than `seconds` without answering; false if none. */
export async function takeOverAbandonedKey(db: Database, key: IdempotencyKey, seconds: number): Promise<boolean> {
  const takenOver = await db.updateTable('idempotency_keys').set({ created_at: sql`now()` })
    .where('key_owner', '=', key.owner).where('key', '=', key.key).where('status', 'is', null)
    .where('created_at', '<', sql<Date>`now() - ${`${seconds} seconds`}::interval`)
    .returning('key')
    .executeTakeFirst();
  return takenOver !== undefined;
}

export async function storeIdempotentAnswer(db: Database, key: IdempotencyKey, answer: { status: number; body: string }): Promise<void> {
  await db.updateTable('idempotency_keys').set({ status: answer.status, body: answer.body })
    .where('key_owner', '=', key.owner).where('key', '=', key.key).execute();
}

export async function forgetIdempotencyKey(db: Database, key: IdempotencyKey): Promise<void> {
  await db.deleteFrom('idempotency_keys').where('key_owner', '=', key.owner).where('key', '=', key.key).execute();
}

/** Deletes the keys older than `hours`. */
export async function deleteIdempotencyKeysOlderThan(db: Database, hours: number): Promise<void> {
  await db.deleteFrom('idempotency_keys').where('created_at', '<', sql<Date>`now() - ${`${hours} hours`}::interval`).execute();
}
