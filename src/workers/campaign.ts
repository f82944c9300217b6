// Sends campaigns: claims a batch of queued messages, renders each from the campaign's
// compiled templates and the recipient's affinity-bounded context, and hands it to pooled
// SMTP. Any number of these, in any number of processes, share the work through PostgreSQL.
//
// The unsubscribe guarantee: each send happens inside a transaction that holds the
// recipient's subscription row FOR SHARE and checks it is still confirmed. An unsubscribe
// must update that row, so it waits for a send already under way, and commits (and answers)
// only afterwards; every send that starts later sees the withdrawal and skips.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { personalise } from '../campaigns/context.js';
import { listHeaders, recipientLinks, sharedContext } from '../campaigns/message.js';
import { findCampaignTemplates, findRecipients, finishCampaignIfDone, type RecipientRow } from '../campaigns/store.js';
import { type ParsedCampaign, parseCampaign, renderCampaignMail } from '../campaigns/templates.js';
import type { Deps } from '../deps.js';
import type { Database, Trx } from '../db/database.js';
import { type MailSender, messageId, SendError } from '../mail/transport.js';
import * as store from './campaign-store.js';
import { eachLimited, LoopingWorker, type QueueWorkerOptions, recordPersistently, WorkerLoop } from './loop.js';

export type CampaignWorkerOptions = QueueWorkerOptions;

export const DEFAULT_CAMPAIGN_OPTIONS: CampaignWorkerOptions = {
  batchSize: 100,
  concurrency: 5,
  leaseMs: 5 * 60_000,
  pollMs: 1_000,
  retryBaseMs: 30_000,
  retryMaxMs: 30 * 60_000,
  maxAttempts: 50,
};

type WorkerDeps = Pick<Deps, 'db' | 'log' | 'metrics' | 'config' | 'signer' | 'catalogues' | 'clock'> & { sender: MailSender };

interface CampaignData {
  id: string;
  listId: string;
  list: { slug: string; name: string };
  parsed: ParsedCampaign;
}

export class CampaignWorker extends LoopingWorker {
  readonly id = `${hostname()}:${process.pid}:campaigns:${randomUUID().slice(0, 8)}`;
  private readonly options: CampaignWorkerOptions;
  protected readonly loop: WorkerLoop;
  /** Parsed templates per campaign: parsed once per worker, not per recipient. */
  private readonly campaigns = new Map<string, CampaignData>();

  constructor(private readonly deps: WorkerDeps, options: Partial<CampaignWorkerOptions> = {}) {
    super();
    this.options = { ...DEFAULT_CAMPAIGN_OPTIONS, ...options };
    this.loop = new WorkerLoop(() => this.round(), { pollMs: this.options.pollMs, name: this.id }, deps.log);
  }

  /** Claims and sends one batch; resolves with how many messages it handled. */
  async runOnce(): Promise<number> {
    return (await this.sendBatch(this.options.batchSize)).handled;
  }

  private async round() {
    const rate = this.deps.config.sendRate;
    let allowed = this.options.batchSize;
    if (rate > 0) {
      allowed = await store.takeSendTokens(this.deps.db, rate, this.options.batchSize);
      if (allowed === 0) return { full: false, waitMs: Math.max(20, Math.ceil(1000 / rate)) };
    }
    const { handled } = await this.sendBatch(allowed);
    return { full: handled > 0 && handled >= allowed };
  }

  private async sendBatch(limit: number): Promise<{ handled: number }> {
    const { db } = this.deps;
    const messages = await store.claimDueMessages(db, this.id, { limit, leaseMs: this.options.leaseMs });
    if (messages.length === 0) return { handled: 0 };
    const recipients = new Map((await findRecipients(db, messages.map((m) => m.subscriber_id))).map((r) => [r.id, r]));
    const campaignIds = [...new Set(messages.map((m) => m.campaign_id))];
    for (const id of campaignIds) await this.campaign(id);
    const unstarted = await eachLimited(messages, this.options.concurrency, () => this.stopping,
      (message) => this.deliver(message, recipients.get(message.subscriber_id)));
    if (unstarted.length > 0) await store.releaseMessages(db, this.id, unstarted);
    for (const id of campaignIds) await finishCampaignIfDone(db, id);
    return { handled: messages.length };
  }

  private async campaign(id: string): Promise<CampaignData> {
    const cached = this.campaigns.get(id);
    if (cached) return cached;
    const row = await findCampaignTemplates(this.deps.db, id);
    if (!row) throw new Error(`campaign ${id} vanished`);
    const data = { id, listId: row.list_id, list: { slug: row.list_slug, name: row.list_name }, parsed: parseCampaign(row) };
    this.campaigns.set(id, data);
    return data;
  }

  private async deliver(message: store.ClaimedMessage, recipient: RecipientRow | undefined): Promise<void> {
    const { db, sender, config, metrics, log } = this.deps;
    const owned = { campaignId: message.campaign_id, subscriberId: message.subscriber_id, workerId: this.id };
    if (!recipient?.email) {
      await store.markMessageSkipped(db, owned, 'subscriber erased');
      return;
    }
    const campaign = this.campaigns.get(message.campaign_id)!;
    const links = recipientLinks(this.deps, recipient.id, campaign.listId);
    const personal = personalise(
      { ...recipient, email: recipient.email, affinity: recipient.affinity ?? 'confirmed' },
      sharedContext(this.deps, recipient, campaign.list, links),
    );
    const mail = await renderCampaignMail(campaign.parsed, personal.context);
    const id = messageId(config.mailFrom);

    // Set once the relay has taken the mail: from then on it is never retried, only recorded.
    let sent: { messageId: string; response: string } | undefined;
    const recordSent = async (trx: Trx | Database) => {
      if (!(await store.markMessageSent(trx, owned, sent!))) {
        log.warn({ campaign_id: message.campaign_id }, 'sent a message whose claim had passed to another worker');
      }
    };
    await db.transaction().execute(async (trx) => {
      const gate = await store.lockForSending(trx, { ...owned, listId: campaign.listId });
      if (!gate || gate.campaign_status !== 'sending') {
        await store.releaseMessage(trx, owned);
        return;
      }
      if (gate.subscription_status !== 'confirmed' || gate.erased) {
        await store.markMessageSkipped(trx, owned, gate.erased ? 'subscriber erased' : `subscription ${gate.subscription_status}`);
        return;
      }
      const stopTimer = metrics.sendLatency.startTimer({ kind: 'campaign' });
      try {
        const response = await sender.send({
          from: config.mailFrom, to: recipient.email!, subject: mail.subject, html: mail.html, text: mail.text,
          messageId: id, ...listHeaders(config, campaign.list, links),
        });
        sent = { messageId: id, response };
      } catch (error) {
        const failure = error instanceof SendError ? error : new SendError(String(error), false);
        metrics.mailsFailed.inc({ kind: 'campaign', permanent: String(failure.permanent) });
        if (failure.permanent || message.attempts >= this.options.maxAttempts) await store.markMessageFailed(trx, owned, failure.message);
        else await store.scheduleMessageRetry(trx, owned, failure.message, { baseMs: this.options.retryBaseMs, maxMs: this.options.retryMaxMs });
        return;
      }
      stopTimer();
      metrics.mailsSent.inc({ kind: 'campaign' });
      await recordSent(trx);
    }).catch(async (error: unknown) => {
      if (!sent) throw error;
      // The relay took the mail but the transaction recording it failed (its connection died,
      // say): record it on its own, kept trying while our claim holds, or it would go again.
      await recordPersistently(() => recordSent(db), this.options.leaseMs / 2,
        (retryError) => log.warn({ campaign_id: message.campaign_id, err: retryError }, 'could not record a sent message yet; trying again'));
    });
  }
}
