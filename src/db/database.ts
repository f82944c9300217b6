import { createHash } from 'node:crypto';
import { type Compilable, type CompiledQuery, Kysely, PostgresDialect, type QueryResult, type RawBuilder, sql, type Transaction } from 'kysely';
import pg from 'pg';
import type { DB } from './schema.js';

export type Database = Kysely<DB>;
export type Trx = Transaction<DB>;

/**
 * `column = anyOf(ids, 'uuid')`: one array parameter instead of `in ($1, $2, …)`, so a
 * statement has one text whatever the list's length, and is prepared once (see below).
 */
export function anyOf(values: readonly string[], type: 'uuid' | 'bigint'): RawBuilder<string> {
  return sql<string>`any(${values}::${sql.raw(type)}[])`;
}

/**
 * A statement that Kysely builds and compiles once and that then runs with each call's
 * values: for the statements of hot paths, where building and compiling them on every call
 * was a fifth of a signup's CPU (npm run bench). `build` is given stand-ins for the values
 * and must pass each one through to a parameter unchanged: no value may steer the shape of
 * the statement, be transformed, or be left out. The first call checks that and throws if
 * not, so a misuse fails in every test that runs the statement.
 */
export function precompiled<A extends Record<string, unknown>, R>(
  build: (db: Database, args: A) => Compilable<R>,
): (db: Database | Trx, args: A) => Promise<QueryResult<R>> {
  let compiled: { query: CompiledQuery<R>; slots: ({ arg: string } | { value: unknown })[] } | undefined;
  return async (db, args) => {
    compiled ??= compileWithStandIns(db, build, Object.keys(args));
    const parameters = compiled.slots.map((slot) => {
      if (!('arg' in slot)) return slot.value;
      const value = args[slot.arg];
      if (value === undefined) throw new Error(`precompiled statement: no value for "${slot.arg}"`);
      return value;
    });
    return db.executeQuery<R>({ ...compiled.query, parameters });
  };
}

// NUL cannot reach PostgreSQL in a text parameter, so no real value looks like a stand-in.
const STAND_IN = '\u0000assent-arg:';

function compileWithStandIns<A extends Record<string, unknown>, R>(
  db: Database, build: (db: Database, args: A) => Compilable<R>, keys: string[],
) {
  const query = build(db, Object.fromEntries(keys.map((key) => [key, `${STAND_IN}${key}`])) as A).compile();
  const slots = query.parameters.map((value) => {
    if (typeof value !== 'string' || !value.includes(STAND_IN)) return { value };
    const arg = value.slice(STAND_IN.length);
    if (!value.startsWith(STAND_IN) || !keys.includes(arg)) throw new Error(`precompiled statement: a value was transformed (${JSON.stringify(value)})`);
    return { arg };
  });
  if (query.sql.includes(STAND_IN)) throw new Error('precompiled statement: a value was inlined in the text');
  const missing = keys.filter((key) => !slots.some((slot) => 'arg' in slot && slot.arg === key));
  if (missing.length > 0) throw new Error(`precompiled statement: values not passed as parameters: ${missing.join(', ')}`);
  return { query, slots };
}

export interface DatabaseOptions {
  /** Connections in the pool. */
  max?: number;
  /**
   * How long one statement may run, in ms (DATABASE_STATEMENT_TIMEOUT); absent or 0: no
   * limit (migrations, tools). A transaction that needs longer says so: allowLongStatements.
   */
  statementTimeoutMs?: number;
}

// bigint ids stay strings (exact beyond 2^53); counts are cast where they are read.
export function createDatabase(connectionString: string, options: DatabaseOptions = {}): Database {
  const statementTimeoutMs = options.statementTimeoutMs || undefined;
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    // Fail fast instead of queueing forever when the server is gone: requests answer 503.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // A server that vanished without closing the socket (a host gone, a partition) is
    // noticed by the kernel instead of never.
    keepAlive: true,
    // The server cancels a statement that runs too long (57014) and the connection stays
    // usable: a slow statement on a live server. See answerWithin for one that never answers.
    ...(statementTimeoutMs && { statement_timeout: statementTimeoutMs }),
  });
  // An allowance lasts for one checkout of a connection: one transaction.
  pool.on('release', (_error: unknown, client: pg.PoolClient) => { allowances.delete(client); });
  // An idle client whose server went away emits 'error'; without a listener that kills the process.
  pool.on('error', () => undefined);
  // So does a client that is checked out but between statements (inside a transaction, or a
  // campaign send waiting on SMTP) when its server shuts down: pg emits 'error' on the client,
  // and the pool listens only while it is idle. With this listener its next statement fails
  // instead ("not queryable"), the request answers 503, and the pool drops it on release.
  // Found by test/outage.test.ts: a PostgreSQL restart ended the process.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
    wrapQueries(client, { statementTimeoutMs });
  });
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
}

// The one statement allowLongStatements sends, recognised by its text when it passes through
// wrapQueries: that is where the connection is, which Kysely does not hand out.
const ALLOWANCE_TEXT = "select set_config('statement_timeout', $1, true)";
/** Connections whose current transaction may run statements longer than the pool's timeout, in ms. */
const allowances = new WeakMap<pg.PoolClient, number>();

/**
 * Lets the statements of this transaction run up to `timeoutMs` (0: no limit) instead of
 * DATABASE_STATEMENT_TIMEOUT, on the server (a local statement_timeout, gone at commit or
 * rollback) and in our own deadline: for work that is slow by nature, such as fixing a
 * campaign's audience (about 15 s for a million recipients).
 */
export async function allowLongStatements(trx: Trx, options: { timeoutMs: number }): Promise<void> {
  await sql`select set_config('statement_timeout', ${String(options.timeoutMs)}, true)`.execute(trx);
}

/** Resolves once the database answers a trivial statement; rejects when it cannot (readiness). */
export async function pingDatabase(db: Database): Promise<void> {
  await sql`select 1`.execute(db);
}

// Past the server's own statement_timeout, a second for its cancellation to come back.
const ANSWER_GRACE_MS = 1_000;

/** Every statement of a connection passes here: named once it repeats, and answered in time. */
function wrapQueries(client: pg.PoolClient, options: { statementTimeoutMs: number | undefined }): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (config: unknown, values?: unknown, ...rest: unknown[]) => {
    if (config === ALLOWANCE_TEXT && Array.isArray(values)) allowances.set(client, Number(values[0]));
    const name = typeof config === 'string' && Array.isArray(values) && values.length > 0 ? statementName(config) : undefined;
    const pending = name ? query({ name, text: config, values }, ...rest) : query(config, values, ...rest);
    const limitMs = allowances.get(client) ?? options.statementTimeoutMs;
    return limitMs && pending instanceof Promise ? answerWithin(client, pending, limitMs + ANSWER_GRACE_MS) : pending;
  };
}

/**
 * The statement's answer, or after `ms` an error that maps to 503. statement_timeout cannot
 * help when the server answers nothing at all (frozen, or a network that drops packets
 * without resetting: the socket stays open and the kernel's keepalive sees nothing wrong), so
 * the client keeps its own deadline. The connection is then in an unknown state, halfway
 * through a statement: it is closed, and the pool drops it on release.
 * Found by test/outage.test.ts: with PostgreSQL stopped by SIGSTOP, requests waited as long
 * as the freeze lasted.
 */
function answerWithin<T>(client: pg.PoolClient, pending: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(Object.assign(new Error(`no answer from the database within ${ms} ms`), { code: 'ETIMEDOUT' }));
      // With a statement in flight, end() closes the socket at once rather than waiting for the server.
      client.end().catch(() => undefined);
    }, ms);
    pending.then(
      (result) => { clearTimeout(timer); resolve(result); },
      (error: unknown) => { clearTimeout(timer); reject(error); },
    );
  });
}

// A statement sent a few times is from then on sent as a named (prepared) statement, which
// each connection parses and plans once instead of on every call: that was most of
// PostgreSQL's CPU per signup. Names are a hash of the text, so one name never stands for two
// texts. The texts are counted in a bounded map, since a list of values can make each text
// unique, and each connection holds at most MAX_NAMED prepared statements. No statement reads
// `*`, so a column added by a later migration cannot change a prepared statement's result.
const NAME_AFTER = 3;
const MAX_COUNTED = 5_000;
const MAX_NAMED = 500;
/** Texts that have a name, for good: at most MAX_NAMED. */
const named = new Map<string, string>();
/** How often the other texts were seen; forgotten when full. */
const counted = new Map<string, number>();

function statementName(text: string): string | undefined {
  const name = named.get(text);
  if (name !== undefined || named.size >= MAX_NAMED) return name;
  const seen = (counted.get(text) ?? 0) + 1;
  if (seen < NAME_AFTER) {
    if (counted.size >= MAX_COUNTED) counted.clear();
    counted.set(text, seen);
    return undefined;
  }
  counted.delete(text);
  const fresh = `assent_${createHash('sha256').update(text).digest('base64url').slice(0, 24)}`;
  named.set(text, fresh);
  return fresh;
}

// Class 08 is "connection exception"; 57P01-57P03 are the server shutting down, crashed or
// starting up; 53300 is too many connections; 57014 is a statement cancelled, here by
// statement_timeout (ETIMEDOUT is our own deadline, answerWithin). All pass once the server
// is back or less busy.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  '57P01', '57P02', '57P03', '53300', '57014',
]);
const UNAVAILABLE_MESSAGES = /timeout exceeded when trying to connect|Connection terminated|not queryable/i;

/** Whether an error means "the database is not there right now" rather than a bug. */
export function isDatabaseUnavailable(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown; errors?: unknown } | null;
  if (typeof e !== 'object' || e === null) return false;
  const code = typeof e.code === 'string' ? e.code : '';
  return UNAVAILABLE_CODES.has(code) || code.startsWith('08')
    || (typeof e.message === 'string' && UNAVAILABLE_MESSAGES.test(e.message))
    // `localhost` resolving to ::1 and 127.0.0.1: Node reports both refusals in one AggregateError
    || (Array.isArray(e.errors) && e.errors.some(isDatabaseUnavailable));
}
