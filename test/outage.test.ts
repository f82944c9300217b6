// Outages of the two things the service depends on, against the real service, a real
// PostgreSQL and a real SMTP peer: the relay refusing and then answering 421 while
// confirmations and a 2,000-mail campaign wait, and PostgreSQL stopped for 10 s, or frozen
// for 10 s (SIGSTOP), during a stream of signups.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createDatabase, type Database, isDatabaseUnavailable } from '../src/db/database.js';
import { type EmbeddedDatabase, freePort, startEmbeddedDatabase } from '../src/db/embedded.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { type MailSender, smtpSender } from '../src/mail/transport.js';
import { CampaignWorker, DEFAULT_CAMPAIGN_OPTIONS } from '../src/workers/campaign.js';
import { DEFAULT_OUTBOX_OPTIONS, OutboxWorker } from '../src/workers/outbox.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { createList, freshIp, postJson, seedConfirmed } from './helpers/http.js';
import { freezePostgres, thaw } from './helpers/processes.js';
import { API_KEY, createTestService, type TestService, testConfig } from './helpers/service.js';
import { SmtpSink } from './helpers/smtp.js';
import { until } from './helpers/wait.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How many mails each recipient got, among those received. */
function deliveries(smtp: SmtpSink): Map<string, number> {
  const counts = new Map<string, number>();
  for (const mail of smtp.received) for (const to of mail.envelopeTo) counts.set(to, (counts.get(to) ?? 0) + 1);
  return counts;
}

describe('the SMTP relay refuses connections, then answers 421, then recovers', () => {
  // The outage is the production one with every duration divided by SCALE: 30 s of refused
  // connections and 20 s of 421s against the workers' own backoff (outbox 10 s, campaigns
  // 30 s, doubling), so each mail sees the same sequence of attempts as in production (the
  // first fails, the next ones back off past the outage, one lands after it) in a twentieth
  // of the time. The backoff is computed in SQL from the database's now(), which a fake
  // clock cannot move, so the durations shrink rather than the clock running fast.
  const SCALE = 20;
  const REFUSED_MS = 30_000 / SCALE;
  const BUSY_MS = 20_000 / SCALE;
  const CAMPAIGN_SIZE = 2_000;
  let tdb: TestDatabase;
  let db: Database;
  let smtp: SmtpSink;
  let service: TestService;

  beforeAll(async () => {
    tdb = await createTestDatabase();
    // Campaign sends hold a connection each while SMTP answers; the helper's pool of 5 is for lighter tests.
    db = createDatabase(tdb.url, { max: 20 });
    smtp = await new SmtpSink().start();
    service = await createTestService(db, { smtpUrl: smtp.url });
    await createList(service, 'news');
    await createList(service, 'weekly');
  });
  afterAll(async () => {
    service?.close();
    await smtp?.stop();
    await db?.destroy();
    await tdb?.drop();
  });

  it('delivers every confirmation and campaign mail exactly once, and fails none', async () => {
    await seedConfirmed(tdb, 'weekly', CAMPAIGN_SIZE, { prefix: 'reader' });
    const relay = smtpSender(smtp.url, { maxConnections: 5 });
    const refusals: string[] = [];
    const sender: MailSender = {
      send: (mail) => relay.send(mail).catch((error: unknown) => { refusals.push(String(error)); throw error; }),
      close: () => relay.close(),
    };
    const outbox = new OutboxWorker({ ...service.deps, sender }, {
      pollMs: 50, retryBaseMs: DEFAULT_OUTBOX_OPTIONS.retryBaseMs / SCALE, retryMaxMs: DEFAULT_OUTBOX_OPTIONS.retryMaxMs / SCALE,
    });
    const campaigns = new CampaignWorker({ ...service.deps, sender }, {
      pollMs: 50, retryBaseMs: DEFAULT_CAMPAIGN_OPTIONS.retryBaseMs / SCALE, retryMaxMs: DEFAULT_CAMPAIGN_OPTIONS.retryMaxMs / SCALE,
    });
    const signups: string[] = [];
    const signUp = async (count: number) => {
      for (let i = 0; i < count; i += 1) {
        const email = `confirm${signups.length}@example.org`;
        expect((await postJson(service, { email, list: 'news' })).status).toBe(202);
        signups.push(email);
      }
    };

    try {
      // Confirmations already in the outbox when the relay goes away.
      await signUp(50);
      await smtp.stop();
      const created = await service.api('POST', '/api/v1/campaigns', {
        name: 'Outage', list: 'weekly', subject: 'Hello',
        mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ subscriber.email }}</mj-text></mj-column></mj-section></mj-body></mjml>',
      });
      const { id } = await created.json() as { id: string };
      expect((await service.api('POST', `/api/v1/campaigns/${id}/send`)).status).toBe(202);
      outbox.start();
      campaigns.start();

      // 1. Connections refused. Signups keep coming in; every mail is tried and kept.
      await signUp(25);
      await sleep(REFUSED_MS);
      await until('the campaign to have been tried', async () => (await tdb.query(
        `select count(*)::int as n from campaign_messages where campaign_id = $1 and attempts > 0`, [id])).rows[0].n > 0);
      const { rows: tried } = await tdb.query(`select status, last_error from outbox where attempts > 0 limit 1`);
      expect(tried[0]).toMatchObject({ status: 'queued', last_error: expect.stringMatching(/ECONNREFUSED|connect/i) });
      expect(smtp.received).toHaveLength(0);

      // 2. The relay is back but busy: 421 at the greeting, then 421 to each message.
      smtp.refuseConnections = { code: 421, message: '4.3.2 Service busy, closing channel' };
      await smtp.restart();
      await signUp(25);
      await sleep(BUSY_MS / 2);
      smtp.refuseConnections = undefined;
      smtp.refuse = { code: 421, message: '4.3.2 Too busy, try again later' };
      await sleep(BUSY_MS / 2);
      expect(smtp.received).toHaveLength(0);

      // 3. Recovered.
      smtp.refuse = undefined;
      await signUp(25);
      await until('the campaign to be sent', async () => (await tdb.query('select status from campaigns where id = $1', [id])).rows[0].status === 'sent', 50_000);
      await until('every confirmation to be sent', async () => (await tdb.query(
        `select count(*)::int as n from outbox where status <> 'sent'`)).rows[0].n === 0, 30_000);
    } finally {
      await Promise.all([outbox.stop(), campaigns.stop()]);
      sender.close();
    }

    const counts = deliveries(smtp);
    expect(signups.filter((email) => counts.get(email) !== 1)).toEqual([]);
    const readers = [...counts].filter(([to]) => to.startsWith('reader'));
    expect(readers).toHaveLength(CAMPAIGN_SIZE);
    expect(readers.filter(([, n]) => n !== 1)).toEqual([]);
    expect(smtp.received).toHaveLength(signups.length + CAMPAIGN_SIZE);

    const { rows } = await tdb.query(`
      select 'outbox' as queue, status, count(*)::int as n from outbox group by status
      union all
      select 'campaign', status, count(*)::int from campaign_messages group by status`);
    // Nothing failed, nothing skipped, nothing still queued.
    expect(rows).toEqual(expect.arrayContaining([
      { queue: 'outbox', status: 'sent', n: signups.length }, { queue: 'campaign', status: 'sent', n: CAMPAIGN_SIZE },
    ]));
    expect(rows).toHaveLength(2);

    // The outage was met as intended: each kind of refusal happened, every confirmation queued
    // before it was refused and tried again, and so was part of the campaign.
    const kinds = new Set(refusals.map((refusal) => /ECONNREFUSED|Service busy|Too busy/.exec(refusal)?.[0] ?? refusal));
    expect([...kinds].sort()).toEqual(['ECONNREFUSED', 'Service busy', 'Too busy']);
    const { rows: retried } = await tdb.query(`
      select (select min(attempts) from outbox where recipient = any($1)) as confirmations,
             (select count(*)::int from campaign_messages where attempts > 1) as campaign`, [signups.slice(0, 50)]);
    expect(retried[0].confirmations).toBeGreaterThan(1);
    expect(retried[0].campaign).toBeGreaterThan(0);
  }, 60_000);
});

describe('a connection lost between two statements of a transaction', () => {
  let tdb: TestDatabase;
  beforeAll(async () => { tdb = await createTestDatabase(); });
  afterAll(async () => { await tdb?.drop(); });

  // pg emits 'error' on a checked-out client whose server says goodbye while no statement
  // runs (a campaign send waiting on SMTP inside its transaction, or a shutdown between two
  // statements of a signup); with nobody listening, that ended the whole process.
  it('fails that transaction as "unavailable", and the process and the pool go on', async () => {
    const failure = await tdb.db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
      await tdb.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
      await sleep(200); // the server's FATAL arrives while this transaction runs no statement
      await sql`select 1`.execute(trx);
    }).then(() => undefined, (error: unknown) => error);
    expect(failure).toBeInstanceOf(Error);
    expect(isDatabaseUnavailable(failure)).toBe(true);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(tdb.db);
    expect(rows).toEqual([{ one: 1 }]);
  });
});

describe('an Idempotency-Key whose first request never stored its answer', () => {
  let tdb: TestDatabase;
  let service: TestService;
  beforeAll(async () => {
    tdb = await createTestDatabase();
    service = await createTestService(tdb.db);
  });
  afterAll(async () => {
    service?.close();
    await tdb?.drop();
  });

  const pause = (key: string) => service.app.request('/api/v1/campaigns/999/pause', {
    method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'idempotency-key': key },
  });

  // The database went away between the claim and the answer (or the process died): the
  // retry after the outage must not be told "still running" for the key's whole day.
  it('is "in progress" for a minute, then the retry runs', async () => {
    expect((await pause('died-early')).status).toBe(404);
    await tdb.query(`update idempotency_keys set status = null, body = null where key = 'died-early'`);
    expect((await pause('died-early')).status).toBe(409);
    await tdb.query(`update idempotency_keys set created_at = now() - interval '61 seconds' where key = 'died-early'`);
    const retry = await pause('died-early');
    expect(retry.status).toBe(404);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    const replay = await pause('died-early');
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
  });
});

interface Answer {
  email: string;
  started: number;
  ended: number;
  /** The HTTP status, 'hung' past the deadline, or what broke the exchange. */
  status: number | string;
  retryAfter: string | null;
  code: string | undefined;
}

async function signUp(base: string, email: string, hungMs: number): Promise<Answer> {
  const started = Date.now();
  try {
    const response = await fetch(`${base}/subscribe`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': freshIp() },
      body: JSON.stringify({ email, list: 'news' }),
      signal: AbortSignal.timeout(hungMs),
    });
    const body = await response.json() as { error?: { code: string } };
    return { email, started, ended: Date.now(), status: response.status, retryAfter: response.headers.get('retry-after'), code: body.error?.code };
  } catch (error) {
    const status = (error as Error).name === 'TimeoutError' ? 'hung' : `${error} (${(error as Error).cause})`;
    return { email, started, ended: Date.now(), status, retryAfter: null, code: undefined };
  }
}

/** Four clients signing up one after another until stop(); every answer is kept. */
function signupStreams(base: string, options: { prefix: string; hungMs: number }) {
  const answers: Answer[] = [];
  let streaming = true;
  let sent = 0;
  const stream = async () => {
    while (streaming) {
      answers.push(await signUp(base, `${options.prefix}${sent++}@example.org`, options.hungMs));
      await sleep(20);
    }
  };
  const streams = Array.from({ length: 4 }, stream);
  return {
    answers,
    accepted: () => answers.filter((a) => a.status === 202).length,
    async stop() {
      streaming = false;
      await Promise.all(streams);
    },
  };
}

/** The accepted signups that lack their subscriber, their consent event with evidence, or their mail. */
async function lostSignups(db: Database, emails: string[]): Promise<string[]> {
  const found = await db.selectFrom('subscribers as s')
    .select((eb) => [
      's.email',
      eb.selectFrom('consent_events as e').innerJoin('consent_evidence as v', 'v.event_id', 'e.id')
        .select(eb.fn.countAll<string>().as('n')).whereRef('e.subscriber_id', '=', 's.id').where('e.kind', '=', 'requested').as('events'),
      eb.selectFrom('outbox as o').select(eb.fn.countAll<string>().as('n')).whereRef('o.subscriber_id', '=', 's.id').as('mails'),
    ])
    .where('s.email', 'in', emails)
    .execute();
  const whole = new Set(found.filter((row) => Number(row.events) === 1 && Number(row.mails) === 1).map((row) => row.email));
  return emails.filter((email) => !whole.has(email));
}

describe('PostgreSQL stops for 10 s and starts again', () => {
  const OUTAGE_MS = 10_000;
  // A request that takes longer than this has hung: the pool gives up connecting after 5 s.
  const HUNG_MS = 15_000;
  let dir: string;
  let port: number;
  let database: EmbeddedDatabase;
  let db: Database;
  let smtp: SmtpSink;
  let service: TestService;
  let server: ServerType;
  let base: string;

  beforeAll(async () => {
    // A server of our own, whatever DATABASE_URL says: this test stops it.
    dir = await mkdtemp(path.join(tmpdir(), 'assent-outage-'));
    port = await freePort();
    database = await startEmbeddedDatabase(dir, { port });
    db = createDatabase(database.url);
    await migrateToLatest(db);
    smtp = await new SmtpSink().start();
    service = await createTestService(db, { smtpUrl: smtp.url });
    await createList(service, 'news');
    server = serve({ fetch: service.app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }, 120_000);
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    service?.close();
    await smtp?.stop();
    await db?.destroy();
    await database?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers 503 with Retry-After meanwhile, loses no accepted signup, and recovers without a restart', async () => {
    service.worker.start();
    const signups = signupStreams(base, { prefix: 'stream', hungMs: HUNG_MS });
    const { answers, accepted } = signups;

    await until('signups to be accepted', () => accepted() >= 20 || answers.some((a) => typeof a.status === 'string'));
    await database.stop();
    const down = Date.now();
    await sleep(OUTAGE_MS / 2);
    const ready = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(HUNG_MS) });
    expect(ready.status).toBe(503);
    await sleep(OUTAGE_MS / 2);
    const acceptedBefore = accepted();
    const restarting = Date.now();
    database = await startEmbeddedDatabase(dir, { port });
    const up = Date.now();
    await until('signups to be accepted again', () => accepted() >= acceptedBefore + 20, 30_000);
    await signups.stop();

    expect(answers.filter((a) => typeof a.status === 'string')).toEqual([]);
    expect(answers.filter((a) => a.status !== 202 && a.status !== 503)).toEqual([]);
    const refused = answers.filter((a) => a.status === 503);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.filter((a) => a.retryAfter !== '5' || a.code !== 'unavailable')).toEqual([]);
    // Everything asked while the server was down was refused, not accepted.
    const whileDown = answers.filter((a) => a.started >= down && a.ended <= restarting);
    expect(whileDown.length).toBeGreaterThan(0);
    expect(whileDown.filter((a) => a.status !== 503)).toEqual([]);
    expect(answers.some((a) => a.started > up && a.status === 202)).toBe(true);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    // Every 202 left its subscriber, its consent event with evidence, and its mail.
    const emails = answers.filter((a) => a.status === 202).map((a) => a.email);
    expect(await lostSignups(db, emails)).toEqual([]);

    // The worker in this process went on too. Rows it had claimed as the server went down
    // (the claim committed, its answer lost) stay leased to it until the lease runs out, as
    // after a crash: 5 minutes in production, moved on here.
    await service.worker.stop();
    const sentBeforeRestart = new Set(smtp.received.filter((mail) => mail.rcptAt < restarting).flatMap((mail) => mail.envelopeTo));
    await db.updateTable('outbox').set({ locked_until: sql`now() - interval '1 second'` })
      .where('status', '=', 'queued').where('locked_by', 'is not', null).execute();
    service.worker.start();
    try {
      await until('the confirmations to arrive', () => emails.every((email) => deliveries(smtp).has(email)), 30_000);
    } finally {
      await service.worker.stop();
    }
    // A mail goes twice only if it was sent as the server went away, when its sending could
    // not be recorded.
    const twice = emails.filter((email) => deliveries(smtp).get(email)! > 1);
    expect(twice.filter((email) => !sentBeforeRestart.has(email))).toEqual([]);
  }, 90_000);
});

describe('PostgreSQL freezes for 10 s: connections open, no answers', () => {
  // SIGSTOP on the postmaster and every backend: connections stay open and the kernel still
  // completes new ones, but nothing answers, as with a hung host or a network that drops
  // packets without resetting. Only our own deadlines can end a request then.
  const FREEZE_MS = 10_000;
  // The statement timeout (5 s by default) and its second of grace, or the 5 s connect
  // timeout, with 3 s to spare; shorter than the freeze, so a request that waited for the
  // thaw counts as hung.
  const HUNG_MS = 9_000;
  let dir: string;
  let database: EmbeddedDatabase;
  let db: Database;
  let smtp: SmtpSink;
  let service: TestService;
  let server: ServerType;
  let base: string;
  let frozen: number[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'assent-freeze-'));
    database = await startEmbeddedDatabase(dir);
    const migrator = createDatabase(database.url, { max: 1 });
    await migrateToLatest(migrator);
    await migrator.destroy();
    // The pool as the service makes it, with the configured statement timeout.
    db = createDatabase(database.url, { statementTimeoutMs: testConfig().databaseStatementTimeoutMs });
    smtp = await new SmtpSink().start();
    service = await createTestService(db, { smtpUrl: smtp.url });
    await createList(service, 'news');
    server = serve({ fetch: service.app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }, 120_000);
  afterAll(async () => {
    thaw(frozen); // a failed test must not leave it frozen
    await new Promise((resolve) => server?.close(resolve));
    service?.close();
    await smtp?.stop();
    await db?.destroy();
    await database?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers every signup 202 or 503 before the deadline, loses no accepted one, and recovers without a restart', async () => {
    service.worker.start();
    const signups = signupStreams(base, { prefix: 'frozen', hungMs: HUNG_MS });
    const { answers } = signups;
    await until('signups to be accepted', () => signups.accepted() >= 20 || answers.some((a) => typeof a.status === 'string'));

    frozen = await freezePostgres(dir);
    expect(frozen.length).toBeGreaterThan(1);
    const down = Date.now();
    await sleep(FREEZE_MS / 5);
    const readyStarted = Date.now();
    const ready = fetch(`${base}/readyz`, { signal: AbortSignal.timeout(HUNG_MS) }).then((response) => ({ status: response.status, at: Date.now() }));
    await sleep(FREEZE_MS - (Date.now() - down));
    const thawed = Date.now();
    thaw(frozen);
    frozen = [];
    try {
      const readiness = await ready;
      expect(readiness.status).toBe(503);
      expect(readiness.at - readyStarted).toBeLessThan(HUNG_MS);
      const acceptedBefore = signups.accepted();
      await until('signups to be accepted again', () => signups.accepted() >= acceptedBefore + 20, 60_000);
    } finally {
      await signups.stop();
    }

    expect(answers.filter((a) => typeof a.status === 'string')).toEqual([]);
    expect(answers.filter((a) => a.status !== 202 && a.status !== 503)).toEqual([]);
    const refused = answers.filter((a) => a.status === 503);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.filter((a) => a.retryAfter !== '5' || a.code !== 'unavailable')).toEqual([]);
    // Answered during the freeze: refused, within the deadline (none hung, above), rather than
    // kept waiting for the thaw.
    const whileFrozen = answers.filter((a) => a.ended > down && a.ended <= thawed);
    expect(whileFrozen.length).toBeGreaterThan(0);
    expect(whileFrozen.filter((a) => a.status !== 503)).toEqual([]);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    const emails = answers.filter((a) => a.status === 202).map((a) => a.email);
    expect(await lostSignups(db, emails)).toEqual([]);
    // The worker came back too: the confirmations of signups accepted after the thaw arrive.
    const afterThaw = answers.filter((a) => a.status === 202 && a.started > thawed).map((a) => a.email);
    expect(afterThaw.length).toBeGreaterThan(0);
    try {
      await until('confirmations of signups after the thaw', () => afterThaw.every((email) => deliveries(smtp).has(email)), 30_000);
    } finally {
      await service.worker.stop();
    }
  }, 120_000);
});
