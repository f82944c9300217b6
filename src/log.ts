// Logs are JSON lines (pino) that never hold a subscriber's address. Every line passes one
// last filter before it is written: anything shaped like an address becomes a short keyed
// tag, so a stray error message (a relay's "550 <x@y> unknown", a database constraint
// detail) cannot leak one either. The tag is an HMAC under the first token secret: support
// can find a person's lines with `assent log-tag ADDRESS`, nobody can reverse it.
import { createHmac } from 'node:crypto';
import { type DestinationStream, pino, type Logger } from 'pino';

// Local part, @, at least two dot-separated labels; Unicode letters too (IDN addresses).
const ADDRESS = /[\p{L}\p{N}.!#$%&'*+/=?^_`{|}~-]+@[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?)+/gu;

/** A short, stable, keyed stand-in for an address in logs. */
export function addressTag(secret: string, address: string): string {
  const digest = createHmac('sha256', secret).update(`log-tag\0${address.trim().toLowerCase()}`).digest('base64url');
  return `addr#${digest.slice(0, 12)}`;
}

/** `text` with every address in it replaced by its tag. */
function redactAddresses(secret: string, text: string): string {
  return text.replace(ADDRESS, (address) => addressTag(secret, address));
}

export function jsonLogger(options: { level: string; secret: string }, destination?: DestinationStream): Logger {
  return pino({
    level: options.level,
    base: { service: 'assent' },
    hooks: { streamWrite: (line) => (line.includes('@') ? redactAddresses(options.secret, line) : line) },
  }, destination);
}
