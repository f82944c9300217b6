// Inbound reports (bounces, complaints) as one library: a raw message or a provider's
// webhook in, InboundReport out; VERP tags to match a report to our mail. Pure apart from
// the certificate fetch the caller injects for SNS; nothing is logged or stored here.
export type { IgnoredBecause, InboundReport, ReportKind, ReportProvider } from './types.js';
export { DEFAULT_MAX_REPORT_BYTES, parseReportMessage, type ReadReportOptions } from './report.js';
export {
  bounceAddressFitsTags, parseVerpRecipient, resolveVerp, signVerpTag, VERP_TAG_MAX_LENGTH, verifyVerpTag,
  verpAddress, verpKeysFromSecrets, type VerpClaims, type VerpConfig, type VerpKeys,
} from './verp.js';
export {
  DEFAULT_TOLERANCE_MS, type Refusal, type RefusalReason, type WebhookOutcome, type WebhookRequest,
} from './providers.js';
export { createSesReceiver, isSnsUrl, type SesOutcome, type SesSettings } from './sns.js';
export { createPostmarkReceiver, type PostmarkSettings } from './postmark.js';
export { createSendGridReceiver, type SendGridSettings } from './sendgrid.js';
export { createMailgunReceiver, type MailgunSettings } from './mailgun.js';
