// Scheduled campaigns (issue 20): send_at makes a campaign `scheduled`; it starts by itself at
// that time, started by whichever worker claims it first and by exactly one, with its audience
// fixed then; cancel works until it starts. Checked against a real SMTP peer, two workers on.
import { describe, expect, it } from 'vitest';
import { smtpSender } from '../src/mail/transport.js';
import { CampaignWorker } from '../src/workers/campaign.js';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed } from './helpers/http.js';

const t = useTestService({ smtp: true, lists: ['sched'] });

const MJML = '<mjml><mj-body><mj-section><mj-column><mj-text>Hello from {{ list.name }}</mj-text></mj-column></mj-section></mj-body></mjml>';
const HOUR = 3600_000;
const at = (ms: number) => new Date(t.service.clock.now + ms).toISOString();

const create = (extra: Record<string, unknown>) =>
  t.service.api('POST', '/api/v1/campaigns', { name: 'later', list: 'sched', subject: 'Hello', mjml: MJML, ...extra });
const campaignCount = async () => (await t.tdb.query<{ n: number }>('select count(*)::int as n from campaigns')).rows[0]!.n;

describe('scheduled campaigns', () => {
  it('refuses send_at in the past or more than a year ahead (422), and a malformed one (400), creating nothing', async () => {
    const before = await campaignCount();
    for (const sendAt of [at(-60_000), at(0), at(366 * 24 * HOUR)]) {
      const response = await create({ send_at: sendAt });
      expect(response.status, sendAt).toBe(422);
      expect((await response.json()).error.code).toBe('send_at_out_of_range');
    }
    expect((await create({ send_at: 'tomorrow at noon' })).status).toBe(400);
    expect(await campaignCount()).toBe(before);
  });

  it('starts at its time, by exactly one of two workers, with the audience of that moment, and is sent once', async () => {
    const early = await seedConfirmed(t.tdb, 'sched', 4, { prefix: 'early' });
    const created = await create({ send_at: at(HOUR) });
    expect(created.status).toBe(201);
    const campaign = await created.json();
    expect(campaign).toMatchObject({ status: 'scheduled', send_at: at(HOUR), sending_at: null });
    const late = await seedConfirmed(t.tdb, 'sched', 1, { prefix: 'late' });
    expect((await t.service.api('POST', `/api/v1/campaigns/${campaign.id}/send`)).status).toBe(409);

    const sender = smtpSender(t.smtp.url, { maxConnections: 2 });
    const other = new CampaignWorker({ ...t.service.deps, sender }, { retryBaseMs: 0 });
    const workers = [t.service.campaignWorker, other];
    try {
      const startBoth = async () => (await Promise.all(workers.map((w) => w.startDue()))).flat();
      t.service.clock.advance(HOUR - 1000);
      expect(await startBoth()).toEqual([]);
      expect(await t.tdb.query('select count(*)::int as n from campaign_messages')).toMatchObject({ rows: [{ n: 0 }] });

      t.service.clock.advance(1000);
      expect(await startBoth()).toEqual([campaign.id]);
      expect(await startBoth()).toEqual([]);

      const before = t.smtp.received.length;
      while ((await Promise.all(workers.map((w) => w.runOnce()))).some((n) => n > 0));
      const emails = (await t.tdb.query<{ email: string }>('select email from subscribers where id = any($1)', [[...early, ...late]])).rows.map((r) => r.email);
      expect(t.smtp.received.slice(before).flatMap((m) => m.envelopeTo).sort()).toEqual(emails.sort());
    } finally {
      sender.close();
    }
    const sent = await (await t.service.api('GET', `/api/v1/campaigns/${campaign.id}`)).json();
    expect(sent).toMatchObject({ status: 'sent', counts: { sent: 5 } });

    // Started, it can no longer be cancelled as a scheduled campaign.
    const cancel = await t.service.api('POST', `/api/v1/campaigns/${campaign.id}/cancel`);
    expect(cancel.status).toBe(409);
    expect((await cancel.json()).error.code).toBe('campaign_state');
  });

  it('can be cancelled until it starts, and then never starts', async () => {
    const campaign = await (await create({ send_at: at(HOUR) })).json();
    const cancelled = await t.service.api('POST', `/api/v1/campaigns/${campaign.id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(await cancelled.json()).toMatchObject({ status: 'cancelled' });
    t.service.clock.advance(2 * HOUR);
    expect(await t.service.campaignWorker.startDue()).toEqual([]);
    expect((await (await t.service.api('GET', `/api/v1/campaigns/${campaign.id}`)).json()).status).toBe('cancelled');
  });

  it('cancel once a scheduled campaign is under way is a 409 and changes nothing', async () => {
    const campaign = await (await create({ send_at: at(HOUR) })).json();
    t.service.clock.advance(HOUR);
    expect(await t.service.campaignWorker.startDue()).toEqual([campaign.id]);
    const before = await t.tdb.query('select status from campaigns where id = $1', [campaign.id]);
    expect((await t.service.api('POST', `/api/v1/campaigns/${campaign.id}/cancel`)).status).toBe(409);
    expect((await t.tdb.query('select status from campaigns where id = $1', [campaign.id])).rows).toEqual(before.rows);
    while ((await t.service.campaignWorker.runOnce()) > 0);
  });
});
