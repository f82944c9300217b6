// The marketers' API under /api/v1: JSON, snake_case, bearer keys. One zod schema per body
// gives the check, the TypeScript type and the OpenAPI document.
import { OpenAPIHono } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import type { Deps } from '../../deps.js';
import { DomainError } from '../../errors.js';
import { type ApiKeyIdentity, ApiKeyVerifier } from '../../keys/keys.js';
import { limitBody } from '../guards.js';
import { renderApiDocs } from './docs.js';
import { campaignRoutes } from './campaigns.js';
import { idempotency } from './idempotency.js';
import { listRoutes } from './lists.js';
import { subscriberRoutes } from './subscribers.js';

export type ApiEnv = { Variables: { apiKey: ApiKeyIdentity } };

function bearerAuth(verifier: ApiKeyVerifier): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const presented = /^Bearer\s+(\S{1,512})\s*$/i.exec(c.req.header('authorization') ?? '')?.[1];
    const identity = presented === undefined ? undefined : await verifier.verify(presented);
    if (!identity) {
      c.header('WWW-Authenticate', 'Bearer realm="assent"');
      throw new DomainError('unauthorized', 'a valid API key is required: Authorization: Bearer <key>');
    }
    c.set('apiKey', identity);
    await next();
  };
}

/**
 * The largest body the API reads: JSON is parsed, and hashed for Idempotency-Key, whole. A
 * campaign of MAX_MJML_CHARS characters fits even with every one escaped as \uXXXX (600 kB);
 * 12 MB of JSON with a million keys had held the event loop for 3.4 s.
 */
const MAX_API_BODY_BYTES = 1024 * 1024;
/** Bodies the contract says are streamed (imports): not read whole, so not capped here. */
const STREAMED_TYPES = ['text/csv', 'application/x-ndjson'];

function limitApiBody(): MiddlewareHandler<ApiEnv> {
  const limit = limitBody(MAX_API_BODY_BYTES);
  return (c, next) => {
    const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase() ?? '';
    return STREAMED_TYPES.includes(type) ? next() : limit(c, next);
  };
}

export function apiApp(deps: Deps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>({
    // Our 400 shape, naming each field that failed, instead of the raw zod result.
    defaultHook: (result) => {
      if (result.success) return;
      const fields: Record<string, string> = {};
      for (const issue of result.error.issues) fields[issue.path.join('.') || 'body'] ??= issue.message;
      throw new DomainError('invalid_input', 'the request is not valid', fields);
    },
  });
  const verifier = new ApiKeyVerifier(deps.db, deps.clock, deps.config.apiKey, (error) => deps.log.warn({ err: error }, 'could not record key use'));
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  app.use('/v1/*', bearerAuth(verifier));
  app.use('/v1/*', limitApiBody());
  // A preview changes nothing and quotes the person: nothing to replay, nothing to keep.
  app.use('/v1/*', idempotency(deps.db, { skip: (path) => path.endsWith('/preview') }));

  listRoutes(app, deps);
  subscriberRoutes(app, deps);
  campaignRoutes(app, deps);

  const info = { title: 'assent', version: '1', description: 'Double-opt-in subscriptions with proof of consent' };
  app.doc31('/openapi.json', { openapi: '3.1.0', info, servers: [{ url: `${deps.config.publicUrl}/api` }] });
  app.get('/docs', (c) => c.html(renderApiDocs(app.getOpenAPI31Document({ openapi: '3.1.0', info }) as never)));
  return app;
}
