// /api/v1/subscribers/{id}/consent/receipt and …/certificate: the person's consent record
// with its proof in the consent log, as JSON a regulator can check with the log's key, and
// as a page to print. (The record itself, /{id}/consent, is in subscribers.ts.)
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { consentReceipt, receiptDeps } from '../../consent/receipt.js';
import type { Deps } from '../../deps.js';
import { Pages } from '../pages.js';
import { type ApiEnv, apiRoutes } from './env.js';
import { errors, json, notFound, security } from './schemas.js';

const IdParam = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' }, format: 'uuid' }) });

const ReceiptSchema = z.object({
  schema: z.string(),
  record_id: z.string(),
  issued_at: z.string(),
  controller: z.object({ name: z.string().nullable(), contact: z.string().nullable(), privacy_notice: z.string().nullable() }),
  processing: z.array(z.record(z.string(), z.unknown())),
  events: z.array(z.record(z.string(), z.unknown())),
  consent_log: z.object({
    origin: z.string(), verifier_key: z.string(), url: z.string(), checkpoint: z.string().nullable(), timestamp_token: z.string().nullable(),
  }),
}).passthrough().openapi('ConsentReceipt', {
  description: 'ISO/IEC TS 27560-shaped consent record; each event with its leaf in the consent log, an inclusion proof, and the signed checkpoint they reach. Check it with `assent receipt verify`.',
});

export function consentApp(deps: Deps): OpenAPIHono<ApiEnv> {
  const app = apiRoutes();
  const pages = new Pages(deps.catalogues, { controller: deps.config.controller });

  app.openapi(createRoute({
    method: 'get', path: '/{id}/consent/receipt', summary: 'The consent receipt: the record and its proof in the consent log', security,
    request: { params: IdParam },
    responses: { 200: { description: 'the receipt', ...json(ReceiptSchema) }, ...errors, ...notFound },
  }), async (c) => {
    const receipt = await consentReceipt(receiptDeps(deps), c.req.valid('param').id);
    c.header('Content-Disposition', `inline; filename="consent-receipt-${receipt.record_id}.json"`);
    return c.json(receipt as never, 200);
  });

  app.openapi(createRoute({
    method: 'get', path: '/{id}/consent/certificate', summary: 'The same record as a page to print', security,
    request: { params: IdParam },
    responses: { 200: { description: 'HTML, for print', content: { 'text/html': { schema: z.string() } } }, ...errors, ...notFound },
  }), async (c) => {
    const receipt = await consentReceipt(receiptDeps(deps), c.req.valid('param').id);
    return c.html(pages.render('certificate', 'en', { receipt }), 200);
  });
  return app;
}
