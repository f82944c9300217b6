// Middleware the public routes share: the per-IP limit, the body limit, the headers of pages
// whose URL holds a token, and the refusal of form posts made by another site's page.
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { DomainError } from '../errors.js';
import { clientIp } from './client.js';
import type { RateLimiter } from './rate-limit.js';

export const MAX_FORM_BYTES = 16 * 1024;

/** 429 with Retry-After once the client's bucket is empty; counted before the body is read. */
export function limitPerIp(limiter: RateLimiter | undefined, trustProxy: boolean): MiddlewareHandler {
  return async (c: Context, next) => {
    const wait = limiter?.take(clientIp(c, trustProxy) ?? 'unknown') ?? 0;
    if (wait > 0) {
      c.header('Retry-After', String(wait));
      throw new DomainError('rate_limited', 'too many requests from this address; try again later');
    }
    await next();
  };
}

export const limitBody = (maxSize = MAX_FORM_BYTES): MiddlewareHandler => bodyLimit({
  maxSize,
  onError: () => { throw new DomainError('payload_too_large', `the body may be at most ${maxSize} bytes`); },
});

/**
 * Text PostgreSQL can keep: no NUL (text columns refuse it) and no unpaired surrogate (UTF-8
 * cannot encode one: pg would quietly store U+FFFD, and jsonb refuses the escape). Checked at
 * the edge so such input is a 400 naming the field, not a 500 from the database.
 */
export const isStorableText = (text: string): boolean => !/[\0\p{Cs}]/u.test(text);
export const NOT_STORABLE = 'must not contain NUL characters or unpaired surrogates';

/** A URL holding a token must not leak it to other sites through Referer, nor sit in a cache. */
export const tokenPage: MiddlewareHandler = async (c, next) => {
  await next();
  c.header('Referrer-Policy', 'no-referrer');
  c.header('Cache-Control', 'no-store');
};

/**
 * Refuses a POST that another site's page made the browser send (Fetch Metadata). The signed
 * link is already the only key and no cookie exists to ride on; this also stops a page that
 * learnt a link from acting with it through the person's browser. Our own forms send
 * `same-origin`; mail clients' one-click POSTs and scripts send no such header. Origin cannot
 * serve here: under Referrer-Policy no-referrer our own forms send `Origin: null`.
 */
export const sameOriginForms: MiddlewareHandler = async (c, next) => {
  const site = c.req.header('sec-fetch-site');
  if (c.req.method === 'POST' && site !== undefined && site !== 'same-origin' && site !== 'none') {
    throw new DomainError('cross_site', 'this form can only be sent from its own page');
  }
  await next();
};
