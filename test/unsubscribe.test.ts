// One-click unsubscribe (RFC 8058) and the guarantee that no send starts after it answered.
import { describe, expect, it } from 'vitest';
import { verifyChain } from '../src/consent/ledger.js';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed, snapshot } from './helpers/http.js';
import { until } from './helpers/wait.js';

const t = useTestService({ smtp: true, lists: ['news', 'other', 'race', 'warm', 'chunk'] });

const MJML = '<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>';

function unsubscribePath(subscriberId: string, list = 'news'): Promise<string> {
  return t.tdb.query('select id from lists where slug = $1', [list]).then(({ rows }) =>
    new URL(`${t.service.deps.config.publicUrl}/u/${t.service.deps.signer.signUnsubscribe({ subscriberId, listId: rows[0].id })}`).pathname);
}

const oneClick = (path: string, headers: Record<string, string> = {}) => t.service.app.request(path, {
  method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: 'List-Unsubscribe=One-Click',
});

const statusOf = async (id: string, list = 'news') => (await t.tdb.query(
  'select status from subscriptions where subscriber_id = $1 and list_id = (select id from lists where slug = $2)', [id, list])).rows[0].status;

describe('one-click unsubscribe', () => {
  it('POST with List-Unsubscribe=One-Click: 200, no redirect, no cookie, unsubscribed at once, withdrawal recorded', async () => {
    const [id] = await seedConfirmed(t.tdb, 'news', 1, { prefix: 'oneclick' });
    const path = await unsubscribePath(id!);
    const response = await oneClick(path, { 'user-agent': 'Gmail one-click' });
    expect(response.status).toBe(200);
    expect(response.headers.get('location')).toBeNull();
    expect(response.headers.get('set-cookie')).toBeNull();
    expect(await response.text()).toContain('You are unsubscribed');
    expect(await statusOf(id!)).toBe('unsubscribed');
    const { rows } = await t.tdb.query(`select e.kind, v.evidence from consent_events e join consent_evidence v on v.event_id = e.id where e.subscriber_id = $1`, [id]);
    expect(rows).toEqual([{ kind: 'withdrawn', evidence: expect.objectContaining({ method: 'one-click', user_agent: 'Gmail one-click', token_sha256: expect.any(String) }) }]);
    expect((await verifyChain(t.tdb.db, id!)).verified).toBe(true);
    // a second POST changes nothing and still answers 200
    const before = await snapshot(t.tdb);
    expect((await oneClick(path)).status).toBe(200);
    expect(await snapshot(t.tdb)).toEqual(before);
    // the other list is untouched
  });

  it('takes multipart too, and leaves the person\'s other lists alone', async () => {
    const [id] = await seedConfirmed(t.tdb, 'news', 1, { prefix: 'multipart' });
    await t.tdb.query(`insert into subscriptions (subscriber_id, list_id, status) select $1, id, 'confirmed' from lists where slug = 'other'`, [id]);
    const body = new FormData();
    body.set('List-Unsubscribe', 'One-Click');
    expect((await t.service.app.request(await unsubscribePath(id!), { method: 'POST', body })).status).toBe(200);
    expect(await statusOf(id!)).toBe('unsubscribed');
    expect(await statusOf(id!, 'other')).toBe('confirmed');
  });

  it('GET changes nothing: a page with one button that POSTs, and the way to the preferences page through "Lost your mail?"', async () => {
    const [id] = await seedConfirmed(t.tdb, 'news', 1, { prefix: 'scanner' });
    const before = await snapshot(t.tdb);
    const response = await t.service.app.request(await unsubscribePath(id!), { headers: { 'accept-language': 'de' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    const html = await response.text();
    expect(html).toContain('<form method="post" action="">');
    expect(html).toContain('<input type="hidden" name="List-Unsubscribe" value="One-Click">');
    expect(html).toContain('<a href="/manage?locale=en">Lost your mail? Get a new link to your preferences</a>'); // the person's language
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('mints no preferences link: not in the one-click answer, nor on any page of the link before or after unsubscribing', async () => {
    const [id] = await seedConfirmed(t.tdb, 'news', 1, { prefix: 'forwarded' });
    const path = await unsubscribePath(id!);
    const pages = [
      await t.service.app.request(path),
      await t.service.app.request(path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' }),
      await oneClick(path, { 'user-agent': 'Mailbox provider' }),
      await oneClick(path),
      await t.service.app.request(path),
    ];
    expect(pages.map((page) => page.status)).toEqual([200, 400, 200, 200, 200]);
    expect(await statusOf(id!)).toBe('unsubscribed');
    for (const page of pages) {
      const html = await page.text();
      expect(html).not.toContain('/preferences/');
      expect(html).toContain('href="/manage?locale=en"');
    }
  });

  it('a POST without the one-click body changes nothing', async () => {
    const [id] = await seedConfirmed(t.tdb, 'news', 1, { prefix: 'nobody' });
    const path = await unsubscribePath(id!);
    const before = await snapshot(t.tdb);
    for (const body of ['', 'List-Unsubscribe=Yes', 'unsubscribe=One-Click']) {
      const response = await t.service.app.request(path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
      expect(response.status).toBe(400);
      expect(await response.text()).toContain('name="List-Unsubscribe" value="One-Click"');
    }
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('forged, truncated and foreign tokens get a 400 page, never a 5xx, and change nothing', async () => {
    const [id] = await seedConfirmed(t.tdb, 'news', 1, { prefix: 'forged' });
    const path = await unsubscribePath(id!);
    const token = path.slice('/u/'.length);
    const confirmToken = t.service.deps.signer.signConfirm({ subscriberId: id!, listId: '1', issuedAt: 0, expiresAt: Date.now() * 2 });
    const before = await snapshot(t.tdb);
    for (const bad of [token.slice(0, -1), `${token.slice(0, 10)}x${token.slice(11)}`, confirmToken, 'x', '%E0%A4%A', '...', `${token}.${token}`]) {
      const response = await oneClick(`/u/${bad}`);
      expect(response.status, bad).toBe(400);
      expect(await response.text()).toContain('This link is not valid');
    }
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('never sends to anyone after their unsubscribe was answered, while a campaign is sending through a slow relay', async () => {
    const ids = await seedConfirmed(t.tdb, 'race', 80, { prefix: 'race' });
    const create = await t.service.api('POST', '/api/v1/campaigns', { name: 'race', list: 'race', subject: 'Race', mjml: MJML });
    const { id: campaign } = await create.json();
    t.smtp.delayMs = 15;
    const before = t.smtp.received.length;
    expect((await t.service.api('POST', `/api/v1/campaigns/${campaign}/send`)).status).toBe(202);
    t.service.campaignWorker.start();
    const leaving = ids.filter((_, i) => i % 4 === 1);
    const answeredAt = new Map<string, number>();
    await Promise.all(leaving.map(async (subscriber, i) => {
      await new Promise((resolve) => setTimeout(resolve, i * 12));
      const response = await oneClick(await unsubscribePath(subscriber, 'race'));
      expect(response.status).toBe(200);
      answeredAt.set(subscriber, Date.now());
    }));
    const deadline = Date.now() + 30_000;
    while ((await t.tdb.query('select status from campaigns where id = $1', [campaign])).rows[0].status !== 'sent') {
      if (Date.now() > deadline) throw new Error('campaign did not finish');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await t.service.campaignWorker.stop();
    t.smtp.delayMs = 0;

    const { rows: people } = await t.tdb.query('select id, email from subscribers where id = any($1)', [leaving]);
    const mails = t.smtp.received.slice(before);
    let skipped = 0;
    for (const { id, email } of people) {
      const toThem = mails.filter((mail) => mail.envelopeTo[0] === email);
      expect(toThem.length).toBeLessThanOrEqual(1);
      for (const mail of toThem) expect(mail.rcptAt, email).toBeLessThanOrEqual(answeredAt.get(id)!);
      if (toThem.length === 0) skipped += 1;
    }
    const { rows } = await t.tdb.query(`select status, count(*)::int as n from campaign_messages where campaign_id = $1 group by status`, [campaign]);
    const counts = Object.fromEntries(rows.map((row) => [row.status, row.n]));
    expect(counts.sent + (counts.skipped ?? 0)).toBe(80);
    expect(counts.skipped ?? 0).toBe(skipped);
    // the race was real: some left before their turn, and everyone else got exactly one mail
    expect(skipped).toBeGreaterThan(0);
    expect(mails.length).toBe(80 - skipped);
  });

  it('waits for a transaction of several sends that holds the person, and no mail reaches them after it answered', async () => {
    const sent = async (id: string) => (await t.tdb.query('select status from campaigns where id = $1', [id])).rows[0].status === 'sent';
    // A fast relay first, so that the worker's next transaction covers several sends.
    await seedConfirmed(t.tdb, 'warm', 20, { prefix: 'warm' });
    const warm = await (await t.service.api('POST', '/api/v1/campaigns', { name: 'warm', list: 'warm', subject: 'Warm', mjml: MJML })).json();
    await t.service.api('POST', `/api/v1/campaigns/${warm.id}/send`);
    t.service.campaignWorker.start();
    await until('the first campaign to be sent', () => sent(warm.id), 10_000);

    const ids = await seedConfirmed(t.tdb, 'chunk', 3, { prefix: 'chunk' });
    const { id: campaign } = await (await t.service.api('POST', '/api/v1/campaigns', { name: 'chunk', list: 'chunk', subject: 'Chunk', mjml: MJML })).json();
    t.smtp.delayMs = 150;
    const before = t.smtp.received.length;
    await t.service.api('POST', `/api/v1/campaigns/${campaign}/send`);
    await until('the first of the three sends to be under way', async () => t.smtp.received.length > before, 10_000);
    const answeredAt = new Map<string, number>();
    await Promise.all(ids.map(async (id) => {
      expect((await oneClick(await unsubscribePath(id, 'chunk'))).status).toBe(200);
      answeredAt.set(id, Date.now());
    }));
    await until('the second campaign to be sent', () => sent(campaign), 10_000);
    await t.service.campaignWorker.stop();
    t.smtp.delayMs = 0;

    const { rows: people } = await t.tdb.query('select id, email from subscribers where id = any($1)', [ids]);
    const mails = t.smtp.received.slice(before);
    // The three were locked together before the first send: all three got their mail, each
    // before their unsubscribe answered, because the answers waited for the transaction.
    expect(mails).toHaveLength(3);
    for (const { id, email } of people) {
      const toThem = mails.filter((mail) => mail.envelopeTo[0] === email);
      expect(toThem).toHaveLength(1);
      expect(toThem[0]!.rcptAt).toBeLessThanOrEqual(answeredAt.get(id)!);
      expect(await statusOf(id, 'chunk')).toBe('unsubscribed');
    }
  });
});
