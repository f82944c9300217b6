// /api/v1/lists/{slug}/imports and /api/v1/imports/{id}
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Deps } from '../../deps.js';
import { UUID } from '../../domain.js';
import { DomainError } from '../../errors.js';
import { getImport, startImport } from '../../imports/imports.js';
import { type ApiEnv, apiRoutes } from './env.js';
import { ErrorSchema, errors, json, notFound, plain, security, text } from './schemas.js';

const FORMATS: Record<string, 'csv' | 'ndjson'> = { 'text/csv': 'csv', 'application/x-ndjson': 'ndjson' };

const ImportSchema = z.object({
  id: z.string(),
  list: z.string(),
  format: z.enum(['csv', 'ndjson']),
  file_sha256: z.string(),
  status: z.enum(['running', 'finished', 'failed']),
  rows_read: z.number().int(),
  imported: z.number().int().openapi({ description: 'rows that brought their consent: now confirmed' }),
  pending: z.number().int().openapi({ description: 'rows without consent: sent the confirmation mail' }),
  unchanged: z.number().int().openapi({ description: 'already confirmed, or already pending (a file imported twice)' }),
  rejected: z.number().int(),
  rejections: z.array(z.object({ line: z.number().int(), reason: z.string() })),
  error: z.string().nullable(),
  created_at: z.string(),
  finished_at: z.string().nullable(),
}).openapi('Import');

export function importsApp(deps: Deps): { lists: OpenAPIHono<ApiEnv>; imports: OpenAPIHono<ApiEnv> } {
  const lists = apiRoutes();
  // The body is read as a stream (not through a zod body schema, which would hold it whole).
  lists.openapi(createRoute({
    method: 'post', path: '/{slug}/imports', security,
    summary: 'Import a CSV (header row) or NDJSON file into the list; progress at GET /api/v1/imports/{id}',
    request: { params: z.object({ slug: text().openapi({ param: { name: 'slug', in: 'path' } }) }) },
    responses: {
      202: { description: 'the import started', ...json(z.object({ id: z.string() })) }, ...errors, ...notFound,
      415: { description: 'neither text/csv nor application/x-ndjson', ...json(ErrorSchema) },
      422: { description: 'no email column: nothing was written', ...json(ErrorSchema) },
    },
  }), async (c) => {
    const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase() ?? '';
    const format = FORMATS[type];
    if (!format) throw new DomainError('unsupported_media_type', 'send text/csv or application/x-ndjson');
    const body = c.req.raw.body;
    if (!body) throw new DomainError('import_invalid', 'the body is empty', { body: 'empty' });
    const started = await startImport(deps, { listSlug: c.req.valid('param').slug, format, body, apiKey: c.get('apiKey').name });
    started.done.catch((error: unknown) => deps.log.error({ err: error, import_id: started.id }, 'import failed'));
    return c.json({ id: started.id }, 202);
  });

  const imports = apiRoutes();
  imports.openapi(createRoute({
    method: 'get', path: '/{id}', summary: 'An import\'s progress, counts, and rejected rows by line', security,
    request: { params: z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' }, format: 'uuid' }) }) },
    responses: { 200: { description: 'the import', ...json(ImportSchema) }, ...errors, ...notFound },
  }), async (c) => {
    const { id } = c.req.valid('param');
    if (!UUID.test(id)) throw new DomainError('import_not_found', 'there is no such import');
    return c.json(plain(await getImport(deps, id)), 200);
  });
  return { lists, imports };
}
