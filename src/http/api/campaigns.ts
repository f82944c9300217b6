// /api/v1/campaigns
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { campaignAudience, changeCampaignStatus, createCampaign, getCampaign, listCampaigns, previewCampaign } from '../../campaigns/campaigns.js';
import { sendCampaign } from '../../campaigns/campaigns.js';
import { MAX_MJML_CHARS } from '../../campaigns/templates.js';
import type { Deps } from '../../deps.js';
import { AFFINITY_LEVELS, CAMPAIGN_REPORT_COUNTS, CAMPAIGN_STATUSES, MESSAGE_STATUSES } from '../../domain.js';
import { type ApiEnv, apiRoutes } from './env.js';
import { conflict, countsSchema, ErrorSchema, errors, idempotencyReused, json, notFound, plain, security, text } from './schemas.js';

const IdParam = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' } }) });

const CampaignSchema = z.object({
  id: z.string(),
  name: z.string(),
  list: z.string(),
  subject: z.string(),
  min_affinity: z.enum(AFFINITY_LEVELS),
  status: z.enum(CAMPAIGN_STATUSES),
  created_at: z.string(),
  send_at: z.string().nullable(),
  segment: z.record(z.string(), z.unknown()).nullable(),
  sending_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  paused_reason: z.string().nullable().openapi({ description: 'why the campaign paused itself (complaint or bounce rate); null otherwise' }),
  counts: countsSchema([...MESSAGE_STATUSES, ...CAMPAIGN_REPORT_COUNTS]),
}).openapi('Campaign');

const SegmentSchema = z.object({
  attributes: z.record(z.string(), z.unknown()).optional().openapi({ description: 'all must match (JSON containment)' }),
  locales: z.array(text().min(1).max(35)).min(1).max(50).optional(),
  confirmed_before: z.string().datetime({ offset: true }).optional(),
  confirmed_after: z.string().datetime({ offset: true }).optional(),
  // Unknown keys pass here to be refused (422) by the domain, which owns the segment's vocabulary.
}).passthrough().openapi('Segment');

const AudienceSchema = z.object({
  total: z.number().int(),
  by_affinity: z.record(z.enum(AFFINITY_LEVELS), z.number().int()),
  left_out: z.object({ terms: z.number().int(), segment: z.number().int(), affinity: z.number().int() }),
}).openapi('Audience');

const CreateBody = z.object({
  name: text().trim().min(1).max(200),
  list: text().min(1).max(100),
  subject: text().min(1).max(998).openapi({ description: 'a Liquid template' }),
  mjml: text().min(1).max(MAX_MJML_CHARS, `at most ${MAX_MJML_CHARS} characters`).openapi({ description: 'an MJML document; text and free-form attributes may hold Liquid' }),
  min_affinity: z.enum(AFFINITY_LEVELS).optional(),
  send_at: z.string().datetime({ offset: true }).optional().openapi({ description: 'RFC 3339: the campaign is scheduled and starts by itself then' }),
  segment: SegmentSchema.optional(),
}).strict();

const PreviewSchema = z.object({
  subject: z.string(), html: z.string(), text: z.string(), affinity: z.enum(AFFINITY_LEVELS),
  withheld: z.array(z.string()).openapi({ description: 'fields held about the person that their affinity kept out' }),
}).openapi('Preview');

const TemplateError = { 422: { description: 'MJML or Liquid errors, each with its line', ...json(ErrorSchema) } } as const;

export function campaignsApp(deps: Deps): OpenAPIHono<ApiEnv> {
  const app = apiRoutes();
  app.openapi(createRoute({
    method: 'post', path: '/', summary: 'Create a draft', security,
    request: { body: { required: true, ...json(CreateBody) } },
    responses: { 201: { description: 'the draft', ...json(CampaignSchema) }, ...errors, ...notFound, ...TemplateError },
  }), async (c) => {
    const body = c.req.valid('json');
    const campaign = await createCampaign(deps, { ...body, minAffinity: body.min_affinity, sendAt: body.send_at });
    return c.json(plain(campaign), 201);
  });

  app.openapi(createRoute({
    method: 'get', path: '/', summary: 'The campaigns, newest first', security,
    request: { query: z.object({ limit: z.coerce.number().int().min(1).max(200).default(50), cursor: z.string().max(30).optional() }) },
    responses: { 200: { description: 'one page', ...json(z.object({ data: z.array(CampaignSchema), next_cursor: z.string().nullable() })) }, ...errors },
  }), async (c) => c.json(plain(await listCampaigns(deps, c.req.valid('query'))), 200));

  app.openapi(createRoute({
    method: 'get', path: '/{id}', summary: 'Status and counts', security,
    request: { params: IdParam },
    responses: { 200: { description: 'the campaign', ...json(CampaignSchema) }, ...errors, ...notFound },
  }), async (c) => c.json(plain(await getCampaign(deps, c.req.valid('param').id)), 200));

  app.openapi(createRoute({
    method: 'post', path: '/{id}/preview', summary: 'The mail one subscriber would get', security,
    request: { params: IdParam, body: { required: true, ...json(z.object({ subscriber_id: z.string() }).strict()) } },
    responses: { 200: { description: 'the rendered mail', ...json(PreviewSchema) }, ...errors, ...notFound },
  }), async (c) => c.json(await previewCampaign(deps, c.req.valid('param').id, c.req.valid('json').subscriber_id), 200));

  app.openapi(createRoute({
    method: 'post', path: '/{id}/send', summary: 'Fix the audience now and start sending', security,
    request: { params: IdParam },
    responses: { 202: { description: 'sending', ...json(CampaignSchema) }, ...errors, ...notFound, ...conflict('not a draft'), ...idempotencyReused },
  }), async (c) => c.json(plain(await sendCampaign(deps, c.req.valid('param').id)), 202));

  app.openapi(createRoute({
    method: 'post', path: '/{id}/audience', summary: 'How many it would reach now, by affinity level, and what the terms and the segment leave out', security,
    request: { params: IdParam },
    responses: { 200: { description: 'the counts', ...json(AudienceSchema) }, ...errors, ...notFound },
  }), async (c) => c.json(await campaignAudience(deps, c.req.valid('param').id), 200));

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    app.openapi(createRoute({
      method: 'post', path: `/{id}/${action}`, summary: `${action[0]!.toUpperCase()}${action.slice(1)} the campaign`, security,
      request: { params: IdParam },
      responses: { 200: { description: 'the campaign', ...json(CampaignSchema) }, ...errors, ...notFound, ...conflict('not allowed in this status') },
    }), async (c) => c.json(plain(await changeCampaignStatus(deps, c.req.valid('param').id, action)), 200));
  }
  return app;
}
