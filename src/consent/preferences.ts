// The person's own side: what the preferences page shows and the changes it makes, and the
// "Lost your mail?" request for a fresh link. No account, no password: the signed link is
// the key, and every change is a POST.
import type { Trx } from '../db/database.js';
import type { Deps } from '../deps.js';
import { type AffinityLevel, effectiveAffinity, type RequestContext } from '../domain.js';
import { chooseLocale, type Locale, matchLocale } from '../i18n.js';
import { preferencesUrl } from '../links/urls.js';
import { getList } from '../lists/lists.js';
import * as listStore from '../lists/store.js';
import { messageId } from '../mail/transport.js';
import { emailKey } from './address.js';
import * as store from './store.js';
import { getSubscriber } from './subscribers.js';
import * as subscribers from './subscriber-store.js';
import { unsubscribe } from './unsubscribe.js';

/** At most one "Lost your mail?" mail per address in this time, and this many a day. */
const LINK_INTERVAL_MS = 10 * 60 * 1000;
const LINK_DAILY_CAP = 5;

export type PreferencesLink =
  | { ok: true; subscriberId: string; locale: string }
  | { ok: false; reason: 'invalid' | 'expired' };

/** Whom a preferences link is for: genuine, unexpired, and naming someone we still hold (not erased). */
export async function inspectPreferencesLink(deps: Pick<Deps, 'db' | 'signer' | 'clock'>, token: string): Promise<PreferencesLink> {
  const check = deps.signer.verifyPreferences(token, deps.clock());
  const locale = check.ok ? await store.findSubscriberLocale(deps.db, check.claims.subscriberId) : undefined;
  if (check.ok && locale !== undefined) return { ok: true, subscriberId: check.claims.subscriberId, locale };
  return { ok: false, reason: !check.ok && check.reason === 'expired' ? 'expired' : 'invalid' };
}

/** What the preferences page shows: the person, their own cap and the level mails use, and their lists' names by slug. */
export async function preferencesOf(deps: Pick<Deps, 'db'>, subscriberId: string) {
  const subscriber = await getSubscriber(deps, subscriberId);
  const cap = await subscribers.affinityCapOf(deps.db, subscriberId);
  const listNames = await listStore.listNamesBySlug(deps.db);
  return { ...subscriber, affinity_cap: cap, effective_affinity: effectiveAffinity(subscriber.affinity, cap), list_names: listNames };
}

export async function leaveList(deps: Pick<Deps, 'db' | 'metrics'>, subscriberId: string, listSlug: string, proof: { token: string; context: RequestContext }) {
  const list = await getList(deps, listSlug);
  await unsubscribe(deps, { subscriberId, listId: list.id }, { ...proof, method: 'preferences' });
}

export async function setLocale(deps: Pick<Deps, 'db'>, subscriberId: string, locale: Locale): Promise<void> {
  await getSubscriber(deps, subscriberId);
  await subscribers.updateSubscriberLocale(deps.db, subscriberId, locale);
}

/** The person's own limit: mails use the lower of it and the recorded level. null lifts it. */
export async function setAffinityCap(deps: Pick<Deps, 'db'>, subscriberId: string, cap: AffinityLevel | null): Promise<void> {
  await getSubscriber(deps, subscriberId);
  await subscribers.updateAffinityCap(deps.db, subscriberId, cap);
}

/**
 * "Lost your mail?": records the request and nothing else, one INSERT whatever the address,
 * so neither the answer nor its time tells whether we hold it. A worker handles it later
 * (resolvePreferencesLinkRequests), as the outbox already does for sending.
 */
export async function requestPreferencesLink(deps: Pick<Deps, 'db' | 'clock'>, email: string, locale: Locale): Promise<void> {
  await store.insertPreferencesLinkRequest(deps.db, { email, locale, requestedAt: new Date(deps.clock()) });
}

type ResolveDeps = Pick<Deps, 'db' | 'clock' | 'config' | 'signer' | 'mailTemplates'>;

/**
 * Handles waiting "Lost your mail?" requests, oldest first, each in its own transaction (so
 * one that fails stays queued and holds up no other). Resolves with how many it handled.
 */
export async function resolvePreferencesLinkRequests(deps: ResolveDeps, options: { limit: number }): Promise<number> {
  let handled = 0;
  while (handled < options.limit && await deps.db.transaction().execute((trx) => resolveOneRequest(deps, trx))) handled += 1;
  return handled;
}

/**
 * Queues a fresh preferences link if the address belongs to someone we hold, within the same
 * kind of limits as confirmation mails, counted from when each request was made; else drops
 * the request. False when none was waiting.
 */
async function resolveOneRequest(deps: ResolveDeps, trx: Trx): Promise<boolean> {
  const request = await store.takePreferencesLinkRequest(trx);
  if (!request) return false;
  // Per mailbox, as the signup's throttles: each spelling we hold must not get five a day of its own.
  await store.lockMailbox(trx, request.email);
  const subscriber = await subscribers.lockSubscriberByEmail(trx, emailKey(request.email));
  if (!subscriber) return true;
  const askedAt = request.requested_at.getTime();
  const recent = await store.countMailboxMailsSince(trx, subscriber.id, 'preferences_link', new Date(askedAt - LINK_INTERVAL_MS));
  const today = await store.countMailboxMailsSince(trx, subscriber.id, 'preferences_link', new Date(askedAt - 24 * 3600_000));
  if (recent > 0 || today >= LINK_DAILY_CAP) return true;
  const locale = chooseLocale(matchLocale(request.locale));
  const mail = deps.mailTemplates.renderPreferencesLink({ locale, email: subscriber.email, url: preferencesUrl(deps, subscriber.id) });
  await store.insertOutboxMail(trx, {
    kind: 'preferences_link', subscriber_id: subscriber.id, recipient: subscriber.email, message_id: messageId(deps.config.mailFrom),
    subject: mail.subject, html: mail.html, text: mail.text, created_at: request.requested_at,
  });
  return true;
}
