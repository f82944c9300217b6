// Sends the re-consent mails (issue 20): claims a batch of queued ones, reads each person's
// subscription as it is now, renders the mail in their language with the wording they agreed
// to beside the new one, and hands it to SMTP. Paced by SEND_RATE together with the campaign
// senders (one token bucket), shared by any number of workers through PostgreSQL, and
// resumable: a claim runs out if its worker dies, and another takes the row over. A worker
// killed between the relay's answer and the record may send one mail twice, as a campaign's.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Deps } from '../deps.js';
import { DEFAULT_LOCALE, matchLocale } from '../i18n.js';
import { reconsentUrl } from '../links/urls.js';
import { mailTagger } from '../mail/envelope.js';
import { type MailSender, messageId } from '../mail/transport.js';
import { DEFAULT_CAMPAIGN_OPTIONS } from './campaign.js';
import { eachLimited, judgeSendFailure, LoopingWorker, type QueueWorkerOptions, WorkerLoop } from './loop.js';
import { takeSendTokens } from './message-store.js';
import * as store from './reconsent-message-store.js';

// The campaign mails' timing: both queues share the relay and SEND_RATE's bucket.
const { batchSize, concurrency, leaseMs, pollMs, retryBaseMs, retryMaxMs, maxAttempts } = DEFAULT_CAMPAIGN_OPTIONS;
export const DEFAULT_RECONSENT_OPTIONS: QueueWorkerOptions = { batchSize, concurrency, leaseMs, pollMs, retryBaseMs, retryMaxMs, maxAttempts };

type WorkerDeps = Pick<Deps, 'db' | 'log' | 'metrics' | 'config' | 'signer' | 'clock' | 'mailTemplates'> & { sender: MailSender };

export class ReconsentWorker extends LoopingWorker {
  readonly id = `${hostname()}:${process.pid}:reconsent:${randomUUID().slice(0, 8)}`;
  private readonly options: QueueWorkerOptions;
  protected readonly loop: WorkerLoop;
  private readonly tag: ReturnType<typeof mailTagger>;

  constructor(private readonly deps: WorkerDeps, options: Partial<QueueWorkerOptions> = {}) {
    super();
    this.tag = mailTagger(deps.config);
    this.options = { ...DEFAULT_RECONSENT_OPTIONS, ...options };
    this.loop = new WorkerLoop(() => this.round(), { pollMs: this.options.pollMs, name: this.id }, deps.log);
  }

  /** Claims and sends one batch, unpaced (tests); resolves with how many it handled. */
  async runOnce(): Promise<number> {
    return this.sendBatch(this.options.batchSize);
  }

  private async round() {
    const rate = this.deps.config.sendRate;
    let allowed = this.options.batchSize;
    if (rate > 0) {
      allowed = await takeSendTokens(this.deps.db, rate, this.options.batchSize);
      if (allowed === 0) return { full: false, waitMs: Math.max(20, Math.ceil(1000 / rate)) };
    }
    const handled = await this.sendBatch(allowed);
    return { full: handled > 0 && handled >= allowed };
  }

  private async sendBatch(limit: number): Promise<number> {
    const { db } = this.deps;
    const claimed = await store.claimDueReconsents(db, this.id, { limit, leaseMs: this.options.leaseMs });
    if (claimed.length === 0) return 0;
    const data = await store.findReconsentMailData(db, claimed);
    const backoff = { baseMs: this.options.retryBaseMs, maxMs: this.options.retryMaxMs };
    const unstarted = await eachLimited(claimed, this.options.concurrency, () => this.stopping, async (message) => {
      const outcome = await this.deliver(message, data.get(store.reconsentKey(message)));
      await store.recordReconsentOutcome(db, this.id, message, outcome, backoff);
    });
    for (const message of unstarted) await store.recordReconsentOutcome(db, this.id, message, { kind: 'released' }, backoff);
    return claimed.length;
  }

  private async deliver(message: store.ClaimedReconsent, mail: store.ReconsentMailData | undefined): Promise<store.ReconsentOutcome> {
    if (!mail || mail.email === null) return { kind: 'skipped', reason: 'subscriber erased' };
    if (mail.status !== 'confirmed') return { kind: 'skipped', reason: `subscription ${mail.status}` };
    if ((mail.consent_version ?? 0) >= message.version) return { kind: 'skipped', reason: 'already agreed' };
    if (message.attempts > this.options.maxAttempts) return { kind: 'failed', error: `no outcome in ${this.options.maxAttempts} attempts` };
    const { config, sender, metrics, mailTemplates } = this.deps;
    const rendered = mailTemplates.renderReconsent({
      locale: matchLocale(mail.locale) ?? DEFAULT_LOCALE,
      email: mail.email,
      listName: mail.list_name,
      oldText: mail.old_text,
      newText: mail.new_text,
      url: reconsentUrl(this.deps, { subscriberId: mail.subscriber_id, listId: mail.list_id, version: message.version }),
    });
    const id = messageId(config.mailFrom);
    try {
      const tag = this.tagFor(message);
      const response = await sender.send({ ...rendered, from: config.mailFrom, to: mail.email, messageId: id, tag });
      metrics.mailsSent.inc({ kind: 'reconsent' });
      return { kind: 'sent', messageId: id, response };
    } catch (error) {
      const failure = judgeSendFailure(error, { kind: 'reconsent', attempts: message.attempts, maxAttempts: this.options.maxAttempts, metrics });
      return { kind: failure.final ? 'failed' : 'retry', error: failure.message };
    }
  }

  /**
   * Its bounces and complaints name this row (VERP), as a campaign mail's name its row. A key
   * past the tag's bounds (a list id from 2^35, inbound/verp.ts) goes untagged, matched by its
   * Message-ID, rather than failing 50 retries for want of a tag.
   */
  private tagFor(message: store.ClaimedReconsent) {
    try {
      return this.tag({ kind: 'reconsent', listId: message.list_id, version: message.version, subscriberId: message.subscriber_id });
    } catch (error) {
      if (error instanceof RangeError) return undefined;
      throw error;
    }
  }
}
