// POST /subscribe as landing pages use it: three encodings, the same answer whatever the
// address's state, throttles (per mailbox, whatever the spelling), signups that write
// nothing, the honeypot, the rate limit, redirects, CORS and bad input.
import { beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase } from './helpers/db.js';
import { useTestService } from './helpers/fixture.js';
import { confirmLink, createList, pathOf, postForm, postJson, snapshot, snapshotAllTables } from './helpers/http.js';
import { createTestService, type TestService } from './helpers/service.js';
import { verifyChain } from '../src/consent/ledger.js';

const t = useTestService({ smtp: true, env: { REDIRECT_HOSTS: 'www.example.com' }, lists: ['news'] });

const outboxFor = async (email: string) =>
  (await t.tdb.query('select * from outbox where lower(recipient) = lower($1) order by id', [email])).rows;

describe('accepting a signup', () => {
  it('takes JSON and answers 202 pending, with the mail queued in the same transaction', async () => {
    const response = await postJson(t.service, { email: 'json@example.org', list: 'news' });
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ status: 'pending' });
    const [mail] = await outboxFor('json@example.org');
    expect(mail).toMatchObject({ kind: 'confirmation', status: 'queued' });
    const { rows } = await t.tdb.query(`select s.status, e.kind from subscriptions s
      join consent_events e on e.subscriber_id = s.subscriber_id where s.subscriber_id = $1`, [mail.subscriber_id]);
    expect(rows).toEqual([{ status: 'pending', kind: 'requested' }]);
  });

  it('takes a urlencoded form and answers 303 to the check-your-inbox page', async () => {
    const response = await postForm(t.service, { email: 'form@example.org', list: 'news', locale: 'fr' });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/subscribe/check-inbox?locale=fr');
    const page = await t.service.app.request(response.headers.get('location')!);
    expect(await page.text()).toContain('lang="fr"');
    expect(await outboxFor('form@example.org')).toHaveLength(1);
  });

  it('takes multipart/form-data', async () => {
    const body = new FormData();
    body.set('email', 'multi@example.org');
    body.set('list', 'news');
    const response = await t.service.app.request('/subscribe', { method: 'POST', body, headers: { 'x-forwarded-for': '192.0.2.77' } });
    expect(response.status).toBe(303);
    expect(await outboxFor('multi@example.org')).toHaveLength(1);
  });

  it('answers JSON to a form post that asks for it with Accept', async () => {
    const response = await postForm(t.service, { email: 'accept@example.org', list: 'news' }, { accept: 'application/json' });
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ status: 'pending' });
  });

  it('uses the only list when none is named', async () => {
    const other = await createTestDatabase();
    const single = await createTestService(other.db);
    try {
      await createList(single, 'only');
      expect((await postJson(single, { email: 'one@example.org' })).status).toBe(202);
      const { rows } = await other.query(`select l.slug from subscriptions s join lists l on l.id = s.list_id`);
      expect(rows).toEqual([{ slug: 'only' }]);
    } finally {
      single.close();
      await other.drop();
    }
  });

  it('normalises the address: trimmed, domain lower-cased, IDN to punycode', async () => {
    expect((await postJson(t.service, { email: '  Ada.Lovelace@BÜCHER.Example ', list: 'news' })).status).toBe(202);
    const { rows } = await t.tdb.query(`select email from subscribers where email like 'Ada.Lovelace@%'`);
    expect(rows).toEqual([{ email: 'Ada.Lovelace@xn--bcher-kva.example' }]);
  });

  it('keeps names only until confirmation, cleaned of control characters, and only fields the list collects', async () => {
    await createList(t.service, 'nameless', { fields: [] });
    await postJson(t.service, { email: 'names@example.org', list: 'news', first_name: 'Ada\r\nBcc: evil@example.org', last_name: '\u202EecalevoL' });
    await postJson(t.service, { email: 'names2@example.org', list: 'nameless', first_name: 'Grace' });
    const { rows } = await t.tdb.query(`select s.email, x.pending_fields from subscribers s join subscriptions x on x.subscriber_id = s.id
      where s.email in ('names@example.org', 'names2@example.org') order by s.email`);
    const fieldsOf = Object.fromEntries(rows.map((row) => [row.email, row.pending_fields]));
    expect(fieldsOf['names@example.org']).toEqual({ locale: 'en', first_name: 'Ada Bcc: evil@example.org', last_name: 'ecalevoL' });
    expect(fieldsOf['names2@example.org']).toEqual({ locale: 'en' });
  });
});

describe('no enumeration', () => {
  it('answers byte for byte the same for a new, pending, confirmed and unsubscribed address', async () => {
    await postJson(t.service, { email: 'pending@example.org', list: 'news' });
    await postJson(t.service, { email: 'confirmed@example.org', list: 'news' });
    await postJson(t.service, { email: 'left@example.org', list: 'news' });
    await t.tdb.query(`update subscriptions set status = 'confirmed' where subscriber_id = (select id from subscribers where email = 'confirmed@example.org')`);
    await t.tdb.query(`update subscriptions set status = 'unsubscribed' where subscriber_id = (select id from subscribers where email = 'left@example.org')`);

    const answers: { post: string; status: number; headers: Record<string, string>; body: string }[] = [];
    for (const email of ['brand-new@example.org', 'pending@example.org', 'confirmed@example.org', 'left@example.org']) {
      for (const post of [postJson, postForm]) {
        const response = await post(t.service, { email, list: 'news' });
        // (a fresh request id per answer says nothing about the address)
        const headers = Object.fromEntries([...response.headers].filter(([name]) => name !== 'date' && name !== 'x-request-id'));
        answers.push({ post: post.name, status: response.status, headers, body: await response.text() });
      }
    }
    const byKind = (kind: string) => answers.filter((answer) => answer.post === kind).map(({ post, ...rest }) => rest);
    for (const kind of ['postJson', 'postForm']) {
      const [first, ...rest] = byKind(kind);
      for (const answer of rest) expect(answer).toEqual(first);
    }
  });

  it('sends no confirmation mail to a confirmed address, one to an unsubscribed one', async () => {
    const before = (await outboxFor('confirmed@example.org')).length;
    t.service.clock.advance(11 * 60_000);
    await postJson(t.service, { email: 'confirmed@example.org', list: 'news' });
    await postJson(t.service, { email: 'left@example.org', list: 'news' });
    expect(await outboxFor('confirmed@example.org')).toHaveLength(before);
    const { rows } = await t.tdb.query(`select status from subscriptions where subscriber_id = (select id from subscribers where email = 'left@example.org')`);
    expect(rows).toEqual([{ status: 'pending' }]);
  });
});

describe('throttles', () => {
  it('resends at most once per 10 minutes per address and list', async () => {
    const email = 'throttle@example.org';
    await postJson(t.service, { email, list: 'news' });
    await postJson(t.service, { email, list: 'news' });
    t.service.clock.advance(9 * 60_000);
    await postJson(t.service, { email, list: 'news' });
    expect(await outboxFor(email)).toHaveLength(1);
    t.service.clock.advance(61_000);
    expect((await postJson(t.service, { email: email.toUpperCase(), list: 'news' })).status).toBe(202);
    expect(await outboxFor(email)).toHaveLength(2);
  });

  it('sends at most 5 a day to one address over all lists', async () => {
    for (const slug of ['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7']) await createList(t.service, slug);
    const email = 'daily@example.org';
    for (const slug of ['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7']) {
      expect((await postJson(t.service, { email, list: slug })).status).toBe(202);
    }
    expect(await outboxFor(email)).toHaveLength(5);
    const requested = async () => (await t.tdb.query(
      `select count(*)::int as n from consent_events e join subscribers s on s.id = e.subscriber_id where s.email = $1 and e.kind = 'requested'`,
      [email])).rows[0].n;
    expect(await requested()).toBe(5);
    t.service.clock.advance(24 * 3600_000 + 1000);
    await postJson(t.service, { email, list: 'a7' });
    expect(await outboxFor(email)).toHaveLength(6);
    expect(await requested()).toBe(6);
  });

  it('keeps the cap and one unbroken chain when one address signs up to many lists at once', async () => {
    const slugs = ['b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8'];
    for (const slug of slugs) await createList(t.service, slug);
    const email = 'racing@example.org';
    const answers = await Promise.all(slugs.map((slug) => postJson(t.service, { email, list: slug })));
    expect(answers.map((answer) => answer.status)).toEqual(slugs.map(() => 202));
    expect(await outboxFor(email)).toHaveLength(5);
    const { rows: [subscriber] } = await t.tdb.query('select id from subscribers where email = $1', [email]);
    const chain = await verifyChain(t.tdb.db, subscriber.id);
    expect(chain.events).toHaveLength(5);
    expect(chain.verified).toBe(true);
  });
});

/** Twenty spellings of one Gmail mailbox, each a different address to us (lower-cased, all differ). */
const gmailSpellings = (local: string) => {
  const [first, last] = local.split('.') as [string, string];
  return [
    `${first}.${last}@gmail.com`, `${first}${last}@gmail.com`, `${first[0]}.${first.slice(1)}${last}@gmail.com`,
    `${first}${last[0]}.${last.slice(1)}@gmail.com`, `${[...first].join('.')}${last}@gmail.com`, `${first}${[...last].join('.')}@gmail.com`,
    `${[...first, ...last].join('.')}@gmail.com`, `${first}${last}+news@gmail.com`, `${first}.${last}+1@gmail.com`,
    `${first.toUpperCase()}${last}+x@gmail.com`, `${first}${last}@googlemail.com`, `${first}.${last}@googlemail.com`,
    `${first}.${last}+a@googlemail.com`, `${first[0]}.${first.slice(1)}.${last}@gmail.com`, `${first}.${last[0]}.${last.slice(1)}@gmail.com`,
    `${first}${last}+2@gmail.com`, `${first}${last}+3@googlemail.com`, `${[...first].join('.')}.${last}+z@gmail.com`,
    `${first.toUpperCase()}.${last}+${last}@googlemail.com`, `${first}${last}+${first}@gmail.com`,
  ];
};

describe('throttles per mailbox, whatever the spelling', () => {
  const mailsTo = async (spellings: string[]) => {
    await t.service.worker.runOnce();
    const wanted = new Set(spellings.map((email) => email.toLowerCase()));
    return t.smtp.received.filter((mail) => mail.envelopeTo.some((to) => wanted.has(to.toLowerCase())));
  };

  it('sends 20 spellings of one Gmail mailbox from one IP at most 5 mails, answering each the same', async () => {
    const spellings = gmailSpellings('jane.doe');
    expect(new Set(spellings.map((email) => email.toLowerCase())).size).toBe(20);
    const lists = ['g1', 'g2', 'g3', 'g4'];
    for (const slug of lists) await createList(t.service, slug);
    const answers = new Set<string>();
    for (const [i, email] of spellings.entries()) {
      // 11 minutes apart, so only the daily cap can hold them back
      t.service.clock.advance(11 * 60_000);
      const response = await postJson(t.service, { email, list: lists[i % lists.length] }, { 'x-forwarded-for': '203.0.113.50' });
      answers.add(`${response.status} ${await response.text()}`);
    }
    expect([...answers]).toEqual(['202 {"status":"pending"}']);
    expect(await mailsTo(spellings)).toHaveLength(5);
  });

  it('resends at most once per 10 minutes per mailbox and list', async () => {
    const spellings = gmailSpellings('ada.byron');
    for (const email of spellings.slice(0, 3)) await postJson(t.service, { email, list: 'news' });
    t.service.clock.advance(9 * 60_000);
    await postJson(t.service, { email: spellings[3], list: 'news' });
    expect(await mailsTo(spellings)).toHaveLength(1);
    t.service.clock.advance(61_000);
    await postJson(t.service, { email: spellings[4], list: 'news' });
    expect(await mailsTo(spellings)).toHaveLength(2);
  });

  it('holds when the spellings sign up at the same moment', async () => {
    const spellings = gmailSpellings('race.condition');
    const lists = ['h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7', 'h8'];
    for (const slug of lists) await createList(t.service, slug);
    const answers = await Promise.all(spellings.map((email, i) => postJson(t.service, { email, list: lists[i % lists.length] })));
    expect(answers.map((answer) => answer.status)).toEqual(spellings.map(() => 202));
    expect(await mailsTo(spellings)).toHaveLength(5);
    // the throttled ones wrote nothing: one subscriber per mail
    const { rows } = await t.tdb.query(`select count(*)::int as n from subscribers where mailbox_key = 'racecondition@gmail.com'`);
    expect(rows[0].n).toBe(5);
  });
});

describe('signups that write nothing', () => {
  it('a throttled signup writes nothing at all, in any table, whatever the spelling', async () => {
    const lists = ['w1', 'w2', 'w3', 'w4', 'w5', 'w6', 'w7'];
    for (const slug of lists) await createList(t.service, slug);
    const email = 'capped@example.org';
    for (const slug of lists.slice(0, 5)) expect((await postJson(t.service, { email, list: slug })).status).toBe(202);
    const before = await snapshotAllTables(t.tdb);
    for (const slug of lists.slice(5)) {
      expect((await postJson(t.service, { email, list: slug })).status).toBe(202);
      expect((await postForm(t.service, { email: 'Capped+again@example.org', list: slug })).status).toBe(303);
    }
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('a signup of a confirmed address writes nothing at all', async () => {
    const email = 'settled@example.org';
    const count = t.smtp.received.length;
    await postJson(t.service, { email, list: 'news' });
    await t.service.worker.runOnce();
    const { parsed } = await t.smtp.waitForMailTo(email, count);
    expect((await t.service.app.request(pathOf(confirmLink(parsed.text)), { method: 'POST' })).status).toBe(200);
    t.service.clock.advance(11 * 60_000);
    // the transaction ids that wrote the person's rows: not even a new version of a row is written
    const versions = async () => (await t.tdb.query(`select s.xmin::text as subscriber, x.xmin::text as subscription
      from subscribers s join subscriptions x on x.subscriber_id = s.id where s.email = $1`, [email])).rows;
    const before = { tables: await snapshotAllTables(t.tdb), versions: await versions() };
    expect((await postJson(t.service, { email, list: 'news', first_name: 'Someone Else' })).status).toBe(202);
    expect((await postForm(t.service, { email: email.toUpperCase(), list: 'news' })).status).toBe(303);
    expect({ tables: await snapshotAllTables(t.tdb), versions: await versions() }).toEqual(before);
  });
});

describe('the honeypot', () => {
  it('answers as for success and does nothing', async () => {
    const before = await snapshot(t.tdb);
    const json = await postJson(t.service, { email: 'bot@example.org', list: 'news', website: 'http://spam.example' });
    const form = await postForm(t.service, { email: 'bot@example.org', list: 'news', website: 'x' });
    expect(json.status).toBe(202);
    expect(await json.json()).toEqual({ status: 'pending' });
    expect(form.status).toBe(303);
    expect(form.headers.get('location')).toBe('/subscribe/check-inbox?locale=en');
    expect(await snapshot(t.tdb)).toEqual(before);
  });
});

describe('redirects', () => {
  it('sends a form post back to an allowed host', async () => {
    const response = await postForm(t.service, { email: 'back@example.org', list: 'news', redirect: 'https://www.example.com/thanks?x=1' });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('https://www.example.com/thanks?x=1');
  });

  it.each([
    'https://evil.example/phish',
    'https://www.example.com.evil.example/',
    'javascript:alert(1)',
    '//evil.example/',
    'https://user:pw@www.example.com/',
  ])('refuses %s with 400 and changes nothing', async (redirect) => {
    const before = await snapshot(t.tdb);
    const response = await postForm(t.service, { email: 'redirect@example.org', list: 'news', redirect });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toContain('text/html');
    expect(await snapshot(t.tdb)).toEqual(before);
  });
});

describe('bad input', () => {
  it.each([
    [{ list: 'news' }, 'email'],
    [{ email: 'not-an-address', list: 'news' }, 'email'],
    [{ email: 'a@b', list: 'news' }, 'email'],
    [{ email: `${'x'.repeat(65)}@example.org`, list: 'news' }, 'email'],
    [{ email: `a@${'d'.repeat(250)}.org`, list: 'news' }, 'email'],
    [{ email: 'line@example.org\r\nBcc: x@example.org', list: 'news' }, 'email'],
    [{ email: 42, list: 'news' }, 'email'],
    [{ email: 'ok@example.org', list: ['news'] }, 'list'],
    [{ email: 'ok@example.org', list: 'news', first_name: 'x'.repeat(201) }, 'first_name'],
  ])('%j gets 400 naming %s, and changes nothing', async (body, field) => {
    const before = await snapshot(t.tdb);
    const response = await postJson(t.service, body);
    expect(response.status).toBe(400);
    const answer = await response.json() as { error: { code: string; message: string; fields: Record<string, string> } };
    expect(answer.error.code).toBe('invalid_input');
    expect(answer.error.message).toEqual(expect.any(String));
    expect(Object.keys(answer.error.fields)).toContain(field);
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('gets 400 for malformed JSON and for a JSON array', async () => {
    expect((await postJson(t.service, '{"email":')).status).toBe(400);
    expect((await postJson(t.service, '[1,2]')).status).toBe(400);
  });

  it('gets an HTML 400 page for a bad form post, in the form language', async () => {
    const response = await postForm(t.service, { email: 'nope', list: 'news', locale: 'de' });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('lang="de"');
    expect(html).toContain('Geben Sie eine gültige E-Mail-Adresse ein');
  });

  it('gets 404 for an unknown list, 400 when the list is needed and missing', async () => {
    const response = await postJson(t.service, { email: 'ok@example.org', list: 'nope' });
    expect(response.status).toBe(404);
    expect((await response.json()).error.code).toBe('list_not_found');
    expect((await postJson(t.service, { email: 'ok@example.org' })).status).toBe(400);
  });

  it('gets 413 for an over-large body and 415 for an unknown content type', async () => {
    const before = await snapshot(t.tdb);
    const big = await postJson(t.service, { email: 'big@example.org', list: 'news', first_name: 'x'.repeat(100_000) });
    expect(big.status).toBe(413);
    const xml = await t.service.app.request('/subscribe', { method: 'POST', headers: { 'content-type': 'text/xml' }, body: '<a/>' });
    expect(xml.status).toBe(415);
    expect(await snapshot(t.tdb)).toEqual(before);
  });
});

describe('CORS', () => {
  it('lets a browser fetch from any origin post JSON', async () => {
    const preflight = await t.service.app.request('/subscribe', {
      method: 'OPTIONS',
      headers: { origin: 'https://landing.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    const response = await postJson(t.service, { email: 'cors@example.org', list: 'news' }, { origin: 'https://landing.example' });
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    const refused = await postJson(t.service, { email: 'x', list: 'news' }, { origin: 'https://landing.example' });
    expect(refused.status).toBe(400);
    expect(refused.headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe('the per-IP rate limit', () => {
  let limited: TestService;
  beforeEach(async () => {
    limited = await createTestService(t.tdb.db, { env: { SUBSCRIBE_RATE_LIMIT: '3/min' } });
  });

  it('answers 429 with Retry-After past the limit, changing nothing, and lets the client in again later', async () => {
    const from = { 'x-forwarded-for': '203.0.113.9' };
    for (let i = 0; i < 3; i += 1) {
      expect((await postJson(limited, { email: `rl${i}@example.org`, list: 'news' }, from)).status).toBe(202);
    }
    const before = await snapshot(t.tdb);
    const refused = await postJson(limited, { email: 'rl9@example.org', list: 'news' }, from);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await refused.json()).error.code).toBe('rate_limited');
    expect(await snapshot(t.tdb)).toEqual(before);
    // another client is not affected
    expect((await postJson(limited, { email: 'rl10@example.org', list: 'news' }, { 'x-forwarded-for': '203.0.113.10' })).status).toBe(202);
    limited.clock.advance(Number(refused.headers.get('retry-after')) * 1000);
    expect((await postJson(limited, { email: 'rl11@example.org', list: 'news' }, from)).status).toBe(202);
    limited.close();
  });

  it('counts an IPv6 client per /64 however its address is spelt, IPv4-mapped as IPv4, and keeps the whole address as evidence', async () => {
    const signUp = (email: string, ip: string) => postJson(limited, { email, list: 'news' }, { 'x-forwarded-for': ip });
    const evidenceIp = async (email: string) => (await t.tdb.query(`select v.evidence->>'ip' as ip from consent_evidence v
      join consent_events e on e.id = v.event_id join subscribers s on s.id = e.subscriber_id where s.email = $1`, [email])).rows[0].ip;
    // One /64, one address in three spellings, then others in the same /64.
    for (const [i, ip] of ['2001:DB8:3::1', '2001:db8:3:0:0::1', '[2001:db8:3::ffff]'].entries()) {
      expect((await signUp(`v6-${i}@example.org`, ip)).status).toBe(202);
    }
    const before = await snapshot(t.tdb);
    for (const ip of ['2001:db8:3:0::1', '[2001:0db8:0003::1]:443', '2001:db8:3::1%eth0', '2001:db8:3:0:abcd:ef01:2345:6789']) {
      expect((await signUp('v6-refused@example.org', ip)).status, ip).toBe(429);
    }
    expect(await snapshot(t.tdb)).toEqual(before);
    expect((await signUp('v6-next@example.org', '2001:db8:3:1::1')).status).toBe(202); // the next /64 is another client
    expect(await evidenceIp('v6-0@example.org')).toBe('2001:db8:3::1');
    expect(await evidenceIp('v6-2@example.org')).toBe('2001:db8:3::ffff');

    for (const [i, ip] of ['::ffff:203.0.113.20', '::FFFF:cb00:7114', '[::ffff:203.0.113.20]'].entries()) {
      expect((await signUp(`mapped-${i}@example.org`, ip)).status).toBe(202);
    }
    expect((await signUp('mapped-refused@example.org', '203.0.113.20')).status).toBe(429);
    expect(await evidenceIp('mapped-0@example.org')).toBe('203.0.113.20');
    limited.close();
  });
});
