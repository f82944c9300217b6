// A campaign to 100,000 confirmed subscribers: `assent serve` takes the API calls, `assent
// worker` (its own process, so its memory is its own) sends through the sink. Beside it,
// the ceiling: nodemailer's pool of the same size sending prebuilt messages of the same size.
import path from 'node:path';
import type pg from 'pg';
import { DEFAULT_CAMPAIGN_OPTIONS } from '../src/workers/campaign.js';
import { type Child, cpuPer, peakRss, startChild, waitUntil } from './lib.js';
import { NEWSLETTER } from './newsletter.js';
import { seedConfirmed } from './seed.js';
import { type AssentEnv, startAssent, WORKER_NODE_OPTIONS } from './service.js';

const RECIPIENTS = Number(process.env.BENCH_RECIPIENTS ?? 100_000);
// src/mail/transport.ts smtpSender pools 5 connections, and the campaign worker keeps as
// many sends in flight (DEFAULT_CAMPAIGN_OPTIONS.concurrency): the ceiling gets the same.
const POOL_SIZE = DEFAULT_CAMPAIGN_OPTIONS.concurrency;

export interface SendResult {
  recipients: number;
  poolSize: number;
  sent: number;
  mailsPerSecond: number;
  seconds: number;
  workerPeakRss: number;
  messageBytes: number;
  /** Milliseconds of CPU per mail: the worker, PostgreSQL and the sink. */
  cpuMs: Record<string, number>;
  ceiling: { mailsPerSecond: number; seconds: number; maxRssBytes: number; cpuMs: Record<string, number> };
}

export async function sinkStats(sink: Child, options: { reset: boolean }): Promise<{ count: number; bytes: number }> {
  const answer = sink.message<{ stats?: boolean; count: number; bytes: number }>((m) => m.stats === true);
  sink.process.send({ reset: options.reset });
  return answer;
}

export async function listId(admin: pg.Pool, slug: string): Promise<string> {
  const { rows } = await admin.query<{ id: string }>('select id from lists where slug = $1', [slug]);
  return rows[0]!.id;
}

/** Waits for a campaign to finish; its throughput is taken from the first to the last sent_at. */
export async function sentSpan(admin: pg.Pool, campaignId: string) {
  const { rows: [row] } = await admin.query<{ sent: string; first: Date | null; last: Date | null }>(`
    select count(*) filter (where status = 'sent') as sent, min(sent_at) as first, max(sent_at) as last
    from campaign_messages where campaign_id = $1`, [campaignId]);
  return { sent: Number(row!.sent), first: row!.first, last: row!.last };
}

export async function benchSend(env: AssentEnv, admin: pg.Pool, sink: Child): Promise<SendResult> {
  const serve = await startAssent('serve', env);
  const worker = await startAssent('worker', env, { nodeOptions: WORKER_NODE_OPTIONS });
  let result: Omit<SendResult, 'ceiling'>;
  try {
    await serve.api('POST', '/api/v1/lists', { slug: 'weekly', name: 'Weekly news', consent_text: 'Send me the weekly news.' });
    await seedConfirmed(admin, { listId: await listId(admin, 'weekly'), prefix: 'send-', count: RECIPIENTS, suppressSome: false });
    const campaign = await serve.api<{ id: string }>('POST', '/api/v1/campaigns', { name: 'Weekly', list: 'weekly', ...NEWSLETTER });
    await sinkStats(sink, { reset: true });
    const sent = await cpuPer({ worker: { pid: worker.pid }, postgres: { pid: env.postgresPid, tree: true }, sink: { pid: sink.pid } }, async () => {
      await serve.api('POST', `/api/v1/campaigns/${campaign.id}/send`);
      await waitUntil('the campaign to be sent', async () => {
        const { rows } = await admin.query<{ status: string }>('select status from campaigns where id = $1', [campaign.id]);
        return rows[0]!.status === 'sent';
      }, { timeoutMs: 10 * 60_000, everyMs: 250 });
      return { units: RECIPIENTS };
    });
    const workerPeakRss = peakRss(worker.pid);
    const span = await sentSpan(admin, campaign.id);
    const seconds = (span.last!.getTime() - span.first!.getTime()) / 1000;
    const delivered = await sinkStats(sink, { reset: true });
    result = {
      recipients: RECIPIENTS, poolSize: POOL_SIZE, sent: span.sent, mailsPerSecond: (span.sent - 1) / seconds, seconds,
      workerPeakRss, messageBytes: Math.round(delivered.bytes / Math.max(1, delivered.count)), cpuMs: sent.cpuMs,
    };
  } finally {
    await worker.stop();
    await serve.stop();
  }

  const ceiling = startChild('bench/ceiling-send.ts', [env.smtpUrl, String(RECIPIENTS), String(result.messageBytes), String(POOL_SIZE)], {
    log: path.join(env.dataDir, 'ceiling.log'),
  });
  type CeilingAnswer = Omit<SendResult['ceiling'], 'cpuMs'> & { cpuSeconds: number };
  const answer = await cpuPer({ sink: { pid: sink.pid } }, async () => {
    const reply = await ceiling.message<CeilingAnswer>((m) => typeof m.mailsPerSecond === 'number', 10 * 60_000);
    return { ...reply, units: RECIPIENTS };
  });
  await ceiling.stop();
  const { mailsPerSecond, seconds, maxRssBytes, cpuSeconds, cpuMs } = answer;
  return { ...result, ceiling: { mailsPerSecond, seconds, maxRssBytes, cpuMs: { sender: (1000 * cpuSeconds) / RECIPIENTS, ...cpuMs } } };
}
