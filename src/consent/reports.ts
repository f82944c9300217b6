// Bounces and complaints, however they came (SMTP, POST /api/v1/inbound, a provider's hook):
// one report in, its effect on consent out. The report is matched to a mail of ours by its
// signed VERP tag, else by the original's Message-ID; nothing a report's text claims about
// addresses is trusted. Each report is kept once (its reportId), in the transaction of its
// effect, so a report arriving twice, or two copies at once, changes things once.
//
// Effects (CONTRACT.md, "Bounces and complaints"):
// - permanent: every open subscription of the person becomes `bounced`, the address is suppressed;
// - temporary: counted; the third within 15 days with no delivery between counts as permanent;
// - complaint: the campaign's or the re-consent mail's list (for a transactional mail: the
//   pending subscriptions the confirmation asked about) becomes `complained`, the address is
//   suppressed for campaigns;
// - delivered: kept, it restarts the soft-bounce count; not_a_report, or no mail of ours: nothing.
// Each ended subscription gets a `bounced` or `complained` consent event whose evidence holds
// the report's status, diagnostic and arrival time; a campaign past its complaint or bounce
// rate pauses itself.
import { pauseWhenRatesPassed } from '../campaigns/auto-pause.js';
import type { Deps } from '../deps.js';
import type { ReportEffect } from '../domain.js';
import { DEFAULT_MAX_REPORT_BYTES, parseReportMessage } from '../inbound/report.js';
import type { InboundReport } from '../inbound/types.js';
import { resolveVerp } from '../inbound/verp.js';
import { verpConfig } from '../mail/envelope.js';
import { addressHash } from './address.js';
import { appendConsentEvent, chainHead } from './ledger.js';
import * as store from './report-store.js';
import { insertSuppression } from './subscriber-store.js';
import { lockSubscriber } from './store.js';

/** Three temporary failures in this window, with no delivery between, count as permanent. */
export const SOFT_BOUNCE_LIMIT = 3;
export const SOFT_BOUNCE_WINDOW_MS = 15 * 24 * 3_600_000;
/** How long the raw report is kept for support. */
export const RAW_REPORT_DAYS = 30;

/** What became of a report: also the `outcome` label of assent_inbound_reports_total. */
export type ReportOutcome = 'applied' | 'counted' | 'duplicate' | 'unmatched' | 'ignored';

export interface HandledReport {
  reportId: string;
  kind: InboundReport['kind'];
  outcome: ReportOutcome;
  effect: ReportEffect | null;
}

type ReportDeps = Pick<Deps, 'db' | 'config' | 'metrics' | 'clock' | 'log'>;

interface Match extends store.SentMail {
  matchedBy: 'verp' | 'message_id';
}

/** The mail of ours the report is about: by signed tag first, else by Message-ID. */
async function findMail(deps: ReportDeps, report: InboundReport): Promise<Match | undefined> {
  const verp = verpConfig(deps.config);
  const claims = verp ? resolveVerp(report.verpCandidates, verp) : undefined;
  if (claims) {
    const mail = claims.kind === 'outbox' ? await store.findSentOutboxMail(deps.db, { id: claims.outboxId })
      : claims.kind === 'campaign' ? await store.findSentCampaignMessage(deps.db, { campaignId: claims.campaignId, subscriberId: claims.subscriberId })
      : await store.findSentReconsentMessage(deps.db, { listId: claims.listId, version: claims.version, subscriberId: claims.subscriberId });
    if (mail) return { ...mail, matchedBy: 'verp' };
  }
  const messageId = report.originalMessageId;
  if (!messageId || messageId.length > 998) return undefined;
  const mail = await store.findSentCampaignMessage(deps.db, { messageId })
    ?? await store.findSentReconsentMessage(deps.db, { messageId })
    ?? await store.findSentOutboxMail(deps.db, { messageId });
  return mail && { ...mail, matchedBy: 'message_id' };
}

/** Which mail it was, for the report's evidence. */
function mailEvidence(mail: store.SentMail) {
  if (mail.campaignId !== null) return { campaign_id: mail.campaignId };
  if (mail.reconsentVersion !== null) return { reconsent: { list_id: mail.listId, version: mail.reconsentVersion } };
  return { outbox_id: mail.outboxId };
}

/**
 * Applies one report. `raw` is the report as it came (the message, or the provider's event),
 * kept 30 days for support when the report matched a mail of ours; it is never logged.
 */
export async function handleReport(deps: ReportDeps, report: InboundReport, raw: Uint8Array | null): Promise<HandledReport> {
  const done = (outcome: ReportOutcome, effect: ReportEffect | null = null): HandledReport => {
    deps.metrics.inboundReports.inc({ kind: report.kind, provider: report.provider, outcome });
    return { reportId: report.reportId, kind: report.kind, outcome, effect };
  };
  if (report.kind === 'not_a_report') return done('ignored');
  // A copy of a report handled before, whichever way it came then (by SMTP with its tag, now
  // over HTTP without): the insert below is what guarantees once, this only answers early.
  if (await store.isReportKnown(deps.db, report.reportId)) return done('duplicate');
  const mail = await findMail(deps, report);
  if (!mail) return done('unmatched');
  const arrivedAt = new Date(deps.clock()).toISOString();
  const result = await deps.db.transaction().execute(async (trx) => {
    // The person's row lock orders every report about them (and any other consent change).
    const subscriber = await lockSubscriber(trx, mail.subscriberId);
    if (!subscriber) return { outcome: 'unmatched' as const };
    const fresh = await store.insertReport(trx, {
      report_id: report.reportId, provider: report.provider, kind: report.kind, subscriber_id: subscriber.id,
      campaign_id: mail.campaignId, outbox_id: mail.outboxId, matched_by: mail.matchedBy,
      reconsent_list_id: mail.reconsentVersion !== null ? mail.listId : null, reconsent_version: mail.reconsentVersion,
      status: report.status, diagnostic: report.diagnostic, raw: raw ? Buffer.from(raw) : null,
    });
    if (!fresh) return { outcome: 'duplicate' as const };
    let effect: ReportEffect = 'none';
    let softBounces: number | undefined;
    let kind = report.kind;
    if (kind === 'temporary') {
      softBounces = await store.countSoftBounces(trx, subscriber.id, SOFT_BOUNCE_WINDOW_MS);
      if (softBounces >= SOFT_BOUNCE_LIMIT) kind = 'permanent';
      else effect = 'counted';
    }
    if (kind === 'permanent' || kind === 'complaint') {
      const ending = kind === 'permanent' ? 'bounced' : 'complained';
      const subscriptions = await store.lockOpenSubscriptions(trx, subscriber.id, kind === 'permanent'
        ? {}
        : mail.listId !== null ? { listId: mail.listId } : { statuses: ['pending'] });
      const evidence = {
        report: {
          id: report.reportId, provider: report.provider, kind: report.kind, status: report.status, diagnostic: report.diagnostic,
          feedback_type: report.feedbackType, reported_at: report.reportedAt?.toISOString() ?? null, arrived_at: arrivedAt,
          ...(softBounces !== undefined && { soft_bounces_in_15_days: softBounces }),
        },
        mail: mailEvidence(mail),
        matched_by: mail.matchedBy,
      };
      // One event per ended subscription, as a withdrawal records one; none ended (all were
      // closed already): one event without a list, so the suppression still has its evidence.
      const lists = subscriptions.length > 0 ? subscriptions : [null];
      for (const subscription of lists) {
        const head = await chainHead(trx, subscriber.id);
        await appendConsentEvent(trx, head, {
          subscriberId: subscriber.id, listId: subscription?.list_id ?? null, kind: ending,
          evidence: { ...evidence, list: subscription && { id: subscription.list_id, slug: subscription.slug, name: subscription.name } },
        });
        if (subscription) await store.markSubscriptionEnded(trx, { subscriberId: subscriber.id, listId: subscription.list_id }, ending, head.now);
      }
      await insertSuppression(trx, addressHash(subscriber.email), ending);
      effect = ending;
    }
    await store.setReportEffect(trx, report.reportId, effect);
    const paused = mail.campaignId !== null && (effect === 'bounced' || effect === 'complained')
      ? await pauseWhenRatesPassed(trx, deps.config.inbound, mail.campaignId)
      : undefined;
    return { outcome: effect === 'counted' ? 'counted' as const : 'applied' as const, effect, paused };
  });
  if (result.outcome === 'applied' || result.outcome === 'counted') {
    if (result.paused) {
      deps.metrics.campaignsAutoPaused.inc({ reason: result.paused.rate });
      deps.log.warn({ campaign_id: mail.campaignId, reason: result.paused.reason }, 'campaign paused itself');
    }
    return done(result.outcome, result.effect);
  }
  return done(result.outcome);
}

/** Clears raw reports older than 30 days (the rows, and what they counted, stay). */
export async function clearOldRawReports(deps: Pick<Deps, 'db'>): Promise<number> {
  return store.clearOldRawReports(deps.db, RAW_REPORT_DAYS);
}

/** A raw message (SMTP listener, POST /api/v1/inbound): read, then applied like any report. */
export async function handleRawReport(deps: ReportDeps, raw: Uint8Array, options: { envelopeRecipients?: string[] } = {}): Promise<HandledReport> {
  const report = await parseReportMessage(raw, { envelopeRecipients: options.envelopeRecipients ?? [] });
  // What the parser reads is what is kept: a report says what it is in its first megabyte.
  return handleReport(deps, report, raw.subarray(0, DEFAULT_MAX_REPORT_BYTES));
}
