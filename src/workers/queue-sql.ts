// The SQL both queues share (outbox-store.ts, message-store.ts): how long a claim holds, and
// when a temporary failure is tried again. Computed by the database from its own clock and
// the attempt count the row holds, so every worker agrees whatever its own clock says.
import { type Expression, sql } from 'kysely';

/** After a temporary failure: base * 2^(attempts - 1), capped at max. */
export interface Backoff {
  baseMs: number;
  maxMs: number;
}

/** The end of a claim taken now. */
export function leaseUntil(leaseMs: number) {
  return sql<Date>`now() + ${leaseMs} * interval '1 millisecond'`;
}

/** When a row whose attempt count is `attempts` (a column) is tried again. */
export function retryAt(attempts: Expression<number>, backoff: Backoff) {
  return sql<Date>`now() + least(${backoff.maxMs}::float8, ${backoff.baseMs}::float8 * power(2, ${attempts} - 1)) * interval '1 millisecond'`;
}
