// Runs the sequencer in a loop (every process may: the advisory lock makes it one at a time),
// and has each new checkpoint time-stamped when TSA_URL is set.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Database } from '../db/database.js';
import { LoopingWorker, WorkerLoop } from '../workers/loop.js';
import { ConsentLogSequencer, DEFAULT_SEQUENCER_OPTIONS, type SequencerOptions, type SequencerRound } from './sequencer.js';
import * as store from './store.js';
import { requestTimeStamp } from './tsa.js';

export interface ConsentLogWorkerOptions extends SequencerOptions {
  pollMs: number;
  /** RFC 3161 authority for every checkpoint; none: no time-stamps. */
  tsaUrl: string | undefined;
  /** After a time-stamping authority failed, wait this long before asking again. */
  tsaRetryMs: number;
}

export const DEFAULT_CONSENT_LOG_OPTIONS = {
  ...DEFAULT_SEQUENCER_OPTIONS,
  pollMs: 1_000,
  tsaRetryMs: 60_000,
} satisfies Partial<ConsentLogWorkerOptions>;

export interface ConsentLogMetrics {
  halted: { set(value: number): void };
  checkpoints: { inc(): void };
  leaves: { inc(value: number): void };
}

export class ConsentLogWorker extends LoopingWorker {
  readonly id = `${hostname()}:${process.pid}:consent-log:${randomUUID().slice(0, 8)}`;
  protected readonly loop: WorkerLoop;
  private readonly sequencer: ConsentLogSequencer;
  private tsaQuietUntil = 0;
  private haltReported = false;

  constructor(
    private readonly deps: { db: Database; log: Logger; clock: () => number; metrics: ConsentLogMetrics },
    private readonly options: ConsentLogWorkerOptions,
  ) {
    super();
    this.sequencer = new ConsentLogSequencer(deps.db, deps.log, options);
    this.loop = new WorkerLoop(() => this.round(), { pollMs: options.pollMs, name: this.id }, deps.log);
  }

  /** One round: sequence, maybe sign, maybe time-stamp. */
  async runOnce(options: { forceCheckpoint?: boolean } = {}): Promise<SequencerRound> {
    const round = await this.sequencer.runOnce(this.deps.clock(), options);
    this.deps.metrics.leaves.inc(round.appended);
    if (round.signed) this.deps.metrics.checkpoints.inc();
    this.deps.metrics.halted.set(round.halted ? 1 : 0);
    if (round.halted && !this.haltReported) {
      this.haltReported = true; // the sequencer logged it when it happened; a restart says it once more
      this.deps.log.error({ reason: round.halted }, 'consent log halted: no checkpoint is signed until it is resolved');
    }
    if (this.options.tsaUrl && !round.halted) await this.stamp(this.options.tsaUrl);
    return round;
  }

  private async round() {
    await this.runOnce();
    return { full: false };
  }

  private async stamp(url: string): Promise<void> {
    if (this.deps.clock() < this.tsaQuietUntil) return;
    for (const checkpoint of await store.unstampedCheckpoints(this.deps.db, 5)) {
      try {
        const stamp = await requestTimeStamp(url, checkpoint.note);
        await store.insertTimestamp(this.deps.db, checkpoint.size, stamp.token, stamp.genTime);
      } catch (error) {
        this.tsaQuietUntil = this.deps.clock() + this.options.tsaRetryMs;
        this.deps.log.warn({ err: error, size: checkpoint.size }, 'could not time-stamp a consent log checkpoint; trying again later');
        return;
      }
    }
  }
}
