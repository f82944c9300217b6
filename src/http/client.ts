import { isIPv4, isIPv6 } from 'node:net';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import type { RequestContext } from '../domain.js';

/**
 * One spelling per address: IPv6 lower-case and compressed as RFC 5952 §4 says (the WHATWG URL
 * serializer does exactly that), without brackets, port or zone; IPv4-mapped IPv6
 * (`::ffff:192.0.2.1`, which a dual-stack socket reports for every IPv4 client) as the IPv4
 * address it is. Undefined for anything that is not an IP address.
 */
export function canonicalIp(text: string): string | undefined {
  let ip = text.trim();
  const bracketed = /^\[([^\]]*)\](?::\d{1,5})?$/.exec(ip);
  if (bracketed) ip = bracketed[1]!;
  else if (/^[\d.]+:\d{1,5}$/.test(ip)) ip = ip.slice(0, ip.indexOf(':')); // IPv4 with a port
  ip = ip.replace(/%[^%]*$/, ''); // an IPv6 zone (`%eth0`) names our interface, not the client
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip)) return undefined;
  const compressed = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(compressed);
  if (!mapped) return compressed;
  const [high, low] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

/**
 * The client as a rate limit counts it: an IPv4 address, or the /64 an IPv6 address is in.
 * One subscriber line or host gets a whole /64 (RFC 6177), so counting single IPv6 addresses
 * would give one client 2^64 buckets.
 */
export function clientNetwork(ip: string): string {
  const canonical = canonicalIp(ip);
  if (canonical === undefined || !canonical.includes(':')) return canonical ?? ip;
  const [head = '', tail = ''] = canonical.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const groups = canonical.includes('::')
    ? [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups]
    : headGroups;
  return `${canonicalIp(`${groups.slice(0, 4).join(':')}::`)}/64`;
}

/**
 * The client's IP, canonical (canonicalIp). Behind a reverse proxy (TRUST_PROXY) it is the
 * right-most entry of X-Forwarded-For: the one our proxy appended. Entries to its left come
 * from the client and could be anything. What is not an IP address is kept as it came (cut
 * to 64 characters), so the evidence shows what the proxy said.
 */
export function clientIp(c: Context, trustProxy: boolean): string | null {
  if (trustProxy) {
    const forwarded = c.req.header('x-forwarded-for')?.split(',').map((part) => part.trim()).filter(Boolean).at(-1);
    if (forwarded) return canonicalIp(forwarded) ?? forwarded.slice(0, 64);
  }
  try {
    const address = getConnInfo(c).remote.address;
    return address === undefined ? null : canonicalIp(address) ?? address;
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
