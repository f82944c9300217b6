// Sends campaigns: claims a batch of queued messages, renders each from the campaign's
// compiled templates and the recipient's affinity-bounded context, and hands it to pooled
// SMTP. Any number of these, in any number of processes, share the work through PostgreSQL.
//
// The unsubscribe guarantee: each send happens inside a transaction that holds the
// recipient's subscription row FOR SHARE and checks it is still confirmed. An unsubscribe
// must update that row, so it waits for a send already under way, and commits (and answers)
// only afterwards; every send that starts later sees the withdrawal and skips.
//
// One transaction covers a chunk of sends, not one: its lock, its record of every outcome
// (one statement) and its commit are shared by up to `sendsPerTransaction` mails, sent
// `concurrency` at a time inside it. The chunk is sized from how many mails the recent chunks
// sent per millisecond, so that a transaction stays within about `transactionBudgetMs`: that
// is as long as an unsubscribe can wait, and what a worker killed outright (SIGKILL) may send
// twice, since a chunk's sends are recorded when it commits. Two chunks are under way at
// once, so that the relay has mails while the other one locks, records and commits.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { startDueCampaigns } from '../campaigns/campaigns.js';
import { buildCampaignMailPieces, type CampaignMailSource, campaignMailSource, hasAddress } from '../campaigns/message.js';
import { findCampaignTemplates, findRecipients, finishCampaignIfDone, type RecipientRow } from '../campaigns/store.js';
import { MailRenderError } from '../campaigns/templates.js';
import type { Deps } from '../deps.js';
import { recipientLinks } from '../links/urls.js';
import { mailTagger } from '../mail/envelope.js';
import type { PiecedMail } from '../mail/mime.js';
import { type MailSender, messageId, SendError } from '../mail/transport.js';
import * as store from './message-store.js';
import { eachChunk, judgeSendFailure, LoopingWorker, type QueueWorkerOptions, recordPersistently, WorkerLoop } from './loop.js';

export interface CampaignWorkerOptions extends QueueWorkerOptions {
  /** The most sends one transaction covers (two transactions are under way at once). */
  sendsPerTransaction: number;
  /** How long a transaction's sends should take at most, as the recent sends went. */
  transactionBudgetMs: number;
}

export const DEFAULT_CAMPAIGN_OPTIONS: CampaignWorkerOptions = {
  batchSize: 100,
  concurrency: 5,
  leaseMs: 5 * 60_000,
  pollMs: 1_000,
  retryBaseMs: 30_000,
  retryMaxMs: 30 * 60_000,
  maxAttempts: 50,
  sendsPerTransaction: 50,
  transactionBudgetMs: 100,
};

/** Chunks under way at once: while one locks, records and commits, the other keeps the relay busy. */
const TRANSACTIONS_AT_ONCE = 2;

type WorkerDeps = Pick<Deps, 'db' | 'log' | 'metrics' | 'config' | 'signer' | 'catalogues' | 'clock'> & { sender: MailSender };

interface CampaignData {
  listId: string;
  /** Or why its templates do not parse: stored before today's checks, say. Each of its messages fails with it. */
  source: CampaignMailSource | { invalid: string };
}

export class CampaignWorker extends LoopingWorker {
  readonly id = `${hostname()}:${process.pid}:campaigns:${randomUUID().slice(0, 8)}`;
  private readonly options: CampaignWorkerOptions;
  protected readonly loop: WorkerLoop;
  /** Parsed templates per campaign: parsed once per worker, not per recipient. */
  private readonly campaigns = new Map<string, CampaignData>();
  /** Mails a chunk has been sending per millisecond (a moving average), to size the chunks. Unknown at first: chunks of one. */
  private mailsPerMs = 0;
  /** Sends in flight, all chunks together, and the sends waiting for one of the `concurrency` places. */
  private inFlight = 0;
  private readonly waitingToSend: (() => void)[] = [];
  private readonly tag: ReturnType<typeof mailTagger>;
  /** When round() next looks for scheduled campaigns whose time has come (Date.now()). */
  private nextDueCheck = 0;

  constructor(private readonly deps: WorkerDeps, options: Partial<CampaignWorkerOptions> = {}) {
    super();
    this.tag = mailTagger(deps.config);
    this.options = { ...DEFAULT_CAMPAIGN_OPTIONS, ...options };
    this.loop = new WorkerLoop(() => this.round(), { pollMs: this.options.pollMs, name: this.id }, deps.log);
  }

  /** Claims and sends one batch; resolves with how many messages it handled. */
  async runOnce(): Promise<number> {
    await this.startDue();
    return (await this.sendBatch(this.options.batchSize)).handled;
  }

  /** Starts the scheduled campaigns whose time has come; resolves with those this worker started. */
  async startDue(): Promise<string[]> {
    const started = await startDueCampaigns(this.deps);
    for (const id of started) this.deps.log.info({ campaign: id, worker: this.id }, 'scheduled campaign started');
    return started;
  }

  private async round() {
    // Scheduled campaigns are looked for once per poll interval, not before every batch of a
    // send under way: a transaction of its own that a million-recipient send need not pay each round.
    const now = Date.now();
    if (now >= this.nextDueCheck) {
      this.nextDueCheck = now + this.options.pollMs;
      await this.startDue();
    }
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
    const unstarted = await eachChunk(messages, TRANSACTIONS_AT_ONCE, () => this.chunkSize(), () => this.stopping,
      (chunk) => this.deliverChunk(chunk, recipients));
    await store.recordOutcomes(db, this.id, unstarted.map((m) => ({ ...m, outcome: { kind: 'released' } })), this.backoff);
    for (const id of campaignIds) await finishCampaignIfDone(db, id);
    return { handled: messages.length };
  }

  private async campaign(id: string): Promise<CampaignData> {
    const cached = this.campaigns.get(id);
    if (cached) return cached;
    const row = await findCampaignTemplates(this.deps.db, id);
    if (!row) throw new Error(`campaign ${id} vanished`);
    const data = { listId: row.list_id, source: mailSourceOrWhyNot(row) };
    this.campaigns.set(id, data);
    return data;
  }

  private get backoff() {
    return { baseMs: this.options.retryBaseMs, maxMs: this.options.retryMaxMs };
  }

  private chunkSize(): number {
    const { sendsPerTransaction, transactionBudgetMs } = this.options;
    return Math.max(1, Math.min(sendsPerTransaction, Math.floor(transactionBudgetMs * this.mailsPerMs)));
  }

  /** Runs `send` once fewer than `concurrency` sends are in flight, the chunks under way together. */
  private async limited<T>(send: () => Promise<T>): Promise<T> {
    if (this.inFlight >= this.options.concurrency) await new Promise<void>((resolve) => this.waitingToSend.push(resolve));
    else this.inFlight += 1;
    try {
      return await send();
    } finally {
      const next = this.waitingToSend.shift();
      if (next) next(); // the place passes on
      else this.inFlight -= 1;
    }
  }

  /**
   * Sends a chunk of messages in one transaction that holds their subscriptions FOR SHARE,
   * and records every outcome in it. Resolves with the messages it did not start (stopping).
   */
  private async deliverChunk(chunk: store.ClaimedMessage[], recipients: Map<string, RecipientRow>): Promise<store.ClaimedMessage[]> {
    const { db, log } = this.deps;
    const outcomes: store.MessageOutcome[] = [];
    const unstarted: store.ClaimedMessage[] = [];
    const warnIfNotHeld = (recorded: Set<string>) => {
      const lost = outcomes.filter((o) => o.outcome.kind === 'sent' && !recorded.has(store.messageKey(o))).length;
      if (lost > 0) log.warn({ messages: lost }, 'sent messages whose claims had passed to another worker');
    };
    try {
      await db.transaction().execute(async (trx) => {
        const started = performance.now();
        const gates = await store.lockForSending(trx, chunk.map((m) => ({ ...m, list_id: this.campaigns.get(m.campaign_id)!.listId })));
        // Every send settles before anything is judged: one that threw must not leave others
        // still going when the sent ones are recorded (below, or in the catch).
        const settled = await Promise.allSettled(chunk.map((message) => this.limited(async () => {
          if (this.stopping) unstarted.push(message);
          else outcomes.push({ ...message, outcome: await this.deliver(message, recipients.get(message.subscriber_id), gates.get(store.messageKey(message))) });
        })));
        const failed = settled.find((result) => result.status === 'rejected');
        if (failed) throw failed.reason;
        const rate = chunk.length / Math.max(1, performance.now() - started);
        this.mailsPerMs = this.mailsPerMs > 0 ? 0.7 * this.mailsPerMs + 0.3 * rate : rate;
        warnIfNotHeld(await store.recordOutcomes(trx, this.id, outcomes, this.backoff));
      });
    } catch (error) {
      const sent = outcomes.filter((o) => o.outcome.kind === 'sent');
      if (sent.length === 0) throw error;
      // The relay took these mails but the transaction recording them failed (its connection
      // died, say): record them on their own, kept trying while our claims hold, or they would
      // go again. The chunk's other messages stay claimed until their lease runs out.
      warnIfNotHeld(await recordPersistently(() => store.recordOutcomes(db, this.id, sent, this.backoff), this.options.leaseMs / 2,
        (retryError) => log.warn({ err: retryError }, 'could not record sent messages yet; trying again')));
    }
    return unstarted;
  }

  /** Renders and sends one message if it may still go; says what became of it. */
  private async deliver(message: store.ClaimedMessage, recipient: RecipientRow | undefined, gate: store.SendGate | undefined): Promise<store.Outcome> {
    if (!recipient || !hasAddress(recipient)) return { kind: 'skipped', reason: 'subscriber erased' };
    if (!gate || gate.campaign_status !== 'sending') return { kind: 'released' };
    if (gate.subscription_status !== 'confirmed' || gate.erased) {
      return { kind: 'skipped', reason: gate.erased ? 'subscriber erased' : `subscription ${gate.subscription_status}` };
    }
    const campaign = this.campaigns.get(message.campaign_id)!;
    if ('invalid' in campaign.source) return { kind: 'failed', error: campaign.source.invalid };
    // Claimed more often than allowed, so every earlier attempt ended without an outcome: the
    // process died with it in hand. Trying again would only die again.
    if (message.attempts > this.options.maxAttempts) {
      return { kind: 'failed', error: `no outcome in ${this.options.maxAttempts} attempts: each ended with the worker stopping or dying` };
    }
    const { source } = campaign;
    const links = recipientLinks(this.deps, recipient.id, campaign.listId);
    return this.send(message, () => buildCampaignMailPieces(this.deps, source, recipient, links).mail);
  }

  /** Builds the mail and hands it to the relay; a failure of either becomes the message's outcome. */
  private async send(message: store.ClaimedMessage, build: () => Omit<PiecedMail, 'messageId'>): Promise<store.Outcome> {
    const { sender, config, metrics } = this.deps;
    const id = messageId(config.mailFrom);
    const stopTimer = metrics.sendLatency.startTimer({ kind: 'campaign' });
    try {
      const tag = this.tag({ kind: 'campaign', campaignId: message.campaign_id, subscriberId: message.subscriber_id });
      const response = await sender.send({ ...build(), messageId: id, tag });
      stopTimer();
      metrics.mailsSent.inc({ kind: 'campaign' });
      return { kind: 'sent', messageId: id, response };
    } catch (error) {
      // A mail that cannot be rendered fails like one the relay refuses for good, unless only
      // the time limit stopped it: load can do that, so it is tried again like a 4xx.
      const cause = error instanceof MailRenderError ? new SendError(error.message, !error.timedOut) : error;
      const failure = judgeSendFailure(cause, { kind: 'campaign', attempts: message.attempts, maxAttempts: this.options.maxAttempts, metrics });
      return { kind: failure.final ? 'failed' : 'retry', error: failure.message };
    }
  }
}

function mailSourceOrWhyNot(row: Parameters<typeof campaignMailSource>[0]): CampaignData['source'] {
  try {
    return campaignMailSource(row);
  } catch (error) {
    return { invalid: error instanceof Error ? error.message : String(error) };
  }
}
