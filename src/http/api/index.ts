// The marketers' API under /api/v1: JSON, snake_case, bearer keys. One zod schema per body
// gives the check, the TypeScript type and the OpenAPI document.
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import type { Deps } from '../../deps.js';
import { DomainError } from '../../errors.js';
import { ApiKeyVerifier } from '../../keys/keys.js';
import { clientIp } from '../client.js';
import { limitBody } from '../guards.js';
import { RateLimiter } from '../rate-limit.js';
import { campaignsApp } from './campaigns.js';
import { consentApp } from './consent.js';
import { renderApiDocs } from './docs.js';
import { type ApiEnv, apiRoutes } from './env.js';
import { idempotency } from './idempotency.js';
import { inboundApp } from './inbound.js';
import { importsApp } from './imports.js';
import { listsApp } from './lists.js';
import { subscribersApp } from './subscribers.js';
import { webhooksApp } from './webhooks.js';

/**
 * 401 without a valid key. A wrong secret behind a real prefix costs an argon2 verification
 * (tens of milliseconds), so failures are counted per client (API_AUTH_FAILURE_LIMIT, a
 * token bucket like the signup's): a client that used them up gets 429 before any argon2
 * runs. Only failures count, and a key known without argon2 (ASSENT_API_KEY, or one verified
 * lately) passes even then, so an honest client is never slowed, not even behind the same
 * address as a guesser.
 */
function bearerAuth(verifier: ApiKeyVerifier, deps: Pick<Deps, 'config' | 'clock'>): MiddlewareHandler<ApiEnv> {
  const failures = deps.config.apiAuthFailureLimit ? new RateLimiter(deps.config.apiAuthFailureLimit, deps.clock) : undefined;
  return async (c, next) => {
    const presented = /^Bearer\s+(\S{1,512})\s*$/i.exec(c.req.header('authorization') ?? '')?.[1];
    const client = clientIp(c, deps.config.trustProxy) ?? 'unknown';
    let identity = presented === undefined ? undefined : verifier.recall(presented);
    if (!identity) {
      const wait = failures?.wait(client) ?? 0;
      if (wait > 0) {
        c.header('Retry-After', String(wait));
        throw new DomainError('rate_limited', 'too many failed authentications from this address; try again later');
      }
      identity = presented === undefined ? undefined : await verifier.verify(presented);
    }
    if (!identity) {
      failures?.take(client);
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
  const app = apiRoutes();
  const verifier = new ApiKeyVerifier(deps.db, deps.clock, deps.config.apiKey, (error) => deps.log.warn({ err: error }, 'could not record key use'));
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  app.use('/v1/*', bearerAuth(verifier, deps));
  app.use('/v1/*', limitApiBody());
  // A preview changes nothing and quotes the person: nothing to replay, nothing to keep.
  // An import's body is streamed, never held to be hashed; the same file twice imports nothing new anyway.
  app.use('/v1/*', idempotency(deps.db, { skip: (path) => path.endsWith('/preview') || path.endsWith('/imports') }));

  // One sub-app per resource; each brings its paths and schemas into this app's OpenAPI document.
  app.route('/v1/lists', listsApp(deps));
  app.route('/v1/subscribers', subscribersApp(deps));
  app.route('/v1/subscribers', consentApp(deps));
  app.route('/v1/campaigns', campaignsApp(deps));
  app.route('/v1/inbound', inboundApp(deps));
  app.route('/v1/webhooks', webhooksApp(deps));
  const imports = importsApp(deps);
  app.route('/v1/lists', imports.lists);
  app.route('/v1/imports', imports.imports);

  const info = { title: 'assent', version: '1', description: 'Double-opt-in subscriptions with proof of consent' };
  app.doc31('/openapi.json', { openapi: '3.1.0', info, servers: [{ url: `${deps.config.publicUrl}/api` }] });
  app.get('/docs', (c) => c.html(renderApiDocs(app.getOpenAPI31Document({ openapi: '3.1.0', info }) as never)));
  return app;
}
