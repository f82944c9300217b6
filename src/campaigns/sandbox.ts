// Where a new campaign's templates are tried before they are accepted: compiled (MJML, then
// HTML to text) and rendered once for a made-up recipient, in a worker thread with a heap,
// a stack and a time of its own. A template that would exhaust any of them ends the thread,
// not the service, and is refused with a 422; the service's event loop is never held by
// MJML (665 kB of it had held /healthz for 7.8 s). The thread is started on first use, kept
// for the next campaign, and ended when idle.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DomainError } from '../errors.js';
import type { SandboxAnswer, SandboxJob } from './sandbox-thread.js';
import type { CompiledCampaign } from './templates.js';

export interface SandboxLimits {
  /**
   * Wall-clock milliseconds for one compile and trial render. The longest MJML we take
   * compiles in about 2 s on one idle core; this leaves room for a busy one.
   */
  timeoutMs: number;
  /** The thread's old-generation heap: the longest MJML we take does not compile in 32 MB, does in 64. */
  heapMb: number;
  /**
   * The thread's stack: about the main thread's (984 kB), so a template whose parse fits here
   * fits in the worker that renders it too.
   */
  stackMb: number;
  /** An idle thread is ended after this long: it holds MJML's modules, tens of MB. */
  idleMs: number;
}

export const SANDBOX_LIMITS: SandboxLimits = { timeoutMs: 15_000, heapMb: 96, stackMb: 1, idleMs: 60_000 };

const require = createRequire(import.meta.url);

/**
 * The code a thread starts with: import the entry. From source (tsx, vitest) the thread first
 * registers tsx, whose hooks a thread does not inherit; compiled, it needs nothing.
 */
function threadCode(): string {
  const source = fileURLToPath(import.meta.url);
  const entry = pathToFileURL(path.join(path.dirname(source), `sandbox-thread${path.extname(source)}`)).href;
  if (!source.endsWith('.ts')) return `import(${JSON.stringify(entry)});`;
  const manifest = require.resolve('tsx/package.json');
  const { exports } = require(manifest) as { exports: Record<string, { import: { default: string } }> };
  const api = pathToFileURL(path.join(path.dirname(manifest), exports['./esm/api']!.import.default)).href;
  return `import(${JSON.stringify(api)}).then(({ register }) => { register(); return import(${JSON.stringify(entry)}); });`;
}

const refused = (message: string) => new DomainError('template_invalid', message, undefined, [{ source: 'mjml', line: null, message }]);

export class TemplateSandbox {
  /** The thread, once it has loaded; undefined until first use and after it ended. */
  private thread: Promise<Worker> | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** One job at a time: the thread is one core's worth, and creating a campaign is rare. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly limits: SandboxLimits = SANDBOX_LIMITS) {}

  /** The compiled templates, once they compiled and rendered for the sample; else template_invalid. */
  compile(job: SandboxJob): Promise<CompiledCampaign> {
    const run = this.queue.then(async () => {
      clearTimeout(this.idleTimer);
      this.thread ??= this.start();
      return this.run(await this.thread, job);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Ends the thread, if there is one. */
  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    const thread = this.thread;
    this.thread = undefined;
    await (await thread?.catch(() => undefined))?.terminate();
  }

  private start(): Promise<Worker> {
    const { heapMb, stackMb } = this.limits;
    const thread = new Worker(threadCode(), { eval: true, resourceLimits: { maxOldGenerationSizeMb: heapMb, stackSizeMb: stackMb } });
    const loaded = new Promise<Worker>((resolve, reject) => {
      thread.once('message', () => resolve(thread)).once('error', reject).once('exit', () => reject(new Error('the template thread stopped while loading')));
    });
    // Always heard, so that a thread ending between jobs is only forgotten, never an unhandled 'error'.
    thread.on('error', () => this.forget(loaded)).on('exit', () => this.forget(loaded));
    return loaded;
  }

  private run(thread: Worker, job: SandboxJob): Promise<CompiledCampaign> {
    thread.ref();
    return new Promise<CompiledCampaign>((resolve, reject) => {
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        thread.off('message', onAnswer).off('error', onError).off('exit', onExit);
        outcome();
      };
      const onAnswer = (answer: SandboxAnswer) => settle(() => {
        if (answer.ok) resolve(answer.compiled);
        else reject(new DomainError('template_invalid', answer.message, undefined, answer.details));
        this.idle(thread);
      });
      const onError = (error: Error & { code?: string }) => settle(() => reject(error.code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? refused(`compiling and rendering the template needs more than ${this.limits.heapMb} MB`)
        : refused(`the template could not be compiled: ${error.message}`)));
      const onExit = () => settle(() => reject(refused('the template could not be compiled: its thread stopped')));
      const timer = setTimeout(() => settle(() => {
        void this.close();
        reject(refused(`compiling and rendering the template took longer than ${this.limits.timeoutMs / 1000} s`));
      }), this.limits.timeoutMs);
      thread.on('message', onAnswer).on('error', onError).on('exit', onExit);
      thread.postMessage(job);
    });
  }

  /** Kept for the next job, but not keeping the process alive; ended after idleMs. */
  private idle(thread: Worker): void {
    thread.unref();
    this.idleTimer = setTimeout(() => void this.close(), this.limits.idleMs).unref();
  }

  private forget(thread: Promise<Worker>): void {
    if (this.thread === thread) this.thread = undefined;
  }
}
