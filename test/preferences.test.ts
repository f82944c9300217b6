// The recipient's own page over HTTP: see everything, leave a list, change language, cap
// personalisation, download, erase; "Lost your mail?"; bad links.
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { preferencesUrl } from '../src/links/urls.js';
import { PREFERENCES_TTL_MS, tokenHash } from '../src/links/tokens.js';
import type { DB } from '../src/db/schema.js';
import { createApp } from '../src/http/app.js';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed, snapshot } from './helpers/http.js';
import { createTestService } from './helpers/service.js';

const t = useTestService({ smtp: true, lists: ['news', 'offers'] });

const pathFor = (id: string) => new URL(preferencesUrl(t.service.deps, id)).pathname;
const post = (path: string, fields: Record<string, string> = {}) => t.service.app.request(path, {
  method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString(),
});

async function person(prefix: string): Promise<string> {
  const [id] = await seedConfirmed(t.tdb, 'news', 1, { prefix, firstName: 'Rosa' });
  await t.tdb.query(`update subscribers set last_name = 'Parks', attributes = '{"city":"Montgomery"}' where id = $1`, [id]);
  await t.tdb.query(`update subscriptions set consent_version = 1 where subscriber_id = $1`, [id]);
  return id!;
}

describe('the preferences page', () => {
  it('shows what is held, each list with its status and the wording agreed to, and the affinity in plain words', async () => {
    const id = await person('shown');
    const response = await t.service.app.request(pathFor(id), { headers: { 'accept-language': 'en' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('set-cookie')).toBeNull();
    const html = await response.text();
    for (const text of ['shown1@example.org', 'Rosa Parks', 'city: Montgomery', 'The news', 'Subscribed',
      'Send me news by mail, about once a week.', 'Only your email address: mails do not greet you by name.']) {
      expect(html).toContain(text);
    }
    expect(html).toMatch(/<form method="post" action="\/preferences\/[^"]+\/leave">/);
  });

  it('lets the person leave a list (a recorded withdrawal), change language and lower personalisation', async () => {
    const id = await person('change');
    const path = pathFor(id);
    const left = await post(`${path}/leave`, { list: 'news' });
    expect(left.status).toBe(303);
    expect(left.headers.get('location')).toBe(`${path}?saved`);
    const { rows } = await t.tdb.query(`select x.status, (select kind from consent_events e where e.subscriber_id = x.subscriber_id order by id desc limit 1) as kind
      from subscriptions x where x.subscriber_id = $1`, [id]);
    expect(rows).toEqual([{ status: 'unsubscribed', kind: 'withdrawn' }]);

    expect((await post(`${path}/locale`, { locale: 'fi' })).status).toBe(303);
    expect((await post(`${path}/cap`, { cap: 'confirmed' })).status).toBe(303);
    const { rows: [subscriber] } = await t.tdb.query('select locale, affinity_cap from subscribers where id = $1', [id]);
    expect(subscriber).toEqual({ locale: 'fi', affinity_cap: 'confirmed' });
    expect(await (await t.service.app.request(path)).text()).toContain('lang="fi"');
    expect((await post(`${path}/cap`, { cap: 'none' })).status).toBe(303);
    expect((await t.tdb.query('select affinity_cap from subscribers where id = $1', [id])).rows[0].affinity_cap).toBeNull();

    const before = await snapshot(t.tdb);
    expect((await post(`${path}/cap`, { cap: 'best-friends' })).status).toBe(400);
    expect((await post(`${path}/locale`, { locale: 'xx' })).status).toBe(400);
    expect((await post(`${path}/leave`, { list: 'nope' })).status).toBe(404);
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('downloads the same content as the API export', async () => {
    const id = await person('download');
    const response = await post(`${pathFor(id)}/export`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toContain('attachment');
    const mine = await response.json();
    const api = await (await t.service.api('GET', `/api/v1/subscribers/${id}/export`)).json();
    expect({ ...mine, exported_at: null }).toEqual({ ...api, exported_at: null });
  });

  it('downloads no working link: the mails it lists show each link\'s token as the token\'s hash, as the API export does', async () => {
    const id = await person('links');
    expect((await post('/manage', { email: 'links1@example.org' })).status).toBe(200);
    await t.service.worker.runOnce(); // the worker turns the request into the mail
    const { rows: [queued] } = await t.tdb.query(`select text from outbox where subscriber_id = $1 and kind = 'preferences_link'`, [id]);
    const token = /\/preferences\/([A-Za-z0-9_.-]+)/.exec(queued.text)![1]!;
    t.service.clock.advance(1000);
    const download = await (await post(`${pathFor(id)}/export`)).text();
    const api = await (await t.service.api('GET', `/api/v1/subscribers/${id}/export`)).text();
    for (const body of [download, api]) {
      expect(body).not.toContain(token);
      expect(body).toContain(`/preferences/{token_sha256:${tokenHash(token)}}`);
    }
  });

  it('erases after one confirmation step', async () => {
    const id = await person('erase');
    const path = pathFor(id);
    const before = await snapshot(t.tdb);
    const ask = await post(`${path}/erase`);
    expect(ask.status).toBe(200);
    expect(await ask.text()).toContain('Erase everything about you?');
    expect(await snapshot(t.tdb)).toEqual(before);
    const done = await post(`${path}/erase/confirm`);
    expect(done.status).toBe(200);
    expect(await done.text()).toContain('You are erased');
    expect((await t.tdb.query('select email, erased_at is not null as erased from subscribers where id = $1', [id])).rows[0]).toEqual({ email: null, erased: true });
    // the link now leads to "Lost your mail?"
    expect((await t.service.app.request(path)).status).toBe(400);
  });

  it('a forged or expired link gets a page offering "Lost your mail?", and a POST without a valid token changes nothing', async () => {
    const id = await person('forged');
    const path = pathFor(id);
    const before = await snapshot(t.tdb);
    const forged = await t.service.app.request(`${path.slice(0, -2)}xx`);
    expect(forged.status).toBe(400);
    expect(await forged.text()).toContain('action="/manage"');
    expect((await post(`${path.slice(0, -2)}xx/leave`, { list: 'news' })).status).toBe(400);
    expect((await post('/preferences/garbage/erase/confirm')).status).toBe(400);
    t.service.clock.advance(PREFERENCES_TTL_MS + 1);
    const expired = await t.service.app.request(path);
    expect(expired.status).toBe(410);
    expect(await expired.text()).toContain('This link has expired');
    t.service.clock.advance(-PREFERENCES_TTL_MS - 1);
    expect(await snapshot(t.tdb)).toEqual(before);
  });
});

describe('cross-site requests', () => {
  it('a form post another site\'s page makes the browser send changes nothing (403); our own page\'s post works', async () => {
    const id = await person('csrf');
    const path = pathFor(id);
    const before = await snapshot(t.tdb);
    for (const site of ['cross-site', 'same-site']) {
      for (const [action, fields] of [['leave', { list: 'news' }], ['cap', { cap: 'confirmed' }], ['erase/confirm', {}]] as const) {
        const response = await t.service.app.request(`${path}/${action}`, {
          method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': site, origin: 'https://evil.example' },
          body: new URLSearchParams(fields).toString(),
        });
        expect(response.status).toBe(403);
      }
    }
    expect(await snapshot(t.tdb)).toEqual(before);
    const own = await t.service.app.request(`${path}/leave`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin', origin: 'null' }, body: 'list=news',
    });
    expect(own.status).toBe(303);
  });
});

describe('"Lost your mail?"', () => {
  it('answers the same whether or not the address is known, and mails a working link to a known one', async () => {
    const id = await person('lost');
    const known = await post('/manage', { email: 'lost1@example.org', locale: 'de' });
    const unknown = await post('/manage', { email: 'stranger@example.org', locale: 'de' });
    expect(known.status).toBe(200);
    expect(unknown.status).toBe(200);
    expect(await known.text()).toBe(await unknown.text());
    const since = t.smtp.received.length;
    await t.service.worker.runOnce();
    const mail = await t.smtp.waitForMailTo('lost1@example.org', since);
    expect(mail.parsed.subject).toContain('Einstellungen');
    const link = /https:\/\/assent\.test\/preferences\/[A-Za-z0-9_.-]+/.exec(mail.parsed.text ?? '')![0];
    const page = await t.service.app.request(new URL(link).pathname);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('lost1@example.org');
    // at most one such mail per 10 minutes
    await post('/manage', { email: 'lost1@example.org' });
    await t.service.worker.runOnce();
    const { rows } = await t.tdb.query(`select count(*)::int as n from outbox where subscriber_id = $1 and kind = 'preferences_link'`, [id]);
    expect(rows[0].n).toBe(1);
    expect((await post('/manage', { email: 'not an address' })).status).toBe(400);
  });

  it('mails one address at most 5 links a day, however they are spaced, answering the same each time', async () => {
    const id = await person('daily');
    const first = await (await post('/manage', { email: 'daily1@example.org' })).text();
    for (let i = 0; i < 6; i += 1) {
      t.service.clock.advance(11 * 60_000);
      expect(await (await post('/manage', { email: 'daily1@example.org' })).text()).toBe(first);
    }
    await t.service.worker.runOnce(); // the limits count from each request's time, not from when the worker got to it
    const { rows } = await t.tdb.query(`select count(*)::int as n from outbox where subscriber_id = $1 and kind = 'preferences_link'`, [id]);
    expect(rows[0].n).toBe(5);
  });

  it('counts its limits per mailbox: spellings of one mailbox that we hold share them', async () => {
    const { rows } = await t.tdb.query<{ id: string }>(`insert into subscribers (email) values ('Jane.Doe+news@gmail.com'), ('janedoe@googlemail.com') returning id`);
    for (const email of ['Jane.Doe+news@gmail.com', 'janedoe@googlemail.com', 'JANE.DOE@gmail.com']) {
      expect((await post('/manage', { email })).status).toBe(200);
    }
    await t.service.worker.runOnce();
    const mailed = await t.tdb.query(`select count(*)::int as n from outbox where subscriber_id = any($1::uuid[]) and kind = 'preferences_link'`, [rows.map((r) => r.id)]);
    expect(mailed.rows[0].n).toBe(1);
  });

  it('does the same work for any address: one INSERT, whether it is unknown, known, or known and throttled', async () => {
    await person('same');
    await post('/manage', { email: 'same1@example.org' });
    await t.service.worker.runOnce(); // same1 has had its link: the next request for it is throttled
    await person('unthrottled');
    const statements: { sql: string; parameters: readonly unknown[] }[] = [];
    const logged = new Kysely<DB>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: t.tdb.url, max: 2 }) }),
      log: (event) => { if (event.level === 'query') statements.push({ sql: event.query.sql, parameters: event.query.parameters }); },
    });
    try {
      const app = createApp({ ...t.service.deps, db: logged });
      const work = async (email: string) => {
        statements.length = 0;
        const response = await app.request('/manage', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ email }).toString() });
        return { status: response.status, body: await response.text(), statements: statements.map((s) => ({ sql: s.sql, values: s.parameters.length })) };
      };
      const unknown = await work('nobody.here@example.org');
      expect(unknown.statements).toEqual([{ sql: expect.stringMatching(/^insert into "preferences_link_requests"/), values: 3 }]);
      expect(await work('same1@example.org')).toEqual(unknown);
      expect(await work('unthrottled1@example.org')).toEqual(unknown);
    } finally {
      await logged.destroy();
    }
  });

  it('a worker handles each request once and keeps no address of someone we do not hold', async () => {
    await person('handled');
    for (const email of ['handled1@example.org', 'Someone.Else@example.org']) expect((await post('/manage', { email })).status).toBe(200);
    const since = t.smtp.received.length;
    const mailsTo = (address: string) => t.smtp.received.slice(since).filter((mail) => mail.envelopeTo.includes(address)).length;
    await t.service.worker.runOnce();
    await t.smtp.waitForMailTo('handled1@example.org', since);
    expect([mailsTo('handled1@example.org'), mailsTo('someone.else@example.org')]).toEqual([1, 0]);
    const { rows: tables } = await t.tdb.query(`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`);
    for (const { table_name: table } of tables) {
      const { rows } = await t.tdb.query(`select count(*)::int as n from "${table}" t where t::text ilike '%someone.else@example.org%'`);
      expect(rows[0].n, `${table} holds the stranger's address`).toBe(0);
    }
    expect((await t.tdb.query('select count(*)::int as n from preferences_link_requests')).rows[0].n).toBe(0);
    await t.service.worker.runOnce();
    expect(mailsTo('handled1@example.org')).toBe(1);
  });

  it('answers 429 with Retry-After past the per-IP limit, mailing nothing more', async () => {
    const limited = await createTestService(t.tdb.db, { env: { SUBSCRIBE_RATE_LIMIT: '2/min' } });
    try {
      const id = await person('flood');
      const from = { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': '203.0.113.77' };
      for (let i = 0; i < 2; i += 1) {
        expect((await limited.app.request('/manage', { method: 'POST', headers: from, body: `email=stranger${i}%40example.org` })).status).toBe(200);
      }
      const refused = await limited.app.request('/manage', { method: 'POST', headers: from, body: 'email=flood1%40example.org' });
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      await limited.worker.runOnce();
      const { rows } = await t.tdb.query(`select count(*)::int as n from outbox where subscriber_id = $1`, [id]);
      expect(rows[0].n).toBe(0);
    } finally {
      limited.close();
    }
  });
});
