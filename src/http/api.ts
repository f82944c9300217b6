// The marketers' API under /api/v1: JSON, snake_case, bearer keys. One zod schema per body
// gives the check, the TypeScript type and the OpenAPI document.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { createList, getList, listLists, type ListView, SIGNUP_FIELDS, updateList } from '../consent/lists.js';
import type { ListWithConsent } from '../consent/store.js';
import type { Deps } from '../deps.js';
import { DomainError } from '../errors.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** Compares digests, so neither the key's length nor its content leaks through timing. */
function bearerAuth(apiKey: string | undefined): MiddlewareHandler {
  const expected = apiKey === undefined ? undefined : sha256(apiKey);
  return async (c, next) => {
    const given = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '')?.[1];
    if (!expected || !given || !timingSafeEqual(sha256(given), expected)) {
      c.header('WWW-Authenticate', 'Bearer realm="assent"');
      throw new DomainError('unauthorized', 'a valid API key is required: Authorization: Bearer <key>');
    }
    await next();
  };
}

const ErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), fields: z.record(z.string(), z.string()).optional() }),
}).openapi('Error');

const Slug = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and dashes, at most 63');
const Fields = z.array(z.enum(SIGNUP_FIELDS)).max(SIGNUP_FIELDS.length)
  .openapi({ description: 'optional signup fields the list collects', example: ['first_name'] });
const ConsentText = z.string().trim().min(1).max(10_000).openapi({ description: 'the wording people agree to' });

const ListSchema = z.object({
  slug: z.string(),
  name: z.string(),
  fields: z.array(z.string()),
  consent_text: z.string(),
  consent_version: z.number().int(),
  counts: z.record(z.string(), z.number().int()).optional(),
}).openapi('List');

const CreateListSchema = z.object({
  slug: Slug,
  name: z.string().trim().min(1).max(200),
  consent_text: ConsentText,
  fields: Fields.optional(),
}).strict();

const UpdateListSchema = z.object({
  name: z.string().trim().min(1).max(200).optional(),
  consent_text: ConsentText.optional(),
  fields: Fields.optional(),
}).strict();

function listJson(list: ListWithConsent | ListView): z.infer<typeof ListSchema> {
  return {
    slug: list.slug,
    name: list.name,
    fields: list.fields,
    consent_text: list.consentText,
    consent_version: list.consentVersion,
    ...('counts' in list && { counts: list.counts }),
  };
}

const errors = {
  400: { description: 'invalid input', content: { 'application/json': { schema: ErrorSchema } } },
  401: { description: 'missing or wrong API key', content: { 'application/json': { schema: ErrorSchema } } },
} as const;

const json = <T extends z.ZodType>(schema: T) => ({ content: { 'application/json': { schema } } });

export function apiApp(deps: Deps): OpenAPIHono {
  const app = new OpenAPIHono({
    // Our 400 shape, with which field failed, instead of the raw zod result.
    defaultHook: (result) => {
      if (result.success) return;
      const fields: Record<string, string> = {};
      for (const issue of result.error.issues) fields[issue.path.join('.') || 'body'] ??= issue.message;
      throw new DomainError('invalid_input', 'the request is not valid', fields);
    },
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  app.use('/v1/*', bearerAuth(deps.config.apiKey));

  app.openapi(createRoute({
    method: 'post', path: '/v1/lists', summary: 'Create a list', security: [{ bearer: [] }],
    request: { body: { required: true, ...json(CreateListSchema) } },
    responses: { 201: { description: 'the list', ...json(ListSchema) }, ...errors, 409: { description: 'slug taken', ...json(ErrorSchema) } },
  }), async (c) => {
    const body = c.req.valid('json');
    const list = await createList(deps, { slug: body.slug, name: body.name, consentText: body.consent_text, fields: body.fields });
    return c.json(listJson(list), 201);
  });

  app.openapi(createRoute({
    method: 'get', path: '/v1/lists', summary: 'The lists, with counts by status', security: [{ bearer: [] }],
    responses: { 200: { description: 'the lists', ...json(z.object({ data: z.array(ListSchema) })) }, ...errors },
  }), async (c) => c.json({ data: (await listLists(deps)).map(listJson) }, 200));

  app.openapi(createRoute({
    method: 'get', path: '/v1/lists/{slug}', summary: 'One list', security: [{ bearer: [] }],
    request: { params: z.object({ slug: z.string() }) },
    responses: { 200: { description: 'the list', ...json(ListSchema) }, ...errors, 404: { description: 'no such list', ...json(ErrorSchema) } },
  }), async (c) => c.json(listJson(await getList(deps, c.req.valid('param').slug)), 200));

  app.openapi(createRoute({
    method: 'patch', path: '/v1/lists/{slug}', summary: 'Change a list; a new consent text becomes its current version',
    security: [{ bearer: [] }],
    request: { params: z.object({ slug: z.string() }), body: { required: true, ...json(UpdateListSchema) } },
    responses: { 200: { description: 'the list', ...json(ListSchema) }, ...errors, 404: { description: 'no such list', ...json(ErrorSchema) } },
  }), async (c) => {
    const body = c.req.valid('json');
    const list = await updateList(deps, c.req.valid('param').slug, { name: body.name, consentText: body.consent_text, fields: body.fields });
    return c.json(listJson(list), 200);
  });

  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'assent', version: '1', description: 'Double-opt-in subscriptions with proof of consent' },
    servers: [{ url: `${deps.config.publicUrl}/api` }],
  });
  return app;
}
