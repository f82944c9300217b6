// /api/v1/webhooks
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Deps } from '../../deps.js';
import { UUID } from '../../domain.js';
import { DomainError } from '../../errors.js';
import { createEndpoint, deleteEndpoint, endpointDeliveries, listEndpoints } from '../../webhooks/endpoints.js';
import { WEBHOOK_EVENT_TYPES } from '../../webhooks/events.js';
import { type ApiEnv, apiRoutes } from './env.js';
import { ErrorSchema, errors, idempotencyReused, json, notFound, plain, security, text } from './schemas.js';

const IdParam = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' }, format: 'uuid' }) });

const CreateWebhook = z.object({
  url: text().min(1).max(2000).openapi({ description: 'http(s); in production not a private, loopback or link-local address' }),
  events: z.array(z.enum(WEBHOOK_EVENT_TYPES)).min(1).max(WEBHOOK_EVENT_TYPES.length),
  lists: z.array(text().min(1).max(100)).min(1).max(100).optional().openapi({ description: 'only these lists\' events (default: every list)' }),
}).strict();

const WebhookSchema = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(z.string()),
  lists: z.array(z.string()).nullable(),
  status: z.enum(['enabled', 'failing', 'disabled']),
  failing_since: z.string().nullable(),
  disabled_at: z.string().nullable(),
  disabled_reason: z.string().nullable(),
  created_at: z.string(),
}).openapi('Webhook');

const AttemptSchema = z.object({
  delivery_id: z.string(), event_id: z.string(), type: z.string(),
  delivery_status: z.enum(['pending', 'delivered', 'failed']),
  attempted_at: z.string(), response_status: z.number().int().nullable(), error: z.string().nullable(), duration_ms: z.number().int(),
}).openapi('WebhookAttempt');

const refused = { 422: { description: 'the URL is not http(s), or private in production', ...json(ErrorSchema) } } as const;

const checkedId = (id: string) => {
  if (!UUID.test(id)) throw new DomainError('webhook_not_found', 'there is no such webhook');
  return id;
};

export function webhooksApp(deps: Deps): OpenAPIHono<ApiEnv> {
  const app = apiRoutes();
  app.openapi(createRoute({
    method: 'post', path: '/', summary: 'Add a webhook endpoint; its signing secret is in this answer only', security,
    request: { body: { required: true, ...json(CreateWebhook) } },
    responses: { 201: { description: 'the endpoint, with its secret', ...json(WebhookSchema.extend({ secret: z.string() })) }, ...errors, ...notFound, ...refused, ...idempotencyReused },
  }), async (c) => {
    const body = c.req.valid('json');
    const endpoint = await createEndpoint(deps, { url: body.url, events: body.events, lists: body.lists, createdBy: c.get('apiKey').name });
    return c.json(plain(endpoint), 201);
  });

  app.openapi(createRoute({
    method: 'get', path: '/', summary: 'The webhook endpoints (without their secrets)', security,
    responses: { 200: { description: 'the endpoints', ...json(z.object({ data: z.array(WebhookSchema) })) }, ...errors },
  }), async (c) => c.json(plain({ data: await listEndpoints(deps) }), 200));

  app.openapi(createRoute({
    method: 'delete', path: '/{id}', summary: 'Remove an endpoint; nothing more is sent to it', security,
    request: { params: IdParam },
    responses: { 204: { description: 'removed' }, ...errors, ...notFound },
  }), async (c) => {
    await deleteEndpoint(deps, checkedId(c.req.valid('param').id));
    return c.body(null, 204);
  });

  app.openapi(createRoute({
    method: 'get', path: '/{id}/deliveries', summary: 'The latest 100 attempts: status, answer code, time', security,
    request: { params: IdParam },
    responses: { 200: { description: 'the delivery log, newest first', ...json(z.object({ data: z.array(AttemptSchema) })) }, ...errors, ...notFound },
  }), async (c) => c.json(plain({ data: await endpointDeliveries(deps, checkedId(c.req.valid('param').id)) }), 200));
  return app;
}
