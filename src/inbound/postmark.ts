// Postmark's bounce, spam-complaint and delivery webhooks. Postmark does not sign its
// calls; it sends the credentials written into the webhook URL as HTTP Basic auth. So the
// webhook is set up as https://postmark:<POSTMARK_WEBHOOK_TOKEN>@<host>/hooks/postmark and
// the password is checked (the user name is not). Nothing signs a time, so a captured call
// can be replayed: it then carries the same record ID, and the caller handles a report id
// once.
import { z } from 'zod';
import { bareAddress, confirmPermanent, findStatus, hashedId, normaliseDiagnostic, parseDate } from './classify.js';
import {
  bodyText, parseJson, providerReport, refuse, secretsEqual, type WebhookOutcome, type WebhookRequest,
} from './providers.js';
import type { IgnoredBecause, InboundReport } from './types.js';

export interface PostmarkSettings {
  /** POSTMARK_WEBHOOK_TOKEN: the password of the webhook URL's Basic auth. */
  token: string;
}

const RECORD = z.object({
  RecordType: z.string(),
  ID: z.union([z.number(), z.string()]).optional(),
  Type: z.string().optional(),
  MessageID: z.string().optional(),
  Email: z.string().optional(),
  Recipient: z.string().optional(),
  Details: z.string().nullish(),
  Description: z.string().nullish(),
  BouncedAt: z.string().optional(),
  DeliveredAt: z.string().optional(),
  Metadata: z.record(z.string(), z.unknown()).nullish(),
});
type PostmarkRecord = z.infer<typeof RECORD>;

// Postmark's bounce types (its "Bounce types" reference) in our words. What is not here
// (Subscribe, Unsubscribe, AddressChange, OpenRelayTest, VirusNotification,
// ManuallyDeactivated, Unconfirmed, SMTPApiError, InboundError, TemplateRenderingFailed)
// says nothing about the address.
const BOUNCE_TYPES: Record<string, 'permanent' | 'temporary' | 'complaint' | IgnoredBecause> = {
  HardBounce: 'permanent', BadEmailAddress: 'permanent',
  SoftBounce: 'temporary', Transient: 'temporary', DnsError: 'temporary', Blocked: 'temporary',
  SpamNotification: 'temporary', DMARCPolicy: 'temporary', Unknown: 'temporary',
  SpamComplaint: 'complaint',
  AutoResponder: 'auto_reply', ChallengeVerification: 'challenge_response',
};

export function createPostmarkReceiver(settings: PostmarkSettings): (request: WebhookRequest) => WebhookOutcome {
  if (!settings.token) throw new Error('a Postmark webhook token is needed');
  return (request) => {
    const password = basicPassword(request.headers.get('authorization'));
    if (password === undefined) return refuse('missing_credentials', 'no Basic credentials on a Postmark webhook');
    if (!secretsEqual(password, settings.token)) return refuse('bad_signature', 'wrong Postmark webhook token');
    const record = RECORD.safeParse(parseJson(bodyText(request.body)));
    if (!record.success) return refuse('malformed', 'not a Postmark webhook record');
    const report = postmarkReport(record.data);
    return { ok: true, reports: report ? [report] : [] };
  };
}

function basicPassword(header: string | null): string | undefined {
  const encoded = /^\s*basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '')?.[1];
  if (!encoded) return undefined;
  const credentials = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = credentials.indexOf(':');
  return colon < 0 ? undefined : credentials.slice(colon + 1);
}

function postmarkReport(record: PostmarkRecord): InboundReport | undefined {
  const common = {
    provider: 'postmark' as const,
    providerMessageId: record.MessageID ?? null,
    verpCandidates: typeof record.Metadata?.verp === 'string' ? [record.Metadata.verp] : [],
  };
  if (record.RecordType === 'Delivery') {
    return providerReport({
      ...common, kind: 'delivered',
      reportId: hashedId('postmark', 'delivery', `${record.MessageID ?? ''}\0${record.Recipient ?? ''}`),
      recipients: record.Recipient ? [record.Recipient] : [],
      diagnostic: normaliseDiagnostic(record.Details), reportedAt: parseDate(record.DeliveredAt),
    });
  }
  if (record.RecordType !== 'Bounce' && record.RecordType !== 'SpamComplaint') return undefined;
  // The record type and Type decide, not TypeCode: Postmark's own sample complaint says 512.
  const verdict = record.RecordType === 'SpamComplaint' ? 'complaint' : BOUNCE_TYPES[record.Type ?? ''] ?? 'other_event';
  const diagnostic = normaliseDiagnostic(record.Details ?? record.Description);
  const status = findStatus(record.Details);
  const kind = verdict === 'permanent' ? confirmPermanent(status, diagnostic)
    : verdict === 'temporary' || verdict === 'complaint' ? verdict : 'not_a_report';
  return providerReport({
    ...common, kind,
    reportId: record.ID === undefined ? hashedId('postmark', 'record', JSON.stringify(record)) : `postmark:bounce:${record.ID}`,
    ignoredBecause: kind === 'not_a_report' ? verdict as IgnoredBecause : null,
    status: kind === 'complaint' ? null : status,
    diagnostic: kind === 'complaint' ? null : diagnostic,
    recipients: record.Email ? [bareAddress(record.Email) ?? record.Email] : [],
    reportedAt: parseDate(record.BouncedAt),
  });
}
