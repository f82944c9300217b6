// What a webhook call says: the event types of the contract, which consent event each stands
// for, and the body, built when it is sent from what is held then (so an erased person's
// address is never sent after the erasure, not even by a retry).
import type { ConsentEventKind } from '../domain.js';

export const WEBHOOK_EVENT_TYPES = [
  'subscription.requested', 'subscription.confirmed', 'subscription.unsubscribed', 'subscription.bounced',
  'subscription.complained', 'subscriber.erased', 'campaign.finished',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/**
 * The type each consent event is sent as; null: not sent. A new kind in domain.ts fails to
 * compile here until it is described. An import that brings its consent makes the
 * subscription confirmed, so it is sent as that; a re-consent changes no subscription.
 */
export const TYPE_OF_KIND: Record<ConsentEventKind, WebhookEventType | null> = {
  requested: 'subscription.requested',
  confirmed: 'subscription.confirmed',
  imported: 'subscription.confirmed',
  withdrawn: 'subscription.unsubscribed',
  bounced: 'subscription.bounced',
  complained: 'subscription.complained',
  erased: 'subscriber.erased',
  reconsented: null,
};

/** The consent event kinds an endpoint subscribed to `types` is fed. */
export function kindsFor(types: readonly string[]): ConsentEventKind[] {
  return (Object.entries(TYPE_OF_KIND) as [ConsentEventKind, WebhookEventType | null][])
    .filter(([, type]) => type !== null && types.includes(type)).map(([kind]) => kind);
}

export interface EventFacts {
  eventId: string;
  kind: ConsentEventKind;
  occurredAt: Date;
  subscriberId: string;
  email: string | null;
  firstName: string | null;
  lastName: string | null;
  list: { slug: string; fields: string[] } | null;
}

export interface WebhookBody {
  type: WebhookEventType;
  timestamp: string;
  data: Record<string, unknown>;
}

/**
 * `{type, timestamp, data}`: data holds the subscriber's id, the list's slug, the address
 * and only the fields that list collects; never the evidence (IP, user agent, page, the
 * wording, the mail), which is the proof and stays here.
 */
export function webhookBody(facts: EventFacts): WebhookBody {
  const data: Record<string, unknown> = { subscriber_id: facts.subscriberId, event_id: facts.eventId };
  if (facts.list) data.list = facts.list.slug;
  if (facts.kind !== 'erased' && facts.email !== null) {
    data.email = facts.email;
    if (facts.list?.fields.includes('first_name') && facts.firstName) data.first_name = facts.firstName;
    if (facts.list?.fields.includes('last_name') && facts.lastName) data.last_name = facts.lastName;
  }
  return { type: TYPE_OF_KIND[facts.kind]!, timestamp: facts.occurredAt.toISOString(), data };
}
