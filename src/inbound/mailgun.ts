// Mailgun's webhooks (the JSON ones): `{"signature": {timestamp, token, signature},
// "event-data": {…}}`, signed with HMAC-SHA256 of timestamp + token under the webhook
// signing key (MAILGUN_SIGNING_KEY), hex. Mailgun signs each POST with a fresh token and
// time, so a timestamp more than five minutes off is refused; a replay within those
// minutes carries the same event id, which the caller handles once.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { confirmPermanent, findStatus, hashedId, normaliseDiagnostic, normaliseMessageId, parseDate } from './classify.js';
import {
  bodyText, DEFAULT_TOLERANCE_MS, isFresh, parseJson, providerReport, refuse, type WebhookOutcome, type WebhookRequest,
} from './providers.js';
import type { InboundReport } from './types.js';

export interface MailgunSettings {
  /** MAILGUN_SIGNING_KEY: the "HTTP webhook signing key" of the Mailgun account. */
  signingKey: string;
  toleranceMs?: number;
}

const PAYLOAD = z.object({
  signature: z.object({ timestamp: z.union([z.string(), z.number()]), token: z.string(), signature: z.string() }),
  'event-data': z.unknown(),
});

const EVENT = z.object({
  event: z.string(),
  id: z.string().optional(),
  timestamp: z.number().optional(),
  recipient: z.string().optional(),
  severity: z.string().optional(),
  reason: z.string().optional(),
  'delivery-status': z.object({
    code: z.union([z.number(), z.string()]).nullish(),
    'enhanced-code': z.string().nullish(),
    message: z.string().nullish(),
    description: z.string().nullish(),
  }).nullish(),
  message: z.object({ headers: z.record(z.string(), z.unknown()).optional() }).optional(),
  envelope: z.object({ sender: z.string().optional() }).optional(),
  'user-variables': z.unknown().optional(),
});
type MailgunEvent = z.infer<typeof EVENT>;

export function createMailgunReceiver(settings: MailgunSettings): (request: WebhookRequest, now: number) => WebhookOutcome {
  if (!settings.signingKey) throw new Error('a Mailgun signing key is needed');
  const tolerance = settings.toleranceMs ?? DEFAULT_TOLERANCE_MS;
  return (request, now) => {
    const payload = PAYLOAD.safeParse(parseJson(bodyText(request.body)));
    if (!payload.success) return refuse('missing_credentials', 'no Mailgun signature in the body');
    const { timestamp, token, signature } = payload.data.signature;
    const expected = createHmac('sha256', settings.signingKey).update(`${timestamp}${token}`).digest();
    const presented = Buffer.from(signature, 'hex');
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      return refuse('bad_signature', 'Mailgun signature does not verify');
    }
    if (!isFresh(Number(timestamp) * 1000, now, tolerance)) return refuse('stale_timestamp', 'Mailgun timestamp outside the tolerance');
    // The signature covers the timestamp and token only, not the event: Mailgun's scheme.
    const event = EVENT.safeParse(payload.data['event-data']);
    if (!event.success) return refuse('malformed', 'not a Mailgun event');
    const report = mailgunReport(event.data);
    return { ok: true, reports: report ? [report] : [] };
  };
}

function mailgunReport(event: MailgunEvent): InboundReport | undefined {
  const kind = eventKind(event);
  if (!kind) return undefined;
  const delivery = event['delivery-status'];
  const diagnostic = normaliseDiagnostic([delivery?.code, delivery?.message || delivery?.description].filter(Boolean).join(' '));
  const status = delivery?.['enhanced-code'] ?? findStatus(diagnostic);
  const failure = kind === 'permanent' || kind === 'temporary';
  const variables = event['user-variables'];
  const verp = typeof variables === 'object' && variables !== null && 'verp' in variables ? variables.verp : undefined;
  const messageId = event.message?.headers?.['message-id'];
  return providerReport({
    provider: 'mailgun',
    reportId: event.id ? `mailgun:${event.id}` : hashedId('mailgun', 'event', JSON.stringify(event)),
    kind,
    ignoredBecause: kind === 'not_a_report' ? 'other_event' : null,
    status: failure ? status : null,
    diagnostic: failure || kind === 'delivered' ? diagnostic : null,
    recipients: event.recipient ? [event.recipient] : [],
    originalMessageId: normaliseMessageId(typeof messageId === 'string' ? messageId : null),
    verpCandidates: [event.envelope?.sender, typeof verp === 'string' ? verp : undefined].filter((value): value is string => !!value),
    reportedAt: event.timestamp === undefined ? null : parseDate(event.timestamp * 1000),
  });
}

/**
 * `failed` with severity temporary is Mailgun still retrying: temporary whatever the code.
 * A permanent one is checked against our exceptions; Mailgun's suppress-* reasons say the
 * address was already on one of its lists.
 */
function eventKind(event: MailgunEvent): InboundReport['kind'] | undefined {
  if (event.event === 'complained') return 'complaint';
  if (event.event === 'delivered') return 'delivered';
  if (event.event !== 'failed') return undefined;
  if (event.reason === 'suppress-complaint') return 'complaint';
  if (event.reason === 'suppress-unsubscribe') return 'not_a_report';
  if (event.severity !== 'permanent') return 'temporary';
  const delivery = event['delivery-status'];
  return confirmPermanent(delivery?.['enhanced-code'] ?? findStatus(delivery?.message), delivery?.message ?? null);
}
