// When the terms change (issue 20): a material change of a list's wording keeps everyone who
// has not agreed to it out of campaigns, checked against a real SMTP peer; the list shows how
// many are waiting.
import { describe, expect, it } from 'vitest';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed, snapshot } from './helpers/http.js';
import type { TestService } from './helpers/service.js';

const t = useTestService({ smtp: true, lists: ['terms', 'plain'] });

const MJML = '<mjml><mj-body><mj-section><mj-column><mj-text>Hello from {{ list.name }}</mj-text></mj-column></mj-section></mj-body></mjml>';

async function sendAll(worker: { runOnce(): Promise<number> }): Promise<void> {
  while ((await worker.runOnce()) > 0);
}

/** Starts a campaign on `list`, sends it through the SMTP peer, and says who got it. */
async function campaignReaches(service: TestService, list: string): Promise<string[]> {
  const created = await service.api('POST', '/api/v1/campaigns', { name: 'c', list, subject: 'Hello', mjml: MJML });
  expect(created.status).toBe(201);
  const { id } = await created.json() as { id: string };
  const before = t.smtp.received.length;
  expect((await service.api('POST', `/api/v1/campaigns/${id}/send`)).status).toBe(202);
  await sendAll(service.campaignWorker);
  return t.smtp.received.slice(before).flatMap((mail) => mail.envelopeTo).sort();
}

const emailsOf = async (ids: string[]) =>
  (await t.tdb.query<{ email: string }>('select email from subscribers where id = any($1) order by email', [ids])).rows.map((r) => r.email);

describe('a material change of the terms', () => {
  it('refuses reconsent without a new wording (422) and changes nothing', async () => {
    const before = await snapshot(t.tdb);
    const missing = await t.service.api('PATCH', '/api/v1/lists/plain', { reconsent: true });
    expect(missing.status).toBe(422);
    expect((await missing.json()).error.code).toBe('reconsent_needs_text');
    const same = await t.service.api('PATCH', '/api/v1/lists/plain', { reconsent: true, consent_text: 'Send me plain by mail, about once a week.' });
    expect(same.status).toBe(422);
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('a typo fixed (no reconsent) keeps earlier confirmations counting', async () => {
    const people = await seedConfirmed(t.tdb, 'plain', 3, { prefix: 'typo' });
    const patched = await t.service.api('PATCH', '/api/v1/lists/plain', { consent_text: 'Send me plain by mail, about once a week!' });
    expect(await patched.json()).toMatchObject({ consent_version: 2, reconsent_from: null, awaiting_reconsent: 0 });
    expect(await campaignReaches(t.service, 'plain')).toEqual(await emailsOf(people));
  });

  it('after reconsent: true, campaigns reach only those who agreed to that version or later, and the list counts the rest', async () => {
    const old = await seedConfirmed(t.tdb, 'terms', 4, { prefix: 'old-terms' });
    const patched = await t.service.api('PATCH', '/api/v1/lists/terms', { consent_text: 'Send me terms, and share my address with partners.', reconsent: true });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ consent_version: 2, reconsent_from: 2, awaiting_reconsent: 4 });

    // Two have agreed to version 2, one to a later typo fix of it; one never did.
    await t.tdb.query('update subscriptions set consent_version = 2 where subscriber_id = any($1)', [old.slice(0, 2)]);
    await t.service.api('PATCH', '/api/v1/lists/terms', { consent_text: 'Send me terms, and share my address with partners!' });
    await t.tdb.query('update subscriptions set consent_version = 3 where subscriber_id = $1', [old[2]]);
    const list = await (await t.service.api('GET', '/api/v1/lists/terms')).json();
    expect(list).toMatchObject({ consent_version: 3, reconsent_from: 2, awaiting_reconsent: 1 });
    const all = await (await t.service.api('GET', '/api/v1/lists')).json() as { data: { slug: string; awaiting_reconsent: number }[] };
    expect(all.data.find((l) => l.slug === 'terms')).toMatchObject({ awaiting_reconsent: 1, reconsent_from: 2 });

    expect(await campaignReaches(t.service, 'terms')).toEqual(await emailsOf(old.slice(0, 3)));
  });
});
