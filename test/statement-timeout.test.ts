// DATABASE_STATEMENT_TIMEOUT on a live server: a statement that waits too long (here on a
// lock held by the test) is cancelled by PostgreSQL and the request answers 503 with
// Retry-After, while work that is slow by nature, fixing a campaign's audience, has its own
// allowance. (A server that answers nothing at all: test/outage.test.ts, "freezes".)
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allowLongStatements, createDatabase, type Database, isDatabaseUnavailable } from '../src/db/database.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { createList, freshIp, postJson, seedConfirmed } from './helpers/http.js';
import { createTestService, type TestService } from './helpers/service.js';
import { until } from './helpers/wait.js';

const TIMEOUT_MS = 1_000;
let tdb: TestDatabase;
let db: Database;
let service: TestService;

beforeAll(async () => {
  tdb = await createTestDatabase();
  // The pool as main.ts makes it, with a short timeout so that the tests are quick.
  db = createDatabase(tdb.url, { max: 4, statementTimeoutMs: TIMEOUT_MS });
  service = await createTestService(db);
  await createList(service, 'news');
});

afterAll(async () => {
  service?.close();
  await db?.destroy();
  await tdb?.drop();
});

/** Runs `use` while another session holds `lock`, then commits that session. */
async function whileLocked<T>(lock: string, use: () => Promise<T>): Promise<T> {
  const holder = new pg.Client({ connectionString: tdb.url });
  await holder.connect();
  try {
    await holder.query('begin');
    await holder.query(lock);
    return await use();
  } finally {
    await holder.query('commit');
    await holder.end();
  }
}

describe('a statement past DATABASE_STATEMENT_TIMEOUT', () => {
  it('answers 503 with Retry-After instead of waiting, and the next request goes through', async () => {
    const refused = await whileLocked('lock table subscribers in access exclusive mode', async () =>
      postJson(service, { email: 'waits.on.a.lock@example.org', list: 'news' }, { 'x-forwarded-for': freshIp() }));
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect((await refused.json()).error.code).toBe('unavailable');
    const accepted = await postJson(service, { email: 'waits.on.a.lock@example.org', list: 'news' }, { 'x-forwarded-for': freshIp() });
    expect(accepted.status).toBe(202);
  });
});

describe('allowLongStatements', () => {
  it('lets the statements of one transaction run longer, and only that transaction', async () => {
    const single = createDatabase(tdb.url, { max: 1, statementTimeoutMs: 300 });
    try {
      const slept = await single.transaction().execute(async (trx) => {
        await allowLongStatements(trx, { timeoutMs: 5_000 });
        await sql`select pg_sleep(0.6)`.execute(trx);
        return 'slept';
      });
      expect(slept).toBe('slept');
      // the same (only) connection, back to the pool's own limit
      const failure = await sql`select pg_sleep(0.6)`.execute(single).then(() => undefined, (error: unknown) => error);
      expect(isDatabaseUnavailable(failure)).toBe(true);
      expect((await sql<{ one: number }>`select 1 as one`.execute(single)).rows).toEqual([{ one: 1 }]);
    } finally {
      await single.destroy();
    }
  });

  // A million recipients take about 15 s to fix; here the audience's insert waits on a lock
  // for longer than the pool's timeout instead.
  it('lets a campaign send fix an audience that takes longer than DATABASE_STATEMENT_TIMEOUT', async () => {
    await seedConfirmed(tdb, 'news', 50, { prefix: 'audience' });
    const created = await service.api('POST', '/api/v1/campaigns', {
      name: 'Slow audience', list: 'news', subject: 'Hello',
      mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>',
    });
    const { id } = await created.json() as { id: string };
    const { sending } = await whileLocked('lock table campaign_messages in share row exclusive mode', async () => {
      let answered = false;
      const sending = service.api('POST', `/api/v1/campaigns/${id}/send`).finally(() => { answered = true; });
      // Held past the timeout and its grace, then let go.
      await until('the audience to wait on the lock past the timeout', async () => answered || (await tdb.query(`
        select 1 from pg_stat_activity
        where pid <> pg_backend_pid() and wait_event_type = 'Lock' and query like '%insert into campaign_messages%'
          and now() - query_start > $1::interval`,
      [`${TIMEOUT_MS * 2} milliseconds`])).rowCount! > 0, 20_000);
      return { sending };
    });
    const sent = await sending;
    expect(sent.status).toBe(202);
    expect((await sent.json()).counts.queued).toBe(50);
  });
});

describe('a withdrawal waiting for a send under way', () => {
  it('waits past DATABASE_STATEMENT_TIMEOUT for the send that holds the subscription, then answers 200: one click works, never 503', async () => {
    const [id] = await seedConfirmed(tdb, 'news', 1, { prefix: 'held' });
    const token = service.deps.signer.signUnsubscribe({ subscriberId: id!, listId: (await tdb.query(`select id from lists where slug = 'news'`)).rows[0].id });
    // A campaign send holds the row FOR SHARE while its relay answers (workers/campaign.ts): here, 2.5 s.
    const pending = await whileLocked(`select 1 from subscriptions where subscriber_id = '${id}' for share`, async () => {
      const answer = service.app.request(`/u/${token}`, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click',
      });
      await new Promise((resolve) => setTimeout(resolve, 2.5 * TIMEOUT_MS));
      return { answer };
    });
    expect((await pending.answer).status).toBe(200);
    expect((await tdb.query('select status from subscriptions where subscriber_id = $1', [id])).rows[0].status).toBe('unsubscribed');
  });
});
