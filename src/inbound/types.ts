// Inbound reports: what mail systems and sending providers tell us about mail we sent.
//
// Glossary
// - report: one message or event about one of our mails: a bounce, a complaint, a delay,
//   a delivery, or something that only looks like one (an auto-reply).
// - bounce (DSN): a delivery status notification, RFC 3464 or a mail server's own text.
//   permanent: the address will not take mail (5.x.x, except a full mailbox and 5.7.x
//   policy refusals); temporary: try again later (4.x.x, a delay, a full mailbox, 5.7.x).
// - complaint: the recipient marked our mail as spam (ARF, RFC 5965, or a provider's event).
// - VERP tag: the signed tag in the envelope sender of each mail (see verp.ts); the only
//   thing in a report that we trust to name the mail it is about.
// - original: the mail of ours that a report is about.
// - provider: who handed us the report: `smtp` (a raw message, by SMTP or HTTP) or a
//   sending service's webhook (SES via SNS, Postmark, SendGrid, Mailgun).
//
// Everything here returns data and logs nothing: reports hold addresses, and the caller
// decides what to keep.

export type ReportKind = 'permanent' | 'temporary' | 'complaint' | 'delivered' | 'not_a_report';

export type ReportProvider = 'smtp' | 'ses' | 'postmark' | 'sendgrid' | 'mailgun';

/** Why a report is `not_a_report`. */
export type IgnoredBecause =
  /** Out-of-office, vacation, "automatic reply" in any language (RFC 3834 and its cousins). */
  | 'auto_reply'
  /** "Add yourself to my guest list" (Boxbe and the like), even when dressed as a DSN. */
  | 'challenge_response'
  /** A feedback report that is not a person's complaint (auth-failure, not-spam). */
  | 'not_a_complaint'
  /** A provider event about something else (an open, a subscription, a dropped send of ours). */
  | 'other_event'
  /** A message we could read that is none of the above. */
  | 'unrecognised'
  /** Bytes that are not a message we could read. */
  | 'unparseable';

/** One report, the same shape whichever way it came in. */
export interface InboundReport {
  provider: ReportProvider;
  /**
   * Stable identity for handling each report once: the provider's event id, or for a raw
   * message a hash of its Message-ID (else of its bytes). Prefixed with the provider.
   */
  reportId: string;
  kind: ReportKind;
  ignoredBecause: IgnoredBecause | null;
  /** Enhanced status code (RFC 3463) such as `5.1.1`, when the report gives one. */
  status: string | null;
  /** The remote server's words (Diagnostic-Code, SMTP reply), whitespace folded, bounded. */
  diagnostic: string | null;
  /** The addresses the report is about (for a DSN, those that failed), as the report spells them. */
  recipients: string[];
  /** ARF Feedback-Type (`abuse`, `fraud`, …) or the provider's equivalent. */
  feedbackType: string | null;
  /** The original's Message-ID, with angle brackets, as our outbox stores it. */
  originalMessageId: string | null;
  /** The provider's own id of the original (SES messageId, Postmark MessageID, …). */
  providerMessageId: string | null;
  /**
   * Where a VERP tag may be: addresses (envelope recipients given by the caller first, then
   * the report's headers and the original's Return-Path) and bare tags echoed back in a
   * provider's metadata. Pass them to `resolveVerp`; a forged one resolves to nothing.
   */
  verpCandidates: string[];
  /** When the report says it happened (its Date, the provider's timestamp); not the arrival time. */
  reportedAt: Date | null;
}
