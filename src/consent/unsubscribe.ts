// Withdrawal: one POST, no login, effective at once. The subscription row's FOR UPDATE lock
// waits for any campaign send holding it FOR SHARE (workers/campaign.ts), so once this
// commits and answers, no later send to this address and list can start.
import { allowLongStatements } from '../db/database.js';
import type { Deps } from '../deps.js';
import { isOpenSubscription, type RequestContext, type SubscriptionStatus } from '../domain.js';
import { tokenHash, type UnsubscribeClaims } from '../links/tokens.js';
import * as listStore from '../lists/store.js';
import { appendConsentEvent, chainHead } from './ledger.js';
import * as store from './store.js';

/**
 * How long a withdrawal may wait for a campaign send that holds the subscription: a chunk of
 * about 100 ms, or one send to a relay that hangs until the 30 s socket timeout. Waiting is the
 * guarantee (no mail after the answer), so it outlasts DATABASE_STATEMENT_TIMEOUT.
 */
export const WITHDRAWAL_WAIT_MS = 45_000;

export interface UnsubscribeTarget {
  list: { slug: string; name: string };
  locale: string;
  status: SubscriptionStatus;
}

/** What an unsubscribe link points at, for its page; undefined when it names nothing we hold. */
export async function inspectUnsubscribe(deps: Pick<Deps, 'db'>, claims: UnsubscribeClaims): Promise<UnsubscribeTarget | undefined> {
  const [list, locale, subscription] = await Promise.all([
    listStore.findListById(deps.db, claims.listId),
    store.findSubscriberLocale(deps.db, claims.subscriberId),
    store.findSubscription(deps.db, claims.subscriberId, claims.listId),
  ]);
  if (!list || locale === undefined || !subscription) return undefined;
  return { list, locale, status: subscription.status };
}

/** Unsubscribes and records the withdrawal; a second call finds nothing to do. */
export async function unsubscribe(
  deps: Pick<Deps, 'db' | 'metrics'>,
  claims: UnsubscribeClaims,
  proof: { token: string; context: RequestContext; method: 'one-click' | 'page' | 'preferences' },
): Promise<UnsubscribeTarget | undefined> {
  const target = await deps.db.transaction().execute(async (trx): Promise<(UnsubscribeTarget & { changed: boolean }) | undefined> => {
    await allowLongStatements(trx, { timeoutMs: WITHDRAWAL_WAIT_MS });
    const subscriber = await store.lockSubscriber(trx, claims.subscriberId);
    const subscription = subscriber && await store.lockSubscription(trx, claims.subscriberId, claims.listId);
    const list = await listStore.findListById(trx, claims.listId);
    if (!subscriber || !subscription || !list) return undefined;
    if (!isOpenSubscription(subscription.status)) {
      return { list, locale: subscriber.locale, status: subscription.status, changed: false };
    }
    const head = await chainHead(trx, subscriber.id);
    await appendConsentEvent(trx, head, {
      subscriberId: subscriber.id,
      listId: list.id,
      kind: 'withdrawn',
      evidence: {
        ip: proof.context.ip,
        user_agent: proof.context.userAgent,
        page: proof.context.page,
        method: proof.method,
        list: { id: list.id, slug: list.slug, name: list.name },
        token_sha256: tokenHash(proof.token),
      },
    });
    await store.markSubscriptionWithdrawn(trx, { subscriberId: subscriber.id, listId: list.id }, head.now);
    return { list, locale: subscriber.locale, status: 'unsubscribed', changed: true };
  });
  if (target?.changed) deps.metrics.unsubscribes.inc();
  return target;
}
