// Segments (issue 20): attributes (containment), locales, confirmed_before/after narrow a
// campaign's audience together with min_affinity and the terms rule, in the one statement that
// fixes it; POST /campaigns/{id}/audience counts the same rules, and a real SMTP peer shows
// who the send reached.
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed, snapshotAllTables } from './helpers/http.js';

const t = useTestService({ smtp: true, lists: ['seg'] });

const MJML = '<mjml><mj-body><mj-section><mj-column><mj-text>Hello</mj-text></mj-column></mj-section></mj-body></mjml>';
const FULL = {
  attributes: { plan: 'pro', region: 'eu' }, locales: ['en', 'de'],
  confirmed_after: '2026-01-05T00:00:00Z', confirmed_before: '2026-01-15T00:00:00Z',
};

// seg1 matches all; seg2 lacks region; seg3 is on the free plan; seg4 matches, engaged;
// seg5 matches but never agreed to the material change; seg6 matches but confirmed too early.
const PEOPLE: [attributes: object, locale: string, confirmedAt: string][] = [
  [{ plan: 'pro', region: 'eu', seats: 3 }, 'en', '2026-01-10'],
  [{ plan: 'pro' }, 'de', '2026-01-08'],
  [{ plan: 'free', region: 'eu' }, 'en', '2026-01-12'],
  [{ plan: 'pro', region: 'eu' }, 'de', '2026-01-14'],
  [{ plan: 'pro', region: 'eu' }, 'en', '2026-01-11'],
  [{ plan: 'pro', region: 'eu' }, 'fr', '2026-01-01'],
];

async function create(extra: Record<string, unknown>) {
  return t.service.api('POST', '/api/v1/campaigns', { name: 'seg', list: 'seg', subject: 'Hi', mjml: MJML, ...extra });
}

async function audienceOf(extra: Record<string, unknown>) {
  const created = await create(extra);
  expect(created.status).toBe(201);
  const { id } = await created.json();
  const response = await t.service.api('POST', `/api/v1/campaigns/${id}/audience`);
  expect(response.status).toBe(200);
  return { id: id as string, audience: await response.json() };
}

beforeAll(async () => {
  const ids = await seedConfirmed(t.tdb, 'seg', PEOPLE.length, { prefix: 'seg' });
  for (const [i, [attributes, locale, confirmedAt]] of PEOPLE.entries()) {
    await t.tdb.query('update subscribers set attributes = $2, locale = $3 where id = $1', [ids[i], JSON.stringify(attributes), locale]);
    await t.tdb.query('update subscriptions set confirmed_at = $2 where subscriber_id = $1', [ids[i], confirmedAt]);
  }
  await t.tdb.query(`insert into affinity_events (subscriber_id, level, reason) values ($1, 'engaged', 'test')`, [ids[3]]);
  expect((await t.service.api('PATCH', '/api/v1/lists/seg', { consent_text: 'Seg, and partners.', reconsent: true })).status).toBe(200);
  await t.tdb.query('update subscriptions set consent_version = 2 where subscriber_id <> $1', [ids[4]]);
});

describe('segments', () => {
  it('count the audience by affinity level and say what the terms, the segment and the level leave out, changing nothing', async () => {
    const { id, audience } = await audienceOf({ segment: FULL });
    expect(audience).toEqual({
      total: 2, by_affinity: { confirmed: 1, known: 0, engaged: 1 }, left_out: { terms: 1, segment: 3, affinity: 0 },
    });
    const before = await snapshotAllTables(t.tdb);
    await t.service.api('POST', `/api/v1/campaigns/${id}/audience`);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);

    const engaged = await audienceOf({ segment: FULL, min_affinity: 'engaged' });
    expect(engaged.audience).toMatchObject({ total: 1, by_affinity: { engaged: 1 }, left_out: { terms: 1, segment: 3, affinity: 1 } });
    expect((await audienceOf({})).audience).toMatchObject({ total: 5, left_out: { terms: 1, segment: 0 } });
  });

  it('select by each key as documented', async () => {
    const total = async (segment: object) => (await audienceOf({ segment })).audience.total;
    expect(await total({ attributes: { plan: 'pro' } })).toBe(4);
    expect(await total({ attributes: { plan: 'pro', region: 'eu' } })).toBe(3);
    expect(await total({ attributes: { seats: 3 } })).toBe(1);
    expect(await total({ locales: ['de'] })).toBe(2);
    expect(await total({ confirmed_before: '2026-01-10T00:00:00Z' })).toBe(2);
    expect(await total({ confirmed_after: '2026-01-10T00:00:00Z' })).toBe(3);
  });

  it('the send reaches exactly the audience it counted', async () => {
    const { id } = await audienceOf({ segment: FULL });
    const before = t.smtp.received.length;
    expect((await t.service.api('POST', `/api/v1/campaigns/${id}/send`)).status).toBe(202);
    while ((await t.service.campaignWorker.runOnce()) > 0);
    expect(t.smtp.received.slice(before).flatMap((m) => m.envelopeTo).sort()).toEqual(['seg1@example.org', 'seg4@example.org']);
  });

  it('refuses unknown segment keys (422) and ill-typed ones (400), creating nothing', async () => {
    const count = async () => (await t.tdb.query('select count(*)::int as n from campaigns')).rows[0].n;
    const before = await count();
    const unknown = await create({ segment: { attributes: { plan: 'pro' }, plans: ['pro'] } });
    expect(unknown.status).toBe(422);
    expect(await unknown.json()).toMatchObject({ error: { code: 'segment_invalid' } });
    expect((await create({ segment: { locales: 'en' } })).status).toBe(400);
    expect((await create({ segment: { confirmed_before: 'last week' } })).status).toBe(400);
    expect(await count()).toBe(before);
  });
});
