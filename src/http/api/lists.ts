// /api/v1/lists
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { startReconsent } from '../../consent/reconsent.js';
import type { Deps } from '../../deps.js';
import { createList, getListView, listLists, type ListView, SIGNUP_FIELDS, updateList } from '../../lists/lists.js';
import type { ListWithConsent } from '../../lists/store.js';
import { type ApiEnv, apiRoutes } from './env.js';
import { conflict, ErrorSchema, errors, idempotencyReused, json, notFound, security, text } from './schemas.js';

const Slug = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and dashes, at most 63');
const Fields = z.array(z.enum(SIGNUP_FIELDS)).max(SIGNUP_FIELDS.length)
  .openapi({ description: 'optional signup fields the list collects', example: ['first_name'] });
const ConsentText = text().trim().min(1).max(10_000).openapi({ description: 'the wording people agree to' });
const SlugParam = z.object({ slug: text().openapi({ param: { name: 'slug', in: 'path' } }) });

const ListSchema = z.object({
  slug: z.string(),
  name: z.string(),
  fields: z.array(z.string()),
  consent_text: z.string(),
  consent_version: z.number().int(),
  counts: z.record(z.string(), z.number().int()).optional(),
  reconsent_from: z.number().int().nullable().optional()
    .openapi({ description: 'the material version campaigns need agreement to (null: none)' }),
  awaiting_reconsent: z.number().int().optional()
    .openapi({ description: 'confirmed subscribers who have not yet agreed to reconsent_from: campaigns skip them' }),
}).openapi('List');

const CreateListSchema = z.object({
  slug: Slug,
  name: text().trim().min(1).max(200),
  consent_text: ConsentText,
  fields: Fields.optional(),
}).strict();

const UpdateListSchema = z.object({
  name: text().trim().min(1).max(200).optional(),
  consent_text: ConsentText.optional(),
  fields: Fields.optional(),
  reconsent: z.boolean().optional()
    .openapi({ description: 'the new consent_text is a material change: campaigns reach only those who agree to it' }),
}).strict();

function listJson(list: ListWithConsent | ListView): z.infer<typeof ListSchema> {
  return {
    slug: list.slug,
    name: list.name,
    fields: list.fields,
    consent_text: list.consentText,
    consent_version: list.consentVersion,
    ...('counts' in list && list.counts && { counts: list.counts }),
    ...('reconsentFrom' in list && { reconsent_from: list.reconsentFrom, awaiting_reconsent: list.awaitingReconsent }),
  };
}

export function listsApp(deps: Deps): OpenAPIHono<ApiEnv> {
  const app = apiRoutes();
  app.openapi(createRoute({
    method: 'post', path: '/', summary: 'Create a list', security,
    request: { body: { required: true, ...json(CreateListSchema) } },
    responses: { 201: { description: 'the list', ...json(ListSchema) }, ...errors, ...conflict('slug taken'), ...idempotencyReused },
  }), async (c) => {
    const body = c.req.valid('json');
    const list = await createList(deps, { slug: body.slug, name: body.name, consentText: body.consent_text, fields: body.fields });
    return c.json(listJson(list), 201);
  });

  app.openapi(createRoute({
    method: 'get', path: '/', summary: 'The lists, with counts by status', security,
    responses: { 200: { description: 'the lists', ...json(z.object({ data: z.array(ListSchema) })) }, ...errors },
  }), async (c) => c.json({ data: (await listLists(deps)).map(listJson) }, 200));

  app.openapi(createRoute({
    method: 'get', path: '/{slug}', summary: 'One list', security,
    request: { params: SlugParam },
    responses: { 200: { description: 'the list', ...json(ListSchema) }, ...errors, ...notFound },
  }), async (c) => c.json(listJson(await getListView(deps, c.req.valid('param').slug)), 200));

  app.openapi(createRoute({
    method: 'patch', path: '/{slug}', summary: 'Change a list; a new consent text becomes its current version', security,
    request: { params: SlugParam, body: { required: true, ...json(UpdateListSchema) } },
    responses: {
      200: { description: 'the list', ...json(ListSchema) }, ...errors, ...notFound,
      422: { description: '`reconsent` without a new consent_text', ...json(ErrorSchema) },
    },
  }), async (c) => {
    const body = c.req.valid('json');
    const list = await updateList(deps, c.req.valid('param').slug, {
      name: body.name, consentText: body.consent_text, fields: body.fields, reconsent: body.reconsent,
    });
    return c.json(listJson(list), 200);
  });
  app.openapi(createRoute({
    method: 'post', path: '/{slug}/reconsent', summary: 'Mail everyone confirmed on an earlier version the new wording to agree to', security,
    request: { params: SlugParam },
    responses: {
      202: { description: 'the mails are queued (each person once per version)', ...json(z.object({ version: z.number().int(), queued: z.number().int() })) },
      ...errors, ...notFound, ...conflict('the list never had a material change'), ...idempotencyReused,
    },
  }), async (c) => c.json(await startReconsent(deps, c.req.valid('param').slug), 202));
  return app;
}
