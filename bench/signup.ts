// Signup under load: unique JSON signups at 64 connections for 20 s against the service (both
// roles in one process, so the outbox worker sends the confirmation mails meanwhile), then
// the same load against the bare baseline on the same database. Then a count query shows
// that every accepted signup left its subscriber, consent event and outbox mail.
import autocannon from 'autocannon';
import path from 'node:path';
import type pg from 'pg';
import { freePort } from '../src/db/embedded.js';
import { cpuPer, startChild } from './lib.js';
import { type AssentEnv, startAssent } from './service.js';

const CONNECTIONS = 64;
const SECONDS = 20;
const WARMUP_SECONDS = 3;

export interface LoadResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
  accepted: number;
  /** Milliseconds of CPU per accepted signup: the app's process (with the sink where it mails) and PostgreSQL's. */
  cpuMs: Record<string, number>;
}

export interface SignupResult {
  service: LoadResult;
  baseline: LoadResult;
  /** The same load on the service as it was before a change (its own database), where asked. */
  before?: { label: string; result: LoadResult };
  check: { accepted: number; subscribers: number; events: number; mails: number; missing: number; ok: boolean };
}

/** Unique JSON signups; `prefix` tells this run's addresses apart from every other run's. */
async function load(port: number, prefix: string, list: string, seconds: number): Promise<Omit<LoadResult, 'cpuMs'>> {
  let n = 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    duration: seconds,
    requests: [{
      method: 'POST',
      path: '/subscribe',
      headers: { 'content-type': 'application/json' },
      setupRequest: (request) => ({ ...request, body: JSON.stringify({ email: `${prefix}-${(n += 1)}@bench.example`, list }) }),
    }],
  });
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors, // timeouts included
    non2xx: result.non2xx,
    accepted: result['2xx'],
  };
}

/** The load, with the CPU each process spent on it per accepted signup: steadier than req/s on a busy machine. */
async function measured(port: number, pids: Record<string, { pid: number; tree?: boolean }>): Promise<LoadResult> {
  return cpuPer(pids, async () => {
    const result = await load(port, 'signup', 'signups', SECONDS);
    return { ...result, units: result.accepted };
  });
}

/** Warm-up, then the measured load, on one build of the service; `prepare` runs once it has migrated its database. */
async function loadService(env: AssentEnv, sinkPid: number, prepare?: () => Promise<void>): Promise<{ warmAccepted: number; result: LoadResult }> {
  const service = await startAssent('all', env);
  try {
    await prepare?.();
    await service.api('POST', '/api/v1/lists', { slug: 'signups', name: 'Signups', consent_text: 'Send me the weekly news.' });
    const warmAccepted = (await load(service.port, 'warm', 'signups', WARMUP_SECONDS)).accepted;
    const result = await measured(service.port, { app: { pid: service.pid }, sink: { pid: sinkPid }, postgres: { pid: env.postgresPid, tree: true } });
    return { warmAccepted, result };
  } finally {
    await service.stop();
  }
}

/**
 * The service, then the bare baseline; with `before`, first the same load on the service as
 * it was before a change (another build, on a database of its own).
 */
export async function benchSignup(env: AssentEnv, admin: pg.Pool, sinkPid: number,
  before?: { label: string; env: AssentEnv; prepare: () => Promise<void> }): Promise<SignupResult> {
  const earlier = before && { label: before.label, result: (await loadService(before.env, sinkPid, before.prepare)).result };
  const { warmAccepted, result: ours } = await loadService(env, sinkPid);

  const baselinePort = await freePort();
  const baseline = startChild('bench/baseline-signup.ts', [], {
    log: path.join(env.dataDir, 'baseline.log'), env: { DATABASE_URL: env.databaseUrl, PORT: String(baselinePort) },
  });
  let base: LoadResult;
  try {
    await baseline.message<{ ready?: boolean }>((m) => m.ready === true);
    await load(baselinePort, 'warm', 'signups', WARMUP_SECONDS);
    base = await measured(baselinePort, { app: { pid: baseline.pid }, sink: { pid: sinkPid }, postgres: { pid: env.postgresPid, tree: true } });
  } finally {
    await baseline.stop();
  }

  // Requests still in flight when autocannon stopped may have committed without being
  // counted, so the rows may exceed the 2xx count, never fall short of it.
  const { rows: [counts] } = await admin.query<{ subscribers: string; events: string; mails: string; missing: string }>(`
    select count(*) as subscribers,
           (select count(*) from consent_events e join subscribers s on s.id = e.subscriber_id
             where s.email like 'warm-%' or s.email like 'signup-%') as events,
           (select count(*) from outbox where kind = 'confirmation' and (recipient like 'warm-%' or recipient like 'signup-%')) as mails,
           count(*) filter (where not exists (select 1 from outbox o where o.subscriber_id = s.id and o.kind = 'confirmation')
                              or not exists (select 1 from consent_events e where e.subscriber_id = s.id and e.kind = 'requested')
                              or not exists (select 1 from subscriptions x where x.subscriber_id = s.id and x.status = 'pending')) as missing
    from subscribers s where s.email like 'warm-%' or s.email like 'signup-%'`);
  const accepted = warmAccepted + ours.accepted;
  const check = {
    accepted,
    subscribers: Number(counts!.subscribers),
    events: Number(counts!.events),
    mails: Number(counts!.mails),
    missing: Number(counts!.missing),
    ok: false,
  };
  check.ok = check.subscribers >= accepted && check.events === check.subscribers && check.mails === check.subscribers && check.missing === 0;
  return { service: ours, baseline: base, check, ...(earlier && { before: earlier }) };
}
