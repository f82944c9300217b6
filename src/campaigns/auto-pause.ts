// A campaign that draws complaints or permanent bounces past a share of what it delivered
// pauses itself, with its reason (CONTRACT.md: after 1,000 delivered, complaints above
// COMPLAINT_PAUSE_RATE, 0.3%, or permanent bounces above BOUNCE_PAUSE_RATE, 5%). Mailbox
// providers start filtering a sender near 0.3% complaints (Gmail's and Yahoo's 2024 sender
// rules); a person decides whether to resume.
import type { Config } from '../config.js';
import type { Trx } from '../db/database.js';
import * as store from './store.js';

/** Fewer delivered than this and a few reports would be a large share by chance. */
export const PAUSE_AFTER_DELIVERED = 1_000;

export interface AutoPause {
  rate: 'complaints' | 'bounces';
  reason: string;
}

const percent = (share: number) => `${(share * 100).toFixed(2).replace(/\.?0+$/, '')}%`;

/** Pauses the campaign (if sending) when a rate is passed; says why, or undefined. */
export async function pauseWhenRatesPassed(
  trx: Trx, limits: Pick<Config['inbound'], 'complaintPauseRate' | 'bouncePauseRate'>, campaignId: string,
): Promise<AutoPause | undefined> {
  const delivered = await store.countSentMessages(trx, campaignId);
  if (delivered < PAUSE_AFTER_DELIVERED) return undefined;
  const counts = (await store.countCampaignReports(trx, [campaignId])).get(campaignId) ?? { bounced: 0, complained: 0 };
  const pause = counts.complained / delivered > limits.complaintPauseRate
    ? { rate: 'complaints' as const, reason: `complaints passed ${percent(limits.complaintPauseRate)}: ${counts.complained} of ${delivered} delivered` }
    : counts.bounced / delivered > limits.bouncePauseRate
      ? { rate: 'bounces' as const, reason: `permanent bounces passed ${percent(limits.bouncePauseRate)}: ${counts.bounced} of ${delivered} delivered` }
      : undefined;
  if (!pause) return undefined;
  return (await store.pauseCampaignWithReason(trx, campaignId, pause.reason)) ? pause : undefined;
}
