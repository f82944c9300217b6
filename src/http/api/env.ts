// What every sub-app of the marketers' API shares: the context it runs in, and how a request
// that fails its schema is answered. Each resource's routes are a sub-app of their own
// (lists.ts, subscribers.ts, campaigns.ts), mounted by index.ts with app.route().
import { OpenAPIHono } from '@hono/zod-openapi';
import { DomainError } from '../../errors.js';
import type { ApiKeyIdentity } from '../../keys/keys.js';

/** Set by index.ts's bearer check before any route runs. */
export type ApiEnv = { Variables: { apiKey: ApiKeyIdentity } };

/** An app for API routes: a body, query or parameter that fails its zod schema is our 400, naming each field. */
export function apiRoutes(): OpenAPIHono<ApiEnv> {
  return new OpenAPIHono<ApiEnv>({
    // Our 400 shape, naming each field that failed, instead of the raw zod result.
    defaultHook: (result) => {
      if (result.success) return;
      const fields: Record<string, string> = {};
      for (const issue of result.error.issues) fields[issue.path.join('.') || 'body'] ??= issue.message;
      throw new DomainError('invalid_input', 'the request is not valid', fields);
    },
  });
}
