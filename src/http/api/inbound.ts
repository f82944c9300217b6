// POST /api/v1/inbound: a bounce or complaint as a raw message (Content-Type:
// message/rfc822), for a mail system that hands reports to a script rather than to our SMTP
// listener (Postfix's pipe, procmail, a mailbox poller). Applied as every other report is.
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { handleRawReport } from '../../consent/reports.js';
import type { Deps } from '../../deps.js';
import { DomainError } from '../../errors.js';
import { type ApiEnv, apiRoutes } from './env.js';
import { ErrorSchema, errors, json } from './schemas.js';

const HandledSchema = z.object({
  report_id: z.string().openapi({ description: 'the same for the same report, however often it is sent' }),
  kind: z.enum(['permanent', 'temporary', 'complaint', 'delivered', 'not_a_report']),
  outcome: z.enum(['applied', 'counted', 'duplicate', 'unmatched', 'ignored']).openapi({
    description: 'applied: it ended subscriptions or was kept; counted: a soft bounce counted; duplicate: handled before; '
      + 'unmatched: about no mail of ours; ignored: not a bounce or complaint (an auto-reply, say)',
  }),
}).openapi('InboundReport');

export function inboundApp(deps: Deps): OpenAPIHono<ApiEnv> {
  const app = apiRoutes();
  app.openapi(createRoute({
    method: 'post', path: '/', summary: 'Hand in a bounce or complaint as a raw message', security: [{ bearer: [] }],
    request: { body: { required: true, content: { 'message/rfc822': { schema: z.string().openapi({ format: 'binary' }) } } } },
    responses: {
      202: { description: 'read, and applied if it is about a mail of ours', ...json(HandledSchema) },
      ...errors,
      413: { description: 'larger than the API takes (1 MiB)', ...json(ErrorSchema) },
      415: { description: 'not message/rfc822', ...json(ErrorSchema) },
    },
  }), async (c) => {
    const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase();
    if (type !== 'message/rfc822') throw new DomainError('unsupported_media_type', 'the body must be a message: Content-Type: message/rfc822');
    const handled = await handleRawReport(deps, new Uint8Array(await c.req.arrayBuffer()));
    return c.json({ report_id: handled.reportId, kind: handled.kind, outcome: handled.outcome }, 202);
  });
  return app;
}
