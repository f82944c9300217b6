// A campaign to a list of a million: how long `POST /campaigns/{id}/send` takes to fix the
// audience (one INSERT … SELECT in PostgreSQL), what it costs the serving process in memory
// (nothing the audience's size should show), how long a status read with its counts takes
// then, and the sender's memory and pace while it works through a million queued messages.
import type pg from 'pg';
import { benchSegmentedAudience, type SegmentedAudienceResult } from './audience-terms.js';
import { currentRss, peakRss, resetPeakRss } from './lib.js';
import { NEWSLETTER } from './newsletter.js';
import { seedConfirmed } from './seed.js';
import { listId, sentSpan } from './send.js';
import { type AssentEnv, startAssent, WORKER_NODE_OPTIONS } from './service.js';

const SUBSCRIBERS = 1_000_000;
// Long enough for the worker's heap to go through a full collection cycle at least once.
const SENDER_SECONDS = 60;

export interface AudienceResult {
  subscribers: number;
  seedSeconds: number;
  audience: number;
  fixSeconds: number;
  serveRssBefore: number;
  servePeakRss: number;
  statusReadMs: number;
  sender: { mailsPerSecond: number; peakRss: number };
  /** The same list after a material change, with a segment (issue 20). */
  segmented: SegmentedAudienceResult;
}

const seconds = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e9;

export async function benchAudience(env: AssentEnv, admin: pg.Pool): Promise<AudienceResult> {
  const serve = await startAssent('serve', env);
  try {
    await serve.api('POST', '/api/v1/lists', { slug: 'million', name: 'Million', consent_text: 'Send me the news.' });
    const seedStarted = process.hrtime.bigint();
    await seedConfirmed(admin, { listId: await listId(admin, 'million'), prefix: 'm-', count: SUBSCRIBERS, suppressSome: true });
    const seedSeconds = seconds(seedStarted);

    const campaign = await serve.api<{ id: string }>('POST', '/api/v1/campaigns', { name: 'To a million', list: 'million', ...NEWSLETTER });
    const serveRssBefore = currentRss(serve.pid);
    resetPeakRss(serve.pid);
    const fixStarted = process.hrtime.bigint();
    await serve.api('POST', `/api/v1/campaigns/${campaign.id}/send`);
    const fixSeconds = seconds(fixStarted);
    const servePeakRss = peakRss(serve.pid);
    const { rows: [queued] } = await admin.query<{ count: string }>('select count(*) from campaign_messages where campaign_id = $1', [campaign.id]);

    const reads: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const started = process.hrtime.bigint();
      await serve.api('GET', `/api/v1/campaigns/${campaign.id}`);
      reads.push(seconds(started) * 1000);
    }
    reads.sort((a, b) => a - b);
    const segmented = await benchSegmentedAudience(serve, admin, { slug: 'million', id: await listId(admin, 'million') });

    // The sender on a million queued messages: a minute is enough, its memory must not grow with the queue.
    const worker = await startAssent('worker', env, { nodeOptions: WORKER_NODE_OPTIONS });
    let sender: AudienceResult['sender'];
    try {
      await new Promise((resolve) => setTimeout(resolve, SENDER_SECONDS * 1000));
      const span = await sentSpan(admin, campaign.id);
      const spanSeconds = span.first && span.last ? (span.last.getTime() - span.first.getTime()) / 1000 : 0;
      sender = { mailsPerSecond: spanSeconds > 0 ? (span.sent - 1) / spanSeconds : 0, peakRss: peakRss(worker.pid) };
    } finally {
      await worker.stop();
    }
    return {
      subscribers: SUBSCRIBERS, seedSeconds, audience: Number(queued!.count), fixSeconds, serveRssBefore, servePeakRss,
      statusReadMs: reads[2]!, sender, segmented,
    };
  } finally {
    await serve.stop();
  }
}
