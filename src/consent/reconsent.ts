// Re-consent (issue 20): after a material change of a list's wording, everyone confirmed on
// an earlier version is mailed once, and their click (a POST, never the GET) records their
// agreement as a `reconsented` consent event with the evidence a confirmation has, appended
// to their chain (and so, like every event, a leaf of the consent log). Saying nothing
// changes nothing: they stay subscribed, and the terms rule keeps campaigns from them.
import type { Deps } from '../deps.js';
import type { RequestContext } from '../domain.js';
import { DomainError } from '../errors.js';
import { getList } from '../lists/lists.js';
import * as listStore from '../lists/store.js';
import { type ReconsentClaims, tokenHash } from '../links/tokens.js';
import { reconsentUrl } from '../links/urls.js';
import { appendConsentEvent, chainHead } from './ledger.js';
import * as store from './reconsent-store.js';
import { findSubscriberLocale, lockSubscriber, lockSubscription } from './store.js';

/** Queues the re-consent mails of a list's material version; 409 when it never had one. */
export async function startReconsent(deps: Pick<Deps, 'db'>, slug: string): Promise<{ version: number; queued: number }> {
  const list = await getList(deps, slug);
  const version = await store.findReconsentFrom(deps.db, list.id);
  if (version === null) throw new DomainError('no_material_change', `list "${slug}" has no material change of its wording to agree to`);
  return { version, queued: await store.queueReconsentMessages(deps.db, list.id, version) };
}

interface ListRef {
  slug: string;
  name: string;
}

/**
 * The preferences page's pending wordings, by list slug, each with the link whose button
 * records the agreement: the same page and POST as the mail's.
 */
export async function pendingReconsents(deps: Pick<Deps, 'db' | 'config' | 'signer' | 'clock'>, subscriberId: string) {
  const pending = await store.findPendingReconsents(deps.db, subscriberId);
  return new Map(pending.map((p) => [p.slug, {
    text: p.text, url: reconsentUrl(deps, { subscriberId, listId: p.list_id, version: p.version }),
  }]));
}

/** What a re-consent link stands for now. */
export type ReconsentLinkState =
  /** Garbled, altered, signed for another purpose, or naming nothing we hold. */
  | { kind: 'invalid' }
  /** Genuine but past its 180 days: a fresh preferences link shows the same wording and button. */
  | { kind: 'expired' }
  /** The subscription ended (withdrawn, bounced, erased): there is nothing left to agree to. */
  | { kind: 'closed'; list: ListRef; locale: string }
  | { kind: 'ready'; list: ListRef; locale: string; oldText: string | null; newText: string }
  | { kind: 'already'; list: ListRef; locale: string }
  /** The POST that recorded the agreement just now. */
  | { kind: 'reconsented'; list: ListRef; locale: string };

type LinkDeps = Pick<Deps, 'db' | 'clock' | 'signer'>;

function claimsOf(deps: LinkDeps, token: string): ReconsentClaims | { kind: 'invalid' | 'expired' } {
  const check = deps.signer.verifyReconsent(token, deps.clock());
  return check.ok ? check.claims : { kind: check.reason };
}

/** GET: what the page shows. Reads only. */
export async function inspectReconsentLink(deps: LinkDeps, token: string): Promise<ReconsentLinkState> {
  const claims = claimsOf(deps, token);
  if ('kind' in claims) return claims;
  const [list, locale, subscription, newText] = await Promise.all([
    listStore.findListById(deps.db, claims.listId),
    findSubscriberLocale(deps.db, claims.subscriberId),
    deps.db.selectFrom('subscriptions').select(['status', 'consent_version'])
      .where('subscriber_id', '=', claims.subscriberId).where('list_id', '=', claims.listId).executeTakeFirst(),
    listStore.findConsentText(deps.db, claims.listId, claims.version),
  ]);
  if (!list || locale === undefined || !subscription || newText === undefined) return { kind: 'invalid' };
  if (subscription.status !== 'confirmed') return { kind: 'closed', list, locale };
  if ((subscription.consent_version ?? 0) >= claims.version) return { kind: 'already', list, locale };
  const oldText = subscription.consent_version === null ? null
    : (await listStore.findConsentText(deps.db, claims.listId, subscription.consent_version)) ?? null;
  return { kind: 'ready', list, locale, oldText, newText };
}

/**
 * POST: records the agreement to the link's version, with who clicked, the wording agreed to
 * and the one it replaces, the hash of the token and the mail that carried it. A second POST
 * finds the subscription on that version already and does nothing.
 */
export async function recordReconsent(deps: LinkDeps & Pick<Deps, 'log'>, token: string, context: RequestContext): Promise<ReconsentLinkState> {
  const claims = claimsOf(deps, token);
  if ('kind' in claims) return claims;
  return deps.db.transaction().execute(async (trx): Promise<ReconsentLinkState> => {
    const subscriber = await lockSubscriber(trx, claims.subscriberId);
    const subscription = subscriber && await lockSubscription(trx, claims.subscriberId, claims.listId);
    const list = await listStore.findListById(trx, claims.listId);
    const text = await listStore.findConsentText(trx, claims.listId, claims.version);
    if (!subscriber || !subscription || !list || text === undefined) return { kind: 'invalid' };
    const locale = subscriber.locale;
    if (subscription.status !== 'confirmed') return { kind: 'closed', list, locale };
    const previous = subscription.consent_version;
    if ((previous ?? 0) >= claims.version) return { kind: 'already', list, locale };

    const head = await chainHead(trx, subscriber.id);
    const key = { list_id: list.id, version: claims.version, subscriber_id: subscriber.id };
    await appendConsentEvent(trx, head, {
      subscriberId: subscriber.id,
      listId: list.id,
      kind: 'reconsented',
      evidence: {
        ip: context.ip,
        user_agent: context.userAgent,
        page: context.page,
        list: { id: list.id, slug: list.slug, name: list.name },
        consent: { version: claims.version, text },
        previous_consent: { version: previous, text: previous === null ? null : (await listStore.findConsentText(trx, list.id, previous)) ?? null },
        token_sha256: tokenHash(token),
        mail_message_id: await store.findReconsentMessageId(trx, key),
      },
    });
    await store.markReconsented(trx, { subscriberId: subscriber.id, listId: list.id }, claims.version);
    return { kind: 'reconsented', list, locale };
  });
}
