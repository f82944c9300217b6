// What the four providers' webhooks have in common: the request they take, the refusal
// they give, and the checks they share. Each provider lives in its own file (ses.ts,
// postmark.ts, sendgrid.ts, mailgun.ts) and is built once from its settings, so a bad key
// fails at start-up, not on the first event:
//
//   const postmark = createPostmarkReceiver({ token: config.postmarkWebhookToken });
//   const outcome = postmark(request, clock());   // 401 unless outcome.ok
import { createHash, timingSafeEqual } from 'node:crypto';
import type { InboundReport } from './types.js';

/** The request as the HTTP layer received it: the body's exact bytes (signatures cover them). */
export interface WebhookRequest {
  body: string | Uint8Array;
  /** A fetch `Headers`, or anything that answers `get` the same way. */
  headers: { get(name: string): string | null };
}

export type RefusalReason =
  /** No signature, token or timestamp where the provider always sends one. */
  | 'missing_credentials'
  /** A token, signature or key that does not match. */
  | 'bad_signature'
  /** Signed too long ago (or too far ahead): a replay, or a clock badly off. */
  | 'stale_timestamp'
  /** SNS: a SigningCertURL or SubscribeURL that is not https on an SNS host. */
  | 'untrusted_url'
  /** SNS: the certificate could not be fetched, parsed, or is outside its validity. */
  | 'certificate_unusable'
  /** SNS: a TopicArn that is not one of SES_TOPIC_ARNS. */
  | 'unknown_topic'
  /** A body that is not what the provider sends (checked after the signature where it covers the body). */
  | 'malformed';

export interface Refusal {
  ok: false;
  reason: RefusalReason;
  /** One line for the log; holds no address and no secret. */
  message: string;
}

export type WebhookOutcome = { ok: true; reports: InboundReport[] } | Refusal;

/** Standard Webhooks' default tolerance, used for the providers that sign a request time. */
export const DEFAULT_TOLERANCE_MS = 5 * 60 * 1000;

export function refuse(reason: RefusalReason, message: string): Refusal {
  return { ok: false, reason, message };
}

export function bodyText(body: string | Uint8Array): string {
  return typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
}

export function bodyBytes(body: string | Uint8Array): Buffer {
  return typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/** JSON, or undefined for anything that does not parse. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Compares a presented secret with the expected one in constant time. Both are hashed
 * first, so neither the content nor the length of the secret leaks through timing.
 */
export function secretsEqual(presented: string | Uint8Array, expected: string | Uint8Array): boolean {
  const digest = (value: string | Uint8Array) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/** Whether a signed time (ms) is within `toleranceMs` of now, either way. */
export function isFresh(signedAtMs: number, nowMs: number, toleranceMs: number): boolean {
  return Number.isFinite(signedAtMs) && Math.abs(nowMs - signedAtMs) <= toleranceMs;
}

type ReportCore = Pick<InboundReport, 'provider' | 'reportId' | 'kind'>;

/** A report from a provider's event: what the event does not say is null or empty. */
export function providerReport(report: ReportCore & Partial<InboundReport>): InboundReport {
  return {
    ignoredBecause: null, status: null, diagnostic: null, recipients: [], feedbackType: null,
    originalMessageId: null, providerMessageId: null, verpCandidates: [], reportedAt: null, ...report,
  };
}
