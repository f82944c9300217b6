// Amazon SES events arrive as Amazon SNS HTTP(S) messages. Each is checked as the SNS
// documentation ("Verifying the signatures of Amazon SNS messages") says: the TopicArn is
// one of ours (SES_TOPIC_ARNS), the SigningCertURL is https on an SNS host
// (sns.<region>.amazonaws.com, or .amazonaws.com.cn), and the signature (SignatureVersion
// 1: SHA1withRSA, 2: SHA256withRSA) covers the listed fields in their fixed order.
//
// SNS keeps a message's Timestamp (its publish time) through every retry, and its default
// HTTP delivery policy retries within about a minute; a message older than an hour is
// refused as a replay. The certificate is fetched through the injected function (the
// caller's fetch, the test's fixture) and kept, a few at a time, by this receiver.
// A SubscriptionConfirmation is answered with the SubscribeURL to visit, host-checked the
// same way; this library fetches nothing itself.
import { verify, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { bodyText, parseJson, refuse, type Refusal, type WebhookRequest } from './providers.js';
import { sesReport } from './ses.js';
import type { InboundReport } from './types.js';

export interface SesSettings {
  /** SES_TOPIC_ARNS: the topics whose messages are accepted. */
  topicArns: readonly string[];
  /** Fetches a SigningCertURL, already checked to be https on an SNS host; resolves to the PEM text. */
  fetchCertificate: (url: string) => Promise<string>;
  /** Oldest publish time accepted. Default one hour. */
  maxAgeMs?: number;
  /** Signing certificates kept. Default 16 (SNS signs with one or two at a time per region). */
  maxCachedCertificates?: number;
}

export type SesOutcome =
  | { ok: true; type: 'notification'; reports: InboundReport[] }
  /** Visit `subscribeUrl` (GET) to confirm the subscription; it is https on an SNS host. */
  | { ok: true; type: 'subscription_confirmation'; topicArn: string; subscribeUrl: string; reports: [] }
  | { ok: true; type: 'unsubscribe_confirmation'; topicArn: string; reports: [] }
  | Refusal;

const DEFAULT_MAX_AGE_MS = 60 * 60 * 1000;
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const SNS_HOST = /^sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?$/;
const ALGORITHMS: Record<string, string> = { 1: 'sha1', 2: 'sha256' };
// SNS's canonical field order for each message type (the string to sign).
const SIGNED_FIELDS = {
  Notification: ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type'],
  SubscriptionConfirmation: ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'],
  UnsubscribeConfirmation: ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'],
} as const;

const SNS_MESSAGE = z.object({
  Type: z.enum(['Notification', 'SubscriptionConfirmation', 'UnsubscribeConfirmation']),
  MessageId: z.string(),
  TopicArn: z.string(),
  Message: z.string(),
  Timestamp: z.string(),
  SignatureVersion: z.string(),
  Signature: z.string(),
  SigningCertURL: z.string(),
  Subject: z.string().optional(),
  SubscribeURL: z.string().optional(),
  Token: z.string().optional(),
});
type SnsMessage = z.infer<typeof SNS_MESSAGE>;

/** Whether a URL is https on an SNS host (a certificate URL must also name a .pem file). */
export function isSnsUrl(text: string, options: { certificate: boolean }): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  return url.protocol === 'https:' && SNS_HOST.test(url.hostname) && url.port === '' && !url.username && !url.password
    && (!options.certificate || url.pathname.endsWith('.pem'));
}

export function createSesReceiver(settings: SesSettings): (request: WebhookRequest, now: number) => Promise<SesOutcome> {
  if (settings.topicArns.length === 0) throw new Error('at least one SNS topic ARN is needed');
  const topics = new Set(settings.topicArns);
  const certificates = certificateCache(settings.fetchCertificate, settings.maxCachedCertificates ?? 16);
  const maxAge = settings.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
  return async (request, now) => {
    const parsed = SNS_MESSAGE.safeParse(parseJson(bodyText(request.body)));
    if (!parsed.success) return refuse('missing_credentials', 'not a signed SNS message');
    const message = parsed.data;
    if (!topics.has(message.TopicArn)) return refuse('unknown_topic', 'SNS message from a topic not in SES_TOPIC_ARNS');
    if (!isSnsUrl(message.SigningCertURL, { certificate: true })) return refuse('untrusted_url', 'SigningCertURL is not https on an SNS host');
    const checked = await checkSignature(message, certificates, now);
    if (checked) return checked;
    const age = now - Date.parse(message.Timestamp);
    if (!(age <= maxAge && age >= -CLOCK_SKEW_MS)) return refuse('stale_timestamp', 'SNS message published outside the accepted window');
    return outcomeOf(message);
  };
}

async function checkSignature(message: SnsMessage, certificates: CertificateCache, now: number): Promise<Refusal | undefined> {
  const algorithm = ALGORITHMS[message.SignatureVersion];
  const signed = stringToSign(message);
  if (!algorithm || signed === undefined) return refuse('bad_signature', 'SNS message with an unknown SignatureVersion or missing signed fields');
  const certificate = await certificates.get(message.SigningCertURL);
  if (!certificate || !isValidAt(certificate, now)) {
    certificates.forget(message.SigningCertURL);
    return refuse('certificate_unusable', 'SNS signing certificate could not be fetched or is not valid now');
  }
  return verifies(algorithm, signed, certificate, message.Signature) ? undefined : refuse('bad_signature', 'SNS signature does not verify');
}

function verifies(algorithm: string, signed: string, certificate: X509Certificate, signature: string): boolean {
  try {
    return verify(algorithm, Buffer.from(signed, 'utf8'), certificate.publicKey, Buffer.from(signature, 'base64'));
  } catch {
    // A key type that cannot make such a signature, or a signature that is not one.
    return false;
  }
}

function stringToSign(message: SnsMessage): string | undefined {
  let text = '';
  for (const field of SIGNED_FIELDS[message.Type]) {
    const value = message[field];
    if (value === undefined) {
      if (field === 'Subject') continue;
      return undefined;
    }
    text += `${field}\n${value}\n`;
  }
  return text;
}

function isValidAt(certificate: X509Certificate, now: number): boolean {
  return Date.parse(certificate.validFrom) <= now && now <= Date.parse(certificate.validTo);
}

function outcomeOf(message: SnsMessage): SesOutcome {
  if (message.Type === 'SubscriptionConfirmation') {
    const url = message.SubscribeURL ?? '';
    if (!isSnsUrl(url, { certificate: false })) return refuse('untrusted_url', 'SubscribeURL is not https on an SNS host');
    return { ok: true, type: 'subscription_confirmation', topicArn: message.TopicArn, subscribeUrl: url, reports: [] };
  }
  if (message.Type === 'UnsubscribeConfirmation') return { ok: true, type: 'unsubscribe_confirmation', topicArn: message.TopicArn, reports: [] };
  const report = sesReport(parseJson(message.Message), message.MessageId);
  return { ok: true, type: 'notification', reports: report ? [report] : [] };
}

interface CertificateCache {
  get(url: string): Promise<X509Certificate | undefined>;
  forget(url: string): void;
}

/** Certificates by URL, the oldest dropped past `limit`; a failed fetch is not kept. */
function certificateCache(fetchCertificate: SesSettings['fetchCertificate'], limit: number): CertificateCache {
  const entries = new Map<string, Promise<X509Certificate | undefined>>();
  const forget = (url: string) => entries.delete(url);
  return {
    forget,
    get(url) {
      const cached = entries.get(url);
      if (cached) return cached;
      if (entries.size >= limit) forget(entries.keys().next().value!);
      const loading = Promise.resolve()
        .then(() => fetchCertificate(url))
        .then((pem) => new X509Certificate(pem))
        .catch(() => {
          forget(url);
          return undefined;
        });
      entries.set(url, loading);
      return loading;
    },
  };
}
