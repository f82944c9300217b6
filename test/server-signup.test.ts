// POST /api/v1/subscribers: a server starts the same double opt-in as the form, with the
// same throttles and the same answer whatever the address's state; the evidence names the
// key and what it asserted; the mail goes to a real SMTP peer and its link confirms.
import { describe, expect, it } from 'vitest';
import { verifyChain } from '../src/consent/ledger.js';
import { useTestService } from './helpers/fixture.js';
import { confirmLink, createList, pathOf, snapshot } from './helpers/http.js';

const t = useTestService({ smtp: true, lists: ['news'] });

const signupFor = (body: Record<string, unknown>) => t.service.api('POST', '/api/v1/subscribers', { list: 'news', ...body });

const requestEvidence = async (email: string) => (await t.tdb.query(`select v.evidence from consent_events e
  join consent_evidence v on v.event_id = e.id join subscribers s on s.id = e.subscriber_id
  where s.email = $1 and e.kind = 'requested' order by e.id`, [email])).rows.map((row) => row.evidence);

describe('a signup from a server', () => {
  it('answers 202 pending, queues the confirmation mail, and records the key and what it asserted', async () => {
    const response = await signupFor({
      email: 'server@example.org', first_name: 'Ada', locale: 'de', attributes: { plan: 'pro', seats: 3 },
      ip: '203.0.113.9', user_agent: 'Mozilla/5.0 (their browser)', page: 'https://www.example.com/join',
    });
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ status: 'pending' });
    const [evidence] = await requestEvidence('server@example.org');
    expect(evidence).toMatchObject({
      ip: '203.0.113.9', user_agent: 'Mozilla/5.0 (their browser)', page: 'https://www.example.com/join',
      api_key: { name: expect.any(String), asserted: ['ip', 'user_agent', 'page'] },
      form: { email: 'server@example.org', first_name: 'Ada', locale: 'de', attributes: { plan: 'pro', seats: 3 } },
      consent: { version: 1 },
    });
  });

  it('sends the mail in the asked locale, and its link confirms and applies names and attributes', async () => {
    const since = t.smtp.received.length;
    await signupFor({ email: 'confirms@example.org', first_name: 'Grace', locale: 'fr', attributes: { plan: 'team' } });
    await t.service.worker.runOnce();
    const mail = await t.smtp.waitForMailTo('confirms@example.org', since);
    const link = confirmLink(mail.parsed.text);
    expect((await t.service.app.request(pathOf(link), { method: 'POST' })).status).toBe(200);
    const { rows } = await t.tdb.query(`select s.first_name, s.attributes, s.locale, x.status from subscribers s
      join subscriptions x on x.subscriber_id = s.id where s.email = 'confirms@example.org'`);
    expect(rows).toEqual([{ first_name: 'Grace', attributes: { plan: 'team' }, locale: 'fr', status: 'confirmed' }]);
    const id = (await t.tdb.query(`select id from subscribers where email = 'confirms@example.org'`)).rows[0].id;
    expect((await verifyChain(t.tdb.db, id)).verified).toBe(true);
  });

  it('names only what the key asserted: nothing of the calling server stands in for the person', async () => {
    await t.service.app.request('/api/v1/subscribers', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${(await import('./helpers/secrets.js')).API_KEY}`, 'content-type': 'application/json',
        'user-agent': 'their-backend/1.0', 'x-forwarded-for': '192.0.2.200', referer: 'https://backend.example/',
      },
      body: JSON.stringify({ email: 'bare@example.org', list: 'news' }),
    });
    const [evidence] = await requestEvidence('bare@example.org');
    expect(evidence).toMatchObject({ ip: null, user_agent: null, page: null, api_key: { asserted: [] } });
  });

  it('gives the same answer whatever the address state, and the form\'s throttles: one mail per 10 minutes', async () => {
    const first = await signupFor({ email: 'twice@example.org' });
    const second = await signupFor({ email: 'twice@example.org' });
    expect([first.status, second.status]).toEqual([202, 202]);
    expect(await second.json()).toEqual({ status: 'pending' });
    const { rows } = await t.tdb.query(`select count(*)::int as n from outbox where recipient = 'twice@example.org'`);
    expect(rows[0].n).toBe(1);
    expect(await requestEvidence('twice@example.org')).toHaveLength(1);
  });

  it('sends a confirmed address nothing, with the same answer', async () => {
    const before = (await t.tdb.query(`select count(*)::int as n from outbox where recipient = 'confirms@example.org'`)).rows[0].n;
    t.service.clock.advance(11 * 60_000);
    const response = await signupFor({ email: 'confirms@example.org' });
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ status: 'pending' });
    expect((await t.tdb.query(`select count(*)::int as n from outbox where recipient = 'confirms@example.org'`)).rows[0].n).toBe(before);
  });

  it('refuses bad input with 400 naming the field, an unknown list with 404, a missing key with 401, and changes nothing', async () => {
    await createList(t.service, 'other');
    const before = await snapshot(t.tdb);
    const cases: [Record<string, unknown>, number, string][] = [
      [{ email: 'not-an-address' }, 400, 'email'],
      [{ email: 'ok@example.org', ip: 'somewhere' }, 400, 'ip'],
      [{ email: 'ok@example.org', list: undefined }, 400, 'list'],
      [{ email: 'ok@example.org', attributes: { nested: { a: 1 } } }, 400, 'attributes.nested'],
      [{ email: 'ok@example.org', evidence: 'forged' }, 400, 'body'],
      [{ email: 'ok@example.org', first_name: 'A\u0000' }, 400, 'first_name'],
      [{ email: 'ok@example.org', list: 'nope' }, 404, ''],
    ];
    for (const [body, status, field] of cases) {
      const response = await signupFor(body);
      expect(response.status, JSON.stringify(body)).toBe(status);
      const error = (await response.json() as { error: { fields?: Record<string, string> } }).error;
      if (field) expect(Object.keys(error.fields ?? {}).join(','), JSON.stringify(body)).toContain(field);
    }
    const unauthenticated = await t.service.app.request('/api/v1/subscribers', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'ok@example.org', list: 'news' }),
    });
    expect(unauthenticated.status).toBe(401);
    expect(await snapshot(t.tdb)).toEqual(before);
  });
});
