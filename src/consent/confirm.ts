// Confirmation: the click that turns a request into consent. Looking at a link (GET) never
// changes anything, because mail scanners follow links; only the POST from its page confirms.
import type { Deps } from '../deps.js';
import type { RequestContext, SubscriptionStatus } from '../domain.js';
import { type ConfirmClaims, tokenHash } from '../links/tokens.js';
import * as listStore from '../lists/store.js';
import { addressHash } from './address.js';
import { appendConsentEvent, chainHead } from './ledger.js';
import * as store from './store.js';

interface ListRef {
  slug: string;
  name: string;
}

/** What a confirm link stands for now. */
export type ConfirmLinkState =
  /** Garbled, truncated or not signed by us. */
  | { kind: 'invalid' }
  | { kind: 'expired'; list: ListRef | undefined }
  /** Genuine, but we hold no such subscription (erased, or its list deleted). */
  | { kind: 'unknown' }
  /** Issued before the person withdrew: it cannot undo that. */
  | { kind: 'superseded'; list: ListRef; locale: string }
  | { kind: 'ready'; list: ListRef; consentText: string; locale: string }
  | { kind: 'already_confirmed'; list: ListRef; locale: string }
  /** The POST that confirmed just now. */
  | { kind: 'confirmed'; list: ListRef; locale: string; subscriberId: string };

type LinkDeps = Pick<Deps, 'db' | 'clock' | 'signer'>;

/** Where the subscription stands for a link that is genuine and unexpired. */
function classify(claims: ConfirmClaims, subscription: { status: SubscriptionStatus; pending_since: Date | null } | undefined) {
  if (!subscription) return 'unknown' as const;
  if (subscription.status === 'confirmed') return 'already_confirmed' as const;
  const since = subscription.pending_since?.getTime();
  if (subscription.status !== 'pending' || since === undefined || claims.issuedAt < since) return 'superseded' as const;
  return 'ready' as const;
}

export async function inspectConfirmLink(deps: LinkDeps, token: string): Promise<ConfirmLinkState> {
  const check = deps.signer.verifyConfirm(token, deps.clock());
  if (!check.ok && check.reason === 'invalid') return { kind: 'invalid' };
  const claims = check.ok ? check.claims : check.claims;
  const list = await listStore.findListById(deps.db, claims.listId);
  if (!check.ok) return { kind: 'expired', list };
  const [subscription, locale] = await Promise.all([
    store.findSubscription(deps.db, claims.subscriberId, claims.listId),
    store.findSubscriberLocale(deps.db, claims.subscriberId),
  ]);
  const kind = list && locale !== undefined ? classify(claims, subscription) : 'unknown';
  if (kind === 'unknown') return { kind };
  if (kind === 'ready') return { kind, list: list!, consentText: list!.consentText, locale: locale! };
  return { kind, list: list!, locale: locale! };
}

/**
 * Confirms and records the proof: the wording the person was shown (the version in their
 * mail, even if the list's text changed since), the hash of the token that proved the
 * click, and who clicked. A second POST finds the subscription confirmed and does nothing.
 */
export async function confirmSubscription(
  deps: LinkDeps & Pick<Deps, 'metrics'>,
  token: string,
  context: RequestContext,
): Promise<ConfirmLinkState> {
  const check = deps.signer.verifyConfirm(token, deps.clock());
  if (!check.ok) return inspectConfirmLink(deps, token);
  const { claims } = check;
  const state = await deps.db.transaction().execute(async (trx): Promise<ConfirmLinkState> => {
    const subscriber = await store.lockSubscriber(trx, claims.subscriberId);
    const subscription = subscriber && await store.lockSubscription(trx, claims.subscriberId, claims.listId);
    const list = await listStore.findListById(trx, claims.listId);
    const kind = subscriber && list ? classify(claims, subscription) : 'unknown';
    if (kind === 'unknown') return { kind };
    if (kind !== 'ready') return { kind, list: list!, locale: subscriber!.locale };

    const version = subscription!.pending_consent_version ?? list!.consentVersion;
    const consentText = (await listStore.findConsentText(trx, list!.id, version)) ?? list!.consentText;
    const fields = subscription!.pending_fields ?? {};
    const key = { subscriberId: subscriber!.id, listId: list!.id };
    const head = await chainHead(trx, subscriber!.id);
    const requestEventId = await store.latestRequestEventId(trx, subscriber!.id, list!.id);
    await appendConsentEvent(trx, head, {
      subscriberId: subscriber!.id,
      listId: list!.id,
      kind: 'confirmed',
      evidence: {
        ip: context.ip,
        user_agent: context.userAgent,
        page: context.page,
        list: { id: list!.id, slug: list!.slug, name: list!.name },
        consent: { version, text: consentText },
        token_sha256: tokenHash(token),
        link_issued_at: new Date(claims.issuedAt).toISOString(),
        request_event_id: requestEventId ?? null,
      },
    });
    await store.markSubscriptionConfirmed(trx, key, { at: head.now, consentVersion: version });
    await store.applySubscriberFields(trx, subscriber!.id, fields);
    await store.recordFirstAffinity(trx, subscriber!.id);
    await store.deleteSuppression(trx, addressHash(subscriber!.email));
    return { kind: 'confirmed', list: list!, locale: fields.locale ?? subscriber!.locale, subscriberId: subscriber!.id };
  });
  if (state.kind === 'confirmed') deps.metrics.confirmations.inc();
  return state;
}
