// Lists and their versioned consent wording: what people subscribe to, and what they agree to.
import type { Deps } from '../deps.js';
import { SUBSCRIPTION_STATUSES, type SubscriptionStatus, zeroCounts } from '../domain.js';
import { DomainError } from '../errors.js';
import * as store from './store.js';
import type { ListWithConsent } from './store.js';

/** The optional signup fields a list may collect. */
export const SIGNUP_FIELDS = ['first_name', 'last_name'] as const;
export type SignupField = (typeof SIGNUP_FIELDS)[number];

/** A list as the API shows it: with the terms rule's state, and (in the listing) counts by status. */
export interface ListView extends ListWithConsent {
  counts?: Record<SubscriptionStatus, number>;
  /** The material version campaigns need agreement to, or null when the wording never changed materially. */
  reconsentFrom: number | null;
  /** Confirmed subscribers who have not yet agreed to `reconsentFrom`: campaigns skip them. */
  awaitingReconsent: number;
}

async function withReconsent<L extends ListWithConsent>(db: Deps['db'], lists: L[]): Promise<(L & ListView)[]> {
  const states = await store.reconsentStates(db, lists.map((list) => list.id));
  return lists.map((list) => {
    const state = states.get(list.id);
    return { ...list, reconsentFrom: state?.reconsentFrom ?? null, awaitingReconsent: state?.awaiting ?? 0 };
  });
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

/**
 * A changed consent text becomes the list's current version; earlier confirmations keep theirs.
 * With `reconsent`, the change is material: campaigns then reach only those who agree to it
 * (or a later version). A material change needs a new text: 422 without one.
 */
export async function updateList(deps: Pick<Deps, 'db'>, slug: string, changes: {
  name?: string | undefined; consentText?: string | undefined; fields?: SignupField[] | undefined; reconsent?: boolean | undefined;
}): Promise<ListView> {
  const noNewText = () => new DomainError('reconsent_needs_text', 'reconsent: true needs a consent_text that differs from the current one');
  if (changes.reconsent && changes.consentText === undefined) throw noNewText();
  const updated = await deps.db.transaction().execute(async (trx) => {
    const list = await store.lockListBySlug(trx, slug);
    if (!list) throw notFound(slug);
    const { name, fields } = changes;
    if (name !== undefined || fields !== undefined) {
      await store.updateList(trx, list.id, { ...(name !== undefined && { name }), ...(fields !== undefined && { fields: [...fields] }) });
    }
    if (changes.consentText !== undefined) {
      const added = await store.insertConsentVersion(trx, list.id, changes.consentText, { material: changes.reconsent === true });
      if (!added && changes.reconsent) throw noNewText();
    }
    return (await store.findListById(trx, list.id))!;
  });
  return (await withReconsent(deps.db, [updated]))[0]!;
}

export async function listLists(deps: Pick<Deps, 'db'>): Promise<ListView[]> {
  const [lists, counts] = await Promise.all([store.listAllLists(deps.db), store.countSubscriptionsByStatus(deps.db)]);
  return withReconsent(deps.db, lists.map((list) => {
    const listCounts = zeroCounts(SUBSCRIPTION_STATUSES);
    for (const row of counts) if (row.listId === list.id) listCounts[row.status] = row.count;
    return { ...list, counts: listCounts };
  }));
}

/** One list, with the terms rule's state (reconsent_from, how many have not agreed yet). */
export async function getListView(deps: Pick<Deps, 'db'>, slug: string): Promise<ListView> {
  return (await withReconsent(deps.db, [await getList(deps, slug)]))[0]!;
}

export async function getList(deps: Pick<Deps, 'db'>, slug: string): Promise<ListWithConsent> {
  const list = await store.findListBySlug(deps.db, slug);
  if (!list) throw notFound(slug);
  return list;
}
