// Idempotency-Key on a POST (draft-ietf-httpapi-idempotency-key-header): the first answer is
// stored with a hash of the request; a retry with the same key and the same request gets
// that answer again, the same key with another request gets 422. Keys belong to the API key
// that used them and are kept for 24 hours.
import { createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { Database } from '../../db/database.js';
import { DomainError } from '../../errors.js';
import * as store from '../../keys/idempotency-store.js';
import type { ApiEnv } from './env.js';

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
    const idempotencyKey = { owner, key };
    const requestHash = createHash('sha256').update(`${c.req.method} ${c.req.path}\n`).update(await c.req.text()).digest();

    if (!(await store.claimIdempotencyKey(db, idempotencyKey, requestHash))) {
      const first = await store.findFirstRequest(db, idempotencyKey);
      if (!first.request_hash.equals(requestHash)) {
        throw new DomainError('idempotency_key_reused', 'this Idempotency-Key was used for a different request');
      }
      if (first.status !== null) {
        return c.body(first.body ?? '', first.status as 200, { 'content-type': 'application/json', 'idempotent-replayed': 'true' });
      }
      if (!(await store.takeOverAbandonedKey(db, idempotencyKey, ABANDONED_AFTER_SECONDS))) {
        throw new DomainError('idempotency_key_in_progress', 'the first request with this Idempotency-Key is still running');
      }
    }

    await next();
    // A 5xx is not an answer to keep: let the retry run again.
    if (c.res.status >= 500) await store.forgetIdempotencyKey(db, idempotencyKey);
    else await store.storeIdempotentAnswer(db, idempotencyKey, { status: c.res.status, body: await c.res.clone().text() });
    if (Date.now() - lastSweep > SWEEP_INTERVAL_MS) {
      lastSweep = Date.now();
      await store.deleteIdempotencyKeysOlderThan(db, KEPT_HOURS);
    }
  };
}
