// The thread in which a new campaign's templates are compiled and rendered once (see
// sandbox.ts): whatever they do to this thread's heap, stack or time, the service goes on.
import { parentPort } from 'node:worker_threads';
import { DomainError } from '../errors.js';
import { type CompiledCampaign, compileCampaign, type Detail, parseCampaign, renderCampaignMail } from './templates.js';

export interface SandboxJob {
  subject: string;
  mjml: string;
  /** The context of a made-up recipient at the highest affinity level. */
  sample: Record<string, unknown>;
}

export type SandboxAnswer =
  | { ok: true; compiled: CompiledCampaign }
  | { ok: false; message: string; details: Detail[] };

async function compileAndTry(job: SandboxJob): Promise<SandboxAnswer> {
  try {
    const compiled = await compileCampaign(job.subject, job.mjml);
    renderCampaignMail(parseCampaign({ subject: job.subject, html_template: compiled.htmlTemplate, text_template: compiled.textTemplate }), job.sample);
    return { ok: true, compiled };
  } catch (error) {
    if (error instanceof DomainError) return { ok: false, message: error.message, details: error.details ?? [] };
    // Whatever else MJML or its parsers threw (a RangeError from deep nesting, say).
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, message: 'the MJML could not be compiled', details: [{ source: 'mjml', line: null, message }] };
  }
}

parentPort!.on('message', (job: SandboxJob) => {
  void compileAndTry(job).then((answer) => parentPort!.postMessage(answer));
});
// Loaded: a job's time starts now, not while MJML's modules load (seconds on a busy machine).
parentPort!.postMessage('ready');
