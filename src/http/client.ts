import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import type { RequestContext } from '../consent/signup.js';

/**
 * The client's IP. Behind a reverse proxy (TRUST_PROXY) it is the right-most entry of
 * X-Forwarded-For: the one our proxy appended. Entries to its left come from the client and
 * could be anything.
 */
export function clientIp(c: Context, trustProxy: boolean): string | null {
  if (trustProxy) {
    const forwarded = c.req.header('x-forwarded-for')?.split(',').map((part) => part.trim()).filter(Boolean).at(-1);
    if (forwarded) return forwarded.slice(0, 64);
  }
  try {
    return getConnInfo(c).remote.address ?? null;
  } catch {
    return null; // not behind a Node socket (app.request in tests)
  }
}

const header = (c: Context, name: string, max: number) => c.req.header(name)?.slice(0, max) ?? null;

/** The evidence of who asked: IP, browser, and the page whose form posted. */
export function requestContext(c: Context, trustProxy: boolean): RequestContext {
  return {
    ip: clientIp(c, trustProxy),
    userAgent: header(c, 'user-agent', 512),
    page: header(c, 'referer', 2048) ?? header(c, 'origin', 2048),
  };
}
