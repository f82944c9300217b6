// The HTTP application: one sub-app per audience, one error handler.
import { randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { routePath } from 'hono/route';
import { isDatabaseUnavailable } from '../db/database.js';
import type { Deps } from '../deps.js';
import { DomainError, type ErrorCode } from '../errors.js';
import { apiApp } from './api/index.js';
import { consentLogApp } from './consent-log.js';
import type { AppEnv } from './env.js';
import { type ErrorBody, STATUS } from './errors.js';
import { hooksApp, type HooksOptions } from './hooks.js';
import { metricsOnPublicPort, opsApp } from './ops.js';
import { Pages } from './pages.js';
import { preferencesApp } from './preferences.js';
import { publicApp } from './public.js';
import { reconsentApp } from './reconsent.js';

const PAGE_TITLES: Partial<Record<ErrorCode, [title: string, body?: string]>> = {
  list_not_found: ['page.error.not_found.title', 'page.error.list_not_found'],
  rate_limited: ['page.error.rate_limited.title', 'page.error.rate_limited.body'],
  payload_too_large: ['page.error.too_large.title', 'page.error.too_large.body'],
  unavailable: ['page.error.unavailable.title', 'page.error.unavailable.body'],
};

// 'unsafe-inline' for styles only: the API docs page carries its own small stylesheet.
const CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** What Hono and its validators throw, in our words; zod-openapi refuses a body that is not JSON with 415. */
const HTTP_EXCEPTIONS: Partial<Record<number, (exception: HTTPException) => DomainError>> = {
  400: (exception) => new DomainError('invalid_input', exception.message || 'the request is not valid'),
  413: () => new DomainError('payload_too_large', 'the body is too large'),
  415: () => new DomainError('unsupported_media_type', 'this body must be application/json'),
};

function toDomainError(error: unknown): DomainError | undefined {
  if (error instanceof DomainError) return error;
  const known = error instanceof HTTPException ? HTTP_EXCEPTIONS[error.status]?.(error) : undefined;
  if (known) return known;
  if (isDatabaseUnavailable(error)) return new DomainError('unavailable', 'the database is not reachable; try again shortly');
  return undefined;
}

export function createApp(deps: Deps, options: { hooks?: HooksOptions } = {}): Hono<AppEnv> {
  const pages = new Pages(deps.catalogues, { controller: deps.config.controller });
  const app = new Hono<AppEnv>();

  // One log line per request, under a request id the caller may pass (X-Request-Id). It names
  // the route pattern, never the path: paths carry tokens, and bodies carry addresses.
  app.use('*', async (c, next) => {
    const started = performance.now();
    const requestId = /^[\w.-]{1,64}$/.exec(c.req.header('x-request-id') ?? '')?.[0] ?? randomUUID();
    c.header('X-Request-Id', requestId);
    await next();
    const route = routePath(c);
    const seconds = (performance.now() - started) / 1000;
    deps.metrics.httpDuration.observe({ method: c.req.method, route, status: String(c.res.status) }, seconds);
    deps.log.info({ req_id: requestId, method: c.req.method, route, status: c.res.status, ms: Math.round(seconds * 1000) }, 'request');
  });

  // Pages hold no script of ours, so a policy that allows none turns any markup that ever
  // slipped through escaping into inert text; no page may be framed (clickjacking the erase
  // button) and forms may only post back to us.
  app.use('*', async (c, next) => {
    await next();
    c.header('X-Content-Type-Options', 'nosniff');
    if (c.res.headers.get('content-type')?.startsWith('text/html')) {
      c.header('Content-Security-Policy', CONTENT_SECURITY_POLICY);
      c.header('X-Frame-Options', 'DENY');
    }
  });

  app.route('/', opsApp(deps, { metrics: metricsOnPublicPort(deps.config) }));
  app.route('/api', apiApp(deps));
  app.route('/hooks', hooksApp(deps, options.hooks));
  app.route('/', consentLogApp(deps.consentLog));
  app.route('/', publicApp(deps, pages));
  app.route('/', preferencesApp(deps, pages));
  app.route('/', reconsentApp(deps, pages));

  app.notFound((c) => c.json({ error: { code: 'not_found', message: 'no such resource' } }, 404));

  app.onError((error, c) => {
    const domain = toDomainError(error);
    if (!domain) {
      deps.log.error({ err: error, method: c.req.method, route: routePath(c) }, 'unhandled error');
      return c.json({ error: { code: 'internal', message: 'something went wrong on our side' } }, 500);
    }
    const status = STATUS[domain.code];
    if (domain.code === 'unavailable') c.header('Retry-After', '5');
    // Landing pages' forms and recipients' pages get a page; the API and JSON signups get JSON.
    const isForm = !c.req.path.startsWith('/api/') && !c.get('wantsJson');
    if (!isForm) {
      const body: ErrorBody = { error: {
        code: domain.code, message: domain.message, ...(domain.fields && { fields: domain.fields }), ...(domain.details && { details: domain.details }),
      } };
      return c.json(body, status);
    }
    const [titleKey, bodyKey] = PAGE_TITLES[domain.code] ?? ['page.error.title'];
    const fields = Object.keys(domain.fields ?? {}).map((field) => `field.${field}`);
    return c.html(pages.render('error', c.get('locale') ?? 'en', { title_key: titleKey, body_key: bodyKey, fields }), status);
  });
  return app;
}
