// Sends the transactional outbox: claims a batch, hands each mail to the relay, records the
// answer. Temporary failures (no connection, 4xx) come back later with backoff; a 5xx is
// final. A row is never deleted, so nothing accepted is lost. Each round first turns waiting
// "Lost your mail?" requests into mails (consent/preferences.ts), off the request's path.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { resolvePreferencesLinkRequests } from '../consent/preferences.js';
import type { Deps } from '../deps.js';
import { addressTag } from '../log.js';
import { mailTagger } from '../mail/envelope.js';
import type { MailSender } from '../mail/transport.js';
import { eachLimited, judgeSendFailure, LoopingWorker, type QueueWorkerOptions, recordPersistently, WorkerLoop } from './loop.js';
import * as store from './outbox-store.js';

export type OutboxWorkerOptions = QueueWorkerOptions;

export const DEFAULT_OUTBOX_OPTIONS: OutboxWorkerOptions = {
  batchSize: 50,
  concurrency: 5,
  leaseMs: 5 * 60_000,
  pollMs: 1_000,
  retryBaseMs: 10_000,
  retryMaxMs: 30 * 60_000,
  // With the cap above, about three days of retrying: past the confirm link's 7-day life
  // a confirmation would be useless, and a relay down for days needs a person anyway.
  maxAttempts: 160,
};

type WorkerDeps = Pick<Deps, 'db' | 'log' | 'metrics' | 'config' | 'clock' | 'signer' | 'mailTemplates'> & { sender: MailSender };

export class OutboxWorker extends LoopingWorker {
  readonly id = `${hostname()}:${process.pid}:outbox:${randomUUID().slice(0, 8)}`;
  private readonly options: OutboxWorkerOptions;
  protected readonly loop: WorkerLoop;
  private readonly tag: ReturnType<typeof mailTagger>;

  constructor(private readonly deps: WorkerDeps, options: Partial<OutboxWorkerOptions> = {}) {
    super();
    this.tag = mailTagger(deps.config);
    this.options = { ...DEFAULT_OUTBOX_OPTIONS, ...options };
    this.loop = new WorkerLoop(async () => ({ full: (await this.runOnce()) >= this.options.batchSize }),
      { pollMs: this.options.pollMs, name: this.id }, deps.log);
  }

  /**
   * Handles the waiting "Lost your mail?" requests (the mails they queue go out in this same
   * round), then claims and sends one batch; resolves with how many mails it handled.
   */
  async runOnce(): Promise<number> {
    await resolvePreferencesLinkRequests(this.deps, { limit: this.options.batchSize });
    const mails = await store.claimDueMails(this.deps.db, this.id, { limit: this.options.batchSize, leaseMs: this.options.leaseMs });
    const unstarted = await eachLimited(mails, this.options.concurrency, () => this.stopping, (mail) => this.deliver(mail));
    if (unstarted.length > 0) await store.releaseMails(this.deps.db, this.id, unstarted.map((mail) => mail.id));
    return mails.length;
  }

  private async deliver(mail: store.ClaimedMail): Promise<void> {
    const { db, sender, config, metrics, log } = this.deps;
    if (!mail.recipient) {
      await store.markMailFailed(db, this.id, mail.id, 'recipient erased before sending');
      return;
    }
    const stopTimer = metrics.sendLatency.startTimer({ kind: mail.kind });
    let response: string;
    try {
      response = await sender.send({
        from: config.mailFrom, to: mail.recipient, subject: mail.subject ?? '', html: mail.html ?? '', text: mail.text ?? '',
        messageId: mail.message_id, tag: this.tag({ kind: 'outbox', outboxId: mail.id }),
      });
    } catch (error) {
      const failure = judgeSendFailure(error, { kind: mail.kind, attempts: mail.attempts, maxAttempts: this.options.maxAttempts, metrics });
      log.warn({ outbox_id: mail.id, recipient: addressTag(config.tokenSecrets![0]!, mail.recipient), attempts: mail.attempts, final: failure.final, error: failure.message }, 'mail not sent');
      if (failure.final) await store.markMailFailed(db, this.id, mail.id, failure.message);
      else await store.scheduleMailRetry(db, this.id, mail.id, failure.message, { baseMs: this.options.retryBaseMs, maxMs: this.options.retryMaxMs });
      return;
    }
    stopTimer();
    metrics.mailsSent.inc({ kind: mail.kind });
    // The relay has it: never a retry from here on, only the record, kept trying while our claim holds.
    const recorded = await recordPersistently(() => store.markMailSent(db, this.id, mail.id, response), this.options.leaseMs / 2,
      (error) => log.warn({ outbox_id: mail.id, err: error }, 'could not record a sent mail yet; trying again'));
    if (!recorded) log.warn({ outbox_id: mail.id }, 'sent a mail whose claim had passed to another worker');
  }
}
