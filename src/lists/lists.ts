// Lists and their versioned consent wording: what people subscribe to, and what they agree to.
import type { Deps } from '../deps.js';
import { SUBSCRIPTION_STATUSES, type SubscriptionStatus, zeroCounts } from '../domain.js';
import { DomainError } from '../errors.js';
import * as store from './store.js';
import type { ListWithConsent } from './store.js';

/** The optional signup fields a list may collect. */
export const SIGNUP_FIELDS = ['first_name', 'last_name'] as const;
export type SignupField = (typeof SIGNUP_FIELDS)[number];

export interface ListView extends ListWithConsent {
  counts: Record<SubscriptionStatus, number>;
}

const notFound = (slug: string) => new DomainError('list_not_found', `there is no list "${slug}"`);

export async function createList(deps: Pick<Deps, 'db'>, input: {
  slug: string; name: string; consentText: string; fields?: SignupField[] | undefined;
}): Promise<ListWithConsent> {
  return deps.db.transaction().execute(async (trx) => {
    const id = await store.insertList(trx, {
      slug: input.slug, name: input.name, fields: [...(input.fields ?? SIGNUP_FIELDS)],
    });
    if (id === undefined) throw new DomainError('list_exists', `a list with slug "${input.slug}" already exists`);
    await store.insertConsentVersion(trx, id, input.consentText);
    return (await store.findListById(trx, id))!;
  });
}

/** A changed consent text becomes the list's current version; earlier confirmations keep theirs. */
export async function updateList(deps: Pick<Deps, 'db'>, slug: string, changes: {
  name?: string | undefined; consentText?: string | undefined; fields?: SignupField[] | undefined;
}): Promise<ListWithConsent> {
  return deps.db.transaction().execute(async (trx) => {
    const list = await store.lockListBySlug(trx, slug);
    if (!list) throw notFound(slug);
    const { name, fields } = changes;
    if (name !== undefined || fields !== undefined) {
      await store.updateList(trx, list.id, { ...(name !== undefined && { name }), ...(fields !== undefined && { fields: [...fields] }) });
    }
    if (changes.consentText !== undefined) await store.insertConsentVersion(trx, list.id, changes.consentText);
    return (await store.findListById(trx, list.id))!;
  });
}

export async function listLists(deps: Pick<Deps, 'db'>): Promise<ListView[]> {
  const [lists, counts] = await Promise.all([store.listAllLists(deps.db), store.countSubscriptionsByStatus(deps.db)]);
  return lists.map((list) => {
    const listCounts = zeroCounts(SUBSCRIPTION_STATUSES);
    for (const row of counts) if (row.listId === list.id) listCounts[row.status] = row.count;
    return { ...list, counts: listCounts };
  });
}

export async function getList(deps: Pick<Deps, 'db'>, slug: string): Promise<ListWithConsent> {
  const list = await store.findListBySlug(deps.db, slug);
  if (!list) throw notFound(slug);
  return list;
}
