// The sending providers' webhooks: /hooks/ses (SNS), /hooks/postmark, /hooks/sendgrid,
// /hooks/mailgun. Each is authenticated the way its provider signs (inbound/*.ts), over the
// body's exact bytes; a call that does not authenticate is 401 and changes nothing. A hook
// whose setting is not given is not there (404). What the calls carry is applied as every
// other report is (consent/reports.ts).
import { Hono } from 'hono';
import { handleReport, type HandledReport } from '../consent/reports.js';
import type { Deps } from '../deps.js';
import { DomainError } from '../errors.js';
import { createMailgunReceiver } from '../inbound/mailgun.js';
import { createPostmarkReceiver } from '../inbound/postmark.js';
import type { Refusal, WebhookOutcome, WebhookRequest } from '../inbound/providers.js';
import { createSendGridReceiver } from '../inbound/sendgrid.js';
import { createSesReceiver, type SesOutcome } from '../inbound/sns.js';
import type { InboundReport, ReportProvider } from '../inbound/types.js';
import { limitBody } from './guards.js';

/**
 * A provider's call: SendGrid batches up to a few thousand events, about 1 MB at most; the
 * others send one event of a few kilobytes.
 */
export const MAX_HOOK_BODY_BYTES = 2 * 1024 * 1024;

type Receiver = (request: WebhookRequest, now: number) => WebhookOutcome | Promise<WebhookOutcome | SesOutcome>;

export interface HooksOptions {
  /** How SNS certificates are fetched and subscriptions confirmed; tests pass their own. */
  fetch?: (url: string) => Promise<{ ok: boolean; text(): Promise<string> }>;
}

function receivers(deps: Pick<Deps, 'config'>, fetcher: NonNullable<HooksOptions['fetch']>): Partial<Record<Exclude<ReportProvider, 'smtp'>, Receiver>> {
  const settings = deps.config.inbound;
  return {
    ...(settings.sesTopicArns.length > 0 && {
      ses: createSesReceiver({
        topicArns: settings.sesTopicArns,
        fetchCertificate: async (url) => {
          const response = await fetcher(url);
          if (!response.ok) throw new Error('certificate not fetched');
          return response.text();
        },
      }),
    }),
    ...(settings.postmarkWebhookToken && { postmark: createPostmarkReceiver({ token: settings.postmarkWebhookToken }) }),
    ...(settings.sendgridWebhookKey && { sendgrid: createSendGridReceiver({ publicKey: settings.sendgridWebhookKey }) }),
    ...(settings.mailgunSigningKey && { mailgun: createMailgunReceiver({ signingKey: settings.mailgunSigningKey }) }),
  };
}

/**
 * What is kept of each report for support: a call with one event is kept as it came; from a
 * batch (SendGrid), only that event's reading, since the batch names other people too.
 */
const rawOf = (body: Uint8Array, reports: readonly InboundReport[], report: InboundReport) =>
  (reports.length === 1 ? body : Buffer.from(JSON.stringify(report), 'utf8'));

export function hooksApp(deps: Deps, options: HooksOptions = {}): Hono {
  const fetcher = options.fetch ?? ((url: string) => fetch(url, { redirect: 'error', signal: AbortSignal.timeout(10_000) }));
  const app = new Hono();
  for (const [provider, receive] of Object.entries(receivers(deps, fetcher)) as [ReportProvider, Receiver][]) {
    app.post(`/${provider}`, limitBody(MAX_HOOK_BODY_BYTES), async (c) => {
      const body = new Uint8Array(await c.req.arrayBuffer());
      const outcome = await receive({ body, headers: c.req.raw.headers }, deps.clock());
      if (!outcome.ok) {
        deps.log.warn({ provider, reason: (outcome as Refusal).reason, message: (outcome as Refusal).message }, 'provider call refused');
        c.header('WWW-Authenticate', provider === 'postmark' ? 'Basic realm="assent"' : `Signature realm="assent"`);
        throw new DomainError('unauthorized', `this call is not signed by ${provider} with our key`);
      }
      if ('type' in outcome && outcome.type === 'subscription_confirmation') {
        // Confirming is a GET to SNS, after this answer: SNS does not wait on it, nor should the request.
        const url = outcome.subscribeUrl;
        setImmediate(() => {
          fetcher(url).then(
            (response) => deps.log.info({ provider, topic: outcome.topicArn, ok: response.ok }, 'SNS subscription confirmed'),
            (error: unknown) => deps.log.warn({ provider, err: error }, 'SNS subscription not confirmed'),
          );
        });
      }
      const handled: HandledReport[] = [];
      for (const report of outcome.reports) handled.push(await handleReport(deps, report, rawOf(body, outcome.reports, report)));
      return c.json({ received: handled.length });
    });
  }
  return app;
}
