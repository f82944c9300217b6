// Standard Webhooks (github.com/standard-webhooks/standard-webhooks, spec.md "Signature
// scheme"): HMAC-SHA256 over `${webhook-id}.${webhook-timestamp}.${body}` with the secret's
// bytes (base64 after the `whsec_` prefix), sent as `v1,<base64>`. Receivers verify with the
// `standardwebhooks` package (test/webhooks.test.ts does exactly that); signing is three lines
// of node:crypto, so the service does not need that package at run time.
import { createHmac, randomBytes } from 'node:crypto';

const PREFIX = 'whsec_';

/** A new endpoint's secret: 24 random bytes (the spec asks for 24 to 64), shown once. */
export function newWebhookSecret(): string {
  return PREFIX + randomBytes(24).toString('base64');
}

export function signWebhook(secret: string, message: { id: string; timestamp: number; body: string }): string {
  const key = Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, 'base64');
  const mac = createHmac('sha256', key).update(`${message.id}.${message.timestamp}.${message.body}`).digest('base64');
  return `v1,${mac}`;
}

/** The three headers of one attempt; the timestamp is the attempt's, in seconds. */
export function webhookHeaders(secret: string, message: { id: string; timestamp: number; body: string }): Record<string, string> {
  return {
    'webhook-id': message.id,
    'webhook-timestamp': String(message.timestamp),
    'webhook-signature': signWebhook(secret, message),
  };
}
