// SendGrid's Event Webhook, signed: an ECDSA P-256 signature (SHA-256) over the timestamp
// header followed by the body's exact bytes, in X-Twilio-Email-Event-Webhook-Signature
// (base64 DER) and X-Twilio-Email-Event-Webhook-Timestamp (seconds). SENDGRID_WEBHOOK_KEY
// is the verification key SendGrid shows, base64 DER (SubjectPublicKeyInfo) or PEM. Each
// POST is signed when it is sent, retries included, so a timestamp more than five minutes
// off is a replay (or a clock to fix), and is refused.
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { confirmPermanent, findStatus, hashedId, normaliseDiagnostic, normaliseMessageId, parseDate } from './classify.js';
import {
  bodyBytes, DEFAULT_TOLERANCE_MS, isFresh, parseJson, providerReport, refuse, type WebhookOutcome, type WebhookRequest,
} from './providers.js';
import type { InboundReport } from './types.js';

export interface SendGridSettings {
  /** SENDGRID_WEBHOOK_KEY: base64 DER or PEM. */
  publicKey: string;
  toleranceMs?: number;
}

const SIGNATURE_HEADER = 'x-twilio-email-event-webhook-signature';
const TIMESTAMP_HEADER = 'x-twilio-email-event-webhook-timestamp';

const EVENT = z.object({
  event: z.string(),
  email: z.string().optional(),
  timestamp: z.number().optional(),
  'smtp-id': z.string().optional(),
  sg_event_id: z.string().optional(),
  sg_message_id: z.string().optional(),
  type: z.string().optional(),
  status: z.string().optional(),
  reason: z.string().optional(),
  response: z.string().optional(),
  verp: z.string().optional(),
});
type SendGridEvent = z.infer<typeof EVENT>;

export function createSendGridReceiver(settings: SendGridSettings): (request: WebhookRequest, now: number) => WebhookOutcome {
  const key = publicKeyFrom(settings.publicKey);
  const tolerance = settings.toleranceMs ?? DEFAULT_TOLERANCE_MS;
  return (request, now) => {
    const signature = request.headers.get(SIGNATURE_HEADER);
    const timestamp = request.headers.get(TIMESTAMP_HEADER);
    if (!signature || !timestamp) return refuse('missing_credentials', 'no SendGrid signature or timestamp');
    const body = bodyBytes(request.body);
    const signed = Buffer.concat([Buffer.from(timestamp, 'utf8'), body]);
    if (!verifies(key, signed, signature)) return refuse('bad_signature', 'SendGrid signature does not verify');
    if (!/^\d{1,12}$/.test(timestamp) || !isFresh(Number(timestamp) * 1000, now, tolerance)) {
      return refuse('stale_timestamp', 'SendGrid timestamp outside the tolerance');
    }
    const events = z.array(z.unknown()).safeParse(parseJson(body.toString('utf8')));
    if (!events.success) return refuse('malformed', 'not a SendGrid event array');
    const reports = events.data.flatMap((item) => {
      const event = EVENT.safeParse(item);
      return event.success ? sendGridReport(event.data) ?? [] : [];
    });
    return { ok: true, reports };
  };
}

function publicKeyFrom(text: string): KeyObject {
  return text.includes('-----BEGIN')
    ? createPublicKey(text)
    : createPublicKey({ key: Buffer.from(text.replace(/\s+/g, ''), 'base64'), format: 'der', type: 'spki' });
}

function verifies(key: KeyObject, data: Buffer, signature: string): boolean {
  try {
    return verify('sha256', data, key, Buffer.from(signature, 'base64'));
  } catch {
    // A signature that is not DER at all.
    return false;
  }
}

function sendGridReport(event: SendGridEvent): InboundReport | undefined {
  const verdict = eventVerdict(event);
  if (!verdict) return undefined;
  const diagnostic = normaliseDiagnostic(event.reason ?? event.response);
  const status = findStatus(event.status) ?? findStatus(diagnostic);
  const kind = verdict === 'bounce' ? confirmPermanent(status, diagnostic) : verdict;
  const failure = kind === 'permanent' || kind === 'temporary';
  return providerReport({
    provider: 'sendgrid',
    reportId: event.sg_event_id ? `sendgrid:${event.sg_event_id}` : hashedId('sendgrid', 'event', JSON.stringify(event)),
    kind,
    ignoredBecause: kind === 'not_a_report' ? 'other_event' : null,
    status: failure ? status : null,
    diagnostic: failure || kind === 'delivered' ? diagnostic : null,
    recipients: event.email ? [event.email] : [],
    feedbackType: kind === 'complaint' ? 'abuse' : null,
    originalMessageId: normaliseMessageId(event['smtp-id']),
    providerMessageId: event.sg_message_id ?? null,
    verpCandidates: event.verp ? [event.verp] : [],
    reportedAt: event.timestamp === undefined ? null : parseDate(event.timestamp * 1000),
  });
}

/**
 * SendGrid's events in our words: `bounce` of type `blocked` and `deferred` are temporary
 * by SendGrid's own definition; `dropped` is SendGrid not sending to an address already on
 * one of its lists (a bounce, a spam report) or to one it finds invalid; other drops are
 * about our mail, and opens, clicks and the like are no reports.
 */
function eventVerdict(event: SendGridEvent): 'bounce' | 'temporary' | 'complaint' | 'delivered' | 'not_a_report' | undefined {
  switch (event.event) {
    case 'bounce': return event.type === 'blocked' ? 'temporary' : 'bounce';
    case 'deferred': return 'temporary';
    case 'spamreport': return 'complaint';
    case 'delivered': return 'delivered';
    case 'dropped':
      if (/bounced address|invalid/i.test(event.reason ?? '')) return 'bounce';
      if (/spam report/i.test(event.reason ?? '')) return 'complaint';
      return 'not_a_report';
    default: return undefined;
  }
}
