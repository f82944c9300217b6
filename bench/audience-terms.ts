// The audience with a segment and the terms rule (issue 20), on the million the plain audience
// was fixed for: after a material change half have agreed again, a quarter hold the segment's
// attribute. How long POST …/audience counts it, and how long POST …/send fixes it, beside
// the plain fix (the bound: within 1.5× of it).
import type pg from 'pg';
import { NEWSLETTER } from './newsletter.js';
import type { startAssent } from './service.js';

export interface SegmentedAudienceResult {
  audience: number;
  countMs: number;
  fixSeconds: number;
}

const seconds = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e9;

export async function benchSegmentedAudience(
  serve: Awaited<ReturnType<typeof startAssent>>, admin: pg.Pool, list: { slug: string; id: string },
): Promise<SegmentedAudienceResult> {
  await serve.api('PATCH', `/api/v1/lists/${list.slug}`, { consent_text: 'Send me the news, and share my address with partners.', reconsent: true });
  // Spread by the random ids, as agreement and attributes would be: no order to exploit.
  await admin.query(`update subscriptions set consent_version = 2 where list_id = $1 and subscriber_id::text < '8'`, [list.id]);
  await admin.query(`update subscribers set attributes = '{"plan":"pro"}' where id::text < '4'`);
  for (const table of ['subscribers', 'subscriptions']) await admin.query(`vacuum analyze ${table}`);

  const segment = { attributes: { plan: 'pro' }, locales: ['en'] };
  const campaign = await serve.api<{ id: string }>('POST', '/api/v1/campaigns', { name: 'Segmented', list: list.slug, ...NEWSLETTER, segment });
  const counts: number[] = [];
  for (let i = 0; i < 3; i += 1) {
    const started = process.hrtime.bigint();
    await serve.api('POST', `/api/v1/campaigns/${campaign.id}/audience`);
    counts.push(seconds(started) * 1000);
  }
  counts.sort((a, b) => a - b);
  const fixStarted = process.hrtime.bigint();
  await serve.api('POST', `/api/v1/campaigns/${campaign.id}/send`);
  const fixSeconds = seconds(fixStarted);
  const { rows: [queued] } = await admin.query<{ count: string }>('select count(*) from campaign_messages where campaign_id = $1', [campaign.id]);
  // Not sent: the sender's minute that follows measures the plain campaign alone.
  await serve.api('POST', `/api/v1/campaigns/${campaign.id}/cancel`);
  return { audience: Number(queued!.count), countMs: counts[1]!, fixSeconds };
}
