// The loop every worker runs: do one round; when it found a full batch, go again at once,
// else wait for a wake-up (work was just queued in this process) or the poll interval (work
// queued by another process).
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import { SendError } from '../mail/transport.js';

export interface Round {
  /** The round filled its batch: more is probably waiting. */
  full: boolean;
  /** Wait at least this long before the next round (a rate limit), in milliseconds. */
  waitMs?: number;
}

/** How a queue worker claims, sends and retries; each worker has its own defaults. */
export interface QueueWorkerOptions {
  /** Rows claimed at once. */
  batchSize: number;
  /** Sends in flight at once: the SMTP pool's size. A campaign send also holds a database connection meanwhile. */
  concurrency: number;
  /** How long a claim holds before another worker may take the row over. */
  leaseMs: number;
  pollMs: number;
  /** Backoff after a temporary failure: base * 2^(attempts - 1), capped. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** After this many attempts a temporary failure is final. */
  maxAttempts: number;
}

export class WorkerLoop {
  private running = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private wakeRequested = false;

  constructor(
    private readonly round: () => Promise<Round>,
    private readonly options: { pollMs: number; name: string },
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  wake(): void {
    this.wakeRequested = true;
    this.wakeUp?.();
  }

  /** Takes no more work and waits for the round in hand to finish. */
  async stop(): Promise<void> {
    this.running = false;
    this.wakeUp?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let result: Round = { full: false };
      try {
        result = await this.round();
      } catch (error) {
        this.log.error({ err: error, worker: this.options.name }, 'worker round failed; retrying');
      }
      if (!this.running) break;
      if (result.waitMs !== undefined) await this.idle(result.waitMs, { wakeable: false });
      else if (!result.full) await this.idle(this.options.pollMs, { wakeable: true });
    }
  }

  private idle(ms: number, { wakeable }: { wakeable: boolean }): Promise<void> {
    if (wakeable && this.wakeRequested) {
      this.wakeRequested = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        if (wakeable) this.wakeRequested = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      // A rate limit's wait is cut short only by stop(); a wake-up would just hit the limit again.
      this.wakeUp = wakeable ? done : () => { if (!this.running) done(); };
    });
  }
}

/**
 * Runs `task` over `items` in chunks of `chunkSize()` (asked afresh for each chunk), at most
 * `limit` chunks at once, starting none once `stopped()` says so. A task resolves with the
 * items of its chunk it did not start. Resolves with every item never started, for the
 * caller to give back.
 */
export async function eachChunk<T>(items: readonly T[], limit: number, chunkSize: () => number, stopped: () => boolean,
  task: (chunk: T[]) => Promise<T[]>): Promise<T[]> {
  let next = 0;
  const unstarted: T[] = [];
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length && !stopped()) {
      const chunk = items.slice(next, next + Math.max(1, chunkSize()));
      next += chunk.length;
      unstarted.push(...await task(chunk));
    }
  });
  await Promise.all(lanes);
  return [...unstarted, ...items.slice(next)];
}

/** eachChunk one item at a time. */
export function eachLimited<T>(items: readonly T[], limit: number, stopped: () => boolean, task: (item: T) => Promise<void>): Promise<T[]> {
  return eachChunk(items, limit, () => 1, stopped, async ([item]) => {
    await task(item!);
    return [];
  });
}

/**
 * Runs `record` until it succeeds or `giveUpMs` has passed, waiting 250 ms doubling to 5 s in
 * between. For the one write that must not be lost: that the relay took a mail. Left
 * unrecorded, the mail would be sent again once its claim ran out.
 */
export async function recordPersistently<T>(record: () => Promise<T>, giveUpMs: number, onRetry: (error: unknown) => void): Promise<T> {
  const deadline = Date.now() + giveUpMs;
  for (let waitMs = 250; ; waitMs = Math.min(waitMs * 2, 5_000)) {
    try {
      return await record();
    } catch (error) {
      if (Date.now() + waitMs > deadline) throw error;
      onRetry(error);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

/**
 * A send that failed, counted in the metrics and judged: final for a 5xx (retrying cannot
 * help) or once the attempts are used up, else to be tried again with backoff.
 */
export function judgeSendFailure(error: unknown, context: { kind: string; attempts: number; maxAttempts: number; metrics: Metrics }) {
  const failure = error instanceof SendError ? error : new SendError(String(error), false);
  context.metrics.mailsFailed.inc({ kind: context.kind, permanent: String(failure.permanent) });
  return { message: failure.message, final: failure.permanent || context.attempts >= context.maxAttempts };
}

/** A worker driven by a WorkerLoop: start, wake when work was just queued, stop gracefully. */
export abstract class LoopingWorker {
  protected abstract readonly loop: WorkerLoop;
  /** Set by stop(): a batch in hand starts no further sends, and gives the rest back. */
  protected stopping = false;

  start(): void {
    this.stopping = false;
    this.loop.start();
  }

  /** Work was just queued in this process: look now rather than at the next poll. */
  wake(): void {
    this.loop.wake();
  }

  /** Takes no more claims, finishes the sends in flight and gives back the rest of the batch. */
  stop(): Promise<void> {
    this.stopping = true;
    return this.loop.stop();
  }
}
