// Idempotency-Key on a POST (draft-ietf-httpapi-idempotency-key-header): the first answer is
// stored with a hash of the request; a retry with the same key and the same request gets
// that answer again, the same key with another request gets 422. Keys belong to the API key
// that used them and are kept for 24 hours.
import { createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { sql } from 'kysely';
import type { Database } from '../../db/database.js';
import { DomainError } from '../../errors.js';
import type { ApiEnv } from './index.js';

const KEPT_HOURS = 24;
// A first request that never stored its answer (its process died, or the database went away
// between the claim and the answer) would leave its key "in progress" for KEPT_HOURS: a retry
// after this long takes the key over. No request runs this long (the pool gives up in 5 s).
const ABANDONED_AFTER_SECONDS = 60;
const SWEEP_INTERVAL_MS = 10 * 60_000;

export function idempotency(db: Database, options: { skip?: (path: string) => boolean } = {}): MiddlewareHandler<ApiEnv> {
  let lastSweep = 0;
  return async (c, next) => {
    const key = c.req.header('idempotency-key');
    if (c.req.method !== 'POST' || key === undefined || options.skip?.(c.req.path)) return next();
    if (key.length === 0 || key.length > 255) {
      throw new DomainError('invalid_input', 'Idempotency-Key must be 1 to 255 characters', { 'Idempotency-Key': 'length' });
    }
    const owner = c.get('apiKey').prefix ?? c.get('apiKey').name;
    const requestHash = createHash('sha256').update(`${c.req.method} ${c.req.path}\n`).update(await c.req.text()).digest();

    const claimed = await db.insertInto('idempotency_keys')
      .values({ key_owner: owner, key, request_hash: requestHash })
      .onConflict((oc) => oc.columns(['key_owner', 'key']).doNothing())
      .returning('key')
      .executeTakeFirst();
    if (!claimed) {
      const first = await db.selectFrom('idempotency_keys').select(['request_hash', 'status', 'body'])
        .where('key_owner', '=', owner).where('key', '=', key).executeTakeFirstOrThrow();
      if (!first.request_hash.equals(requestHash)) {
        throw new DomainError('idempotency_key_reused', 'this Idempotency-Key was used for a different request');
      }
      if (first.status !== null) {
        return c.body(first.body ?? '', first.status as 200, { 'content-type': 'application/json', 'idempotent-replayed': 'true' });
      }
      const takenOver = await db.updateTable('idempotency_keys').set({ created_at: sql`now()` })
        .where('key_owner', '=', owner).where('key', '=', key).where('status', 'is', null)
        .where('created_at', '<', sql<Date>`now() - ${`${ABANDONED_AFTER_SECONDS} seconds`}::interval`)
        .returning('key')
        .executeTakeFirst();
      if (!takenOver) throw new DomainError('idempotency_key_in_progress', 'the first request with this Idempotency-Key is still running');
    }

    await next();
    if (c.res.status >= 500) {
      // Not an answer to keep: let the retry run again.
      await db.deleteFrom('idempotency_keys').where('key_owner', '=', owner).where('key', '=', key).execute();
    } else {
      await db.updateTable('idempotency_keys').set({ status: c.res.status, body: await c.res.clone().text() })
        .where('key_owner', '=', owner).where('key', '=', key).execute();
    }
    if (Date.now() - lastSweep > SWEEP_INTERVAL_MS) {
      lastSweep = Date.now();
      await db.deleteFrom('idempotency_keys').where('created_at', '<', sql<Date>`now() - ${`${KEPT_HOURS} hours`}::interval`).execute();
    }
  };
}
