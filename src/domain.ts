// The domain's words, and each closed vocabulary among them defined once.
//
// Glossary
// - subscriber: one person, one row per address (matched case-insensitively), with names,
//   attributes and a locale. Erasure blanks the row and keeps its id.
// - list: what people subscribe to, with the consent wording they agree to, versioned.
// - subscription: a subscriber on a list, in one of SUBSCRIPTION_STATUSES.
// - consent event: one change of a person's consent, one of CONSENT_EVENT_KINDS, appended to
//   the subscriber's chain of hashes and never changed (consent/ledger.ts).
// - evidence: what proves a consent event: who asked (RequestContext), the wording agreed
//   to, the mail as sent, the hash of the token that proved the click. Erasure deletes it;
//   the chain of hashes stays and still verifies.
// - affinity: how personal a mail to the subscriber may be, one of AFFINITY_LEVELS, recorded
//   as events; the person may cap it, and a mail uses the lower of the two.
// - campaign: one mail to a list, in one of CAMPAIGN_STATUSES.
// - message: a campaign's mail to one recipient, one row each, fixed when sending starts
//   (the audience), in one of MESSAGE_STATUSES.
// - outbox mail: a transactional mail (OUTBOX_MAIL_KINDS) written in the transaction of the
//   change that needs it and sent by a worker (OUTBOX_MAIL_STATUSES).
// - suppression: the SHA-256 of an address that must never be mailed again.
//
// A new word goes into its array here, and the types, zod enums, SQL arrays and ranks follow.
// Two things do not: a Record over a vocabulary (log/receipt.ts's EVENT_TYPE, say) fails to
// compile until the word is described there, as it should; and the database's CHECK
// constraints live in migrations/, which are frozen, so a new value needs a new migration
// that widens the constraint.

/** Ordered from least to most familiar: the order is the rank. */
export const AFFINITY_LEVELS = ['confirmed', 'known', 'engaged'] as const;
export type AffinityLevel = (typeof AFFINITY_LEVELS)[number];

export const SUBSCRIPTION_STATUSES = ['pending', 'confirmed', 'unsubscribed', 'bounced', 'complained'] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];
/** The statuses a person can still leave (a withdrawal, or erasure, closes them). */
export const OPEN_SUBSCRIPTION_STATUSES = ['pending', 'confirmed'] as const satisfies readonly SubscriptionStatus[];
export const isOpenSubscription = (status: SubscriptionStatus): boolean =>
  (OPEN_SUBSCRIPTION_STATUSES as readonly SubscriptionStatus[]).includes(status);

/**
 * bounced and complained: a report about a mail of ours ended the subscription (issue 18);
 * imported: consent collected elsewhere, brought in with its provenance (issue 19);
 * reconsented: agreement to a changed wording (issue 20).
 */
export const CONSENT_EVENT_KINDS = ['requested', 'confirmed', 'withdrawn', 'erased', 'bounced', 'complained', 'imported', 'reconsented'] as const;
export type ConsentEventKind = (typeof CONSENT_EVENT_KINDS)[number];

/**
 * What a bounce or complaint about a mail of ours did (issue 18): ended subscriptions
 * (bounced, complained), was counted toward three soft bounces (counted), or nothing (none).
 * The first two are also counted per campaign.
 */
export const REPORT_EFFECTS = ['bounced', 'complained', 'counted', 'none'] as const;
export type ReportEffect = (typeof REPORT_EFFECTS)[number];
export const CAMPAIGN_REPORT_COUNTS = ['bounced', 'complained'] as const satisfies readonly ReportEffect[];

/** scheduled: waits for its send_at, then starts by itself (issue 20). */
export const CAMPAIGN_STATUSES = ['draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled'] as const;
export type CampaignStatus = (typeof CAMPAIGN_STATUSES)[number];

/**
 * A message is queued until a worker sends it (sent), the relay refuses it for good
 * (failed), or it no longer may go (skipped: unsubscribed, erased, or the campaign cancelled).
 */
export const MESSAGE_STATUSES = ['queued', 'sent', 'failed', 'skipped'] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

/** No CHECK constraint holds these (the column is text): the code is the only gate. */
export const OUTBOX_MAIL_KINDS = ['confirmation', 'preferences_link'] as const;
export type OutboxMailKind = (typeof OUTBOX_MAIL_KINDS)[number];

export const OUTBOX_MAIL_STATUSES = ['queued', 'sent', 'failed'] as const;
export type OutboxMailStatus = (typeof OUTBOX_MAIL_STATUSES)[number];

export const affinityRank = (level: AffinityLevel): number => AFFINITY_LEVELS.indexOf(level);

/**
 * The level a mail may use: the lower of the recorded one and the person's own cap. No
 * recorded level yet counts as `confirmed`, the level a confirmation records.
 */
export function effectiveAffinity(recorded: AffinityLevel | null, cap: AffinityLevel | null): AffinityLevel {
  const level = recorded ?? 'confirmed';
  return cap !== null && affinityRank(cap) < affinityRank(level) ? cap : level;
}

/** A count of 0 for every word of a vocabulary, so a status nobody holds yet still shows. */
export function zeroCounts<Word extends string>(vocabulary: readonly Word[]): Record<Word, number> {
  return Object.fromEntries(vocabulary.map((word) => [word, 0])) as Record<Word, number>;
}

/**
 * Who asked, as evidence of a consent event: the client's IP, its browser, and the page whose
 * form posted. http/client.ts reads it from the request; every change of consent records it.
 */
export interface RequestContext {
  ip: string | null;
  userAgent: string | null;
  page: string | null;
}

/** A subscriber id's shape: checked before a lookup, since PostgreSQL refuses a malformed uuid. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
