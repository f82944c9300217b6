// Middleware the public routes share: the per-IP limit, the body limit, and the headers of
// pages whose URL holds a token.
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

export const limitBody = (): MiddlewareHandler => bodyLimit({
  maxSize: MAX_FORM_BYTES,
  onError: () => { throw new DomainError('payload_too_large', `the body may be at most ${MAX_FORM_BYTES} bytes`); },
});

/** A URL holding a token must not leak it to other sites through Referer, nor sit in a cache. */
export const tokenPage: MiddlewareHandler = async (c, next) => {
  await next();
  c.header('Referrer-Policy', 'no-referrer');
  c.header('Cache-Control', 'no-store');
};
