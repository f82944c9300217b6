// Amazon SES notifications (the Message inside an SNS notification, see sns.ts): Bounce,
// Complaint, Delivery, and with event publishing DeliveryDelay. SES's "notificationType"
// and event publishing's "eventType" carry the same objects.
import { z } from 'zod';
import {
  bareAddress, classifyFeedback, confirmPermanent, distinct, findStatus, hashedId, normaliseDiagnostic,
  normaliseMessageId, parseDate,
} from './classify.js';
import { providerReport } from './providers.js';
import type { InboundReport } from './types.js';

const RECIPIENT = z.object({
  emailAddress: z.string(),
  status: z.string().nullish(),
  diagnosticCode: z.string().nullish(),
});

const MAIL = z.object({
  messageId: z.string().optional(),
  source: z.string().optional(),
  headers: z.array(z.object({ name: z.string(), value: z.string() })).optional(),
  commonHeaders: z.object({ messageId: z.string().optional() }).optional(),
  tags: z.record(z.string(), z.array(z.string())).optional(),
});

const NOTIFICATION = z.object({
  notificationType: z.string().optional(),
  eventType: z.string().optional(),
  mail: MAIL.optional(),
  bounce: z.object({
    bounceType: z.string(),
    bounceSubType: z.string().optional(),
    bouncedRecipients: z.array(RECIPIENT),
    timestamp: z.string().optional(),
    feedbackId: z.string().optional(),
  }).optional(),
  complaint: z.object({
    complainedRecipients: z.array(z.object({ emailAddress: z.string() })),
    complaintFeedbackType: z.string().nullish(),
    timestamp: z.string().optional(),
    feedbackId: z.string().optional(),
  }).optional(),
  delivery: z.object({
    recipients: z.array(z.string()),
    timestamp: z.string().optional(),
    smtpResponse: z.string().optional(),
  }).optional(),
  deliveryDelay: z.object({
    delayedRecipients: z.array(RECIPIENT),
    timestamp: z.string().optional(),
  }).optional(),
});
type SesNotification = z.infer<typeof NOTIFICATION>;
type SesRecipient = z.infer<typeof RECIPIENT>;

/**
 * The report in one SES notification (already authenticated: it came inside a verified
 * SNS message), or undefined for what is no report (Send, Open, Click, …) or not SES's.
 * `fallbackId` names it when SES gives no feedbackId (a Delivery): the SNS MessageId.
 */
export function sesReport(notification: unknown, fallbackId: string): InboundReport | undefined {
  const parsed = NOTIFICATION.safeParse(notification);
  if (!parsed.success) return undefined;
  const event = parsed.data;
  const common: Common = {
    provider: 'ses',
    originalMessageId: originalMessageId(event),
    providerMessageId: event.mail?.messageId ?? null,
    verpCandidates: verpCandidates(event),
  };
  const snsId = hashedId('ses', 'sns', fallbackId);
  switch (event.notificationType ?? event.eventType) {
    case 'Bounce': return event.bounce && bounceReport(common, event.bounce, snsId);
    case 'Complaint': return event.complaint && complaintReport(common, event.complaint, snsId);
    case 'Delivery': return event.delivery && deliveryReport(common, event.delivery, snsId);
    case 'DeliveryDelay': return event.deliveryDelay && failureReport(common, event.deliveryDelay.delayedRecipients, 'temporary', {
      reportId: snsId, reportedAt: parseDate(event.deliveryDelay.timestamp),
    });
    default: return undefined;
  }
}

type Common = Pick<InboundReport, 'provider' | 'originalMessageId' | 'providerMessageId' | 'verpCandidates'>;

function bounceReport(common: Common, bounce: NonNullable<SesNotification['bounce']>, snsId: string): InboundReport {
  // Permanent is SES's hard verdict, checked against our exceptions; Transient and
  // Undetermined stay temporary.
  return failureReport(common, bounce.bouncedRecipients, bounce.bounceType === 'Permanent' ? 'permanent' : 'temporary', {
    reportId: bounce.feedbackId ? `ses:${bounce.feedbackId}` : snsId,
    reportedAt: parseDate(bounce.timestamp),
  });
}

function complaintReport(common: Common, complaint: NonNullable<SesNotification['complaint']>, snsId: string): InboundReport {
  const feedbackType = complaint.complaintFeedbackType ?? null;
  return providerReport({
    ...common, ...classifyFeedback(feedbackType), feedbackType,
    reportId: complaint.feedbackId ? `ses:${complaint.feedbackId}` : snsId,
    recipients: complaint.complainedRecipients.map((recipient) => recipient.emailAddress),
    reportedAt: parseDate(complaint.timestamp),
  });
}

function deliveryReport(common: Common, delivery: NonNullable<SesNotification['delivery']>, snsId: string): InboundReport {
  return providerReport({
    ...common, kind: 'delivered', reportId: snsId,
    recipients: delivery.recipients,
    status: findStatus(delivery.smtpResponse),
    diagnostic: normaliseDiagnostic(delivery.smtpResponse),
    reportedAt: parseDate(delivery.timestamp),
  });
}

function failureReport(
  common: Common, recipients: readonly SesRecipient[], verdict: 'permanent' | 'temporary', identity: Pick<InboundReport, 'reportId' | 'reportedAt'>,
): InboundReport {
  const outcomes = recipients.map((recipient) => {
    const diagnostic = normaliseDiagnostic(recipient.diagnosticCode);
    const status = findStatus(recipient.status) ?? findStatus(diagnostic);
    return { address: recipient.emailAddress, status, diagnostic, kind: verdict === 'permanent' ? confirmPermanent(status, diagnostic) : verdict };
  });
  // The report says its worst outcome, as a DSN does.
  const kind = outcomes.some((outcome) => outcome.kind === 'permanent') ? 'permanent' : 'temporary';
  const worst = outcomes.filter((outcome) => outcome.kind === kind);
  return providerReport({
    ...common, ...identity, kind,
    status: worst.find((outcome) => outcome.status)?.status ?? null,
    diagnostic: worst.find((outcome) => outcome.diagnostic)?.diagnostic ?? null,
    recipients: worst.map((outcome) => outcome.address),
  });
}

function originalMessageId(event: SesNotification): string | null {
  const header = event.mail?.headers?.find((candidate) => candidate.name.toLowerCase() === 'message-id')?.value;
  return normaliseMessageId(header ?? event.mail?.commonHeaders?.messageId);
}

/** SES's `source` is the envelope MAIL FROM; a `verp` message tag comes back as given. */
function verpCandidates(event: SesNotification): string[] {
  const returnPath = event.mail?.headers?.find((candidate) => candidate.name.toLowerCase() === 'return-path')?.value;
  return distinct([bareAddress(event.mail?.source), bareAddress(returnPath), ...(event.mail?.tags?.verp ?? [])]);
}
