// Subscribers as marketers and the people themselves see them: finding, the proof of
// consent, affinity, export and erasure.
import { allowLongStatements } from '../db/database.js';
import type { Deps } from '../deps.js';
import { type AffinityLevel, type SubscriptionStatus, UUID } from '../domain.js';
import { DomainError } from '../errors.js';
import { getList } from '../lists/lists.js';
import { logIndexes } from '../log/store.js';
import { addressHash } from './address.js';
import { appendConsentEvent, chainHead, verifyChain, withoutLinkTokens } from './ledger.js';
import { scrubReportsAbout } from './report-store.js';
import * as store from './store.js';
import * as subscribers from './subscriber-store.js';
import { WITHDRAWAL_WAIT_MS } from './unsubscribe.js';

type Db = Pick<Deps, 'db'>;

export interface SubscriptionView {
  list: string;
  status: SubscriptionStatus;
  consent_version: number | null;
  consent_text: string | null;
  requested_at: Date | null;
  confirmed_at: Date | null;
  unsubscribed_at: Date | null;
}

export interface SubscriberView {
  id: string;
  email: string;
  first_name: string | null;
  last_name: string | null;
  attributes: Record<string, unknown>;
  locale: string;
  created_at: Date;
  affinity: AffinityLevel | null;
  subscriptions: SubscriptionView[];
}

function notFound(id: string): DomainError {
  return new DomainError('subscriber_not_found', `there is no subscriber ${id}`);
}

/** The subscribers with their subscriptions and affinity (kept on the row, migration 0012): one more statement for the whole page. */
async function views(deps: Db, rows: Awaited<ReturnType<typeof subscribers.findSubscribers>>): Promise<SubscriberView[]> {
  const ids = rows.map((row) => row.id);
  const subscriptions = await subscribers.subscriptionsOf(deps.db, ids);
  return rows.map((row) => ({
    id: row.id,
    email: row.email!,
    first_name: row.first_name,
    last_name: row.last_name,
    attributes: row.attributes,
    locale: row.locale,
    created_at: row.created_at,
    affinity: row.affinity_level,
    subscriptions: subscriptions.filter((s) => s.subscriber_id === row.id).map(({ subscriber_id: _, ...s }) => s),
  }));
}

export interface FindSubscribers {
  email?: string | undefined;
  list?: string | undefined;
  status?: SubscriptionStatus | undefined;
  cursor?: string | undefined;
  limit: number;
}

const encodeCursor = (id: string) => Buffer.from(id).toString('base64url');
function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!UUID.test(id)) throw new DomainError('invalid_input', 'the cursor is not one we gave out', { cursor: 'not valid' });
  return id;
}

/** One page, in id order; `next_cursor` continues after it (keyset paging: stable under inserts). */
export async function findSubscribers(deps: Db, query: FindSubscribers): Promise<{ data: SubscriberView[]; next_cursor: string | null }> {
  const list = query.list === undefined ? undefined : await getList(deps, query.list);
  const rows = await subscribers.findSubscribers(deps.db, {
    email: query.email, listId: list?.id, status: query.status,
    after: query.cursor === undefined ? undefined : decodeCursor(query.cursor), limit: query.limit,
  });
  const page = rows.slice(0, query.limit);
  return { data: await views(deps, page), next_cursor: rows.length > query.limit ? encodeCursor(page.at(-1)!.id) : null };
}

export async function getSubscriber(deps: Db, id: string): Promise<SubscriberView> {
  const row = UUID.test(id) ? await subscribers.findSubscriber(deps.db, id) : undefined;
  if (!row) throw notFound(id);
  return (await views(deps, [row]))[0]!;
}

/**
 * Every consent event with its evidence, and whether the chain recomputes untampered. No link
 * token is handed out (ledger.withoutLinkTokens): `verified` is computed on the stored rows,
 * the evidence shown has the tokens of rows written before sentMailEvidence replaced.
 */
export async function consentRecord(deps: Db, id: string) {
  await getSubscriber(deps, id);
  const [chain, slugs] = await Promise.all([verifyChain(deps.db, id), subscribers.consentEventListSlugs(deps.db, id)]);
  const leaves = await logIndexes(deps.db, chain.events.map((event) => event.id));
  return {
    subscriber_id: id,
    verified: chain.verified,
    events: chain.events.map((event) => ({
      id: event.id,
      kind: event.kind,
      list: event.listId === null ? null : slugs.get(event.listId) ?? null,
      occurred_at: event.occurredAt,
      hash: event.hash,
      // Its leaf in the consent log, once the sequencer gave it one (within about a second).
      log_index: leaves.get(event.id) ?? null,
      evidence: withoutLinkTokens(event.evidence),
      verified: event.verified,
    })),
  };
}

export async function recordAffinity(
  deps: Db,
  id: string,
  change: { level: AffinityLevel; reason: string; recordedBy: string },
) {
  if (!UUID.test(id)) throw notFound(id);
  return deps.db.transaction().execute(async (trx) => {
    const subscriber = await store.lockSubscriber(trx, id);
    if (!subscriber) throw notFound(id);
    if (subscriber.affinity_level === null) throw new DomainError('not_confirmed', 'affinity is recorded for subscribers who have confirmed');
    const event = await subscribers.insertAffinityEvent(trx, { subscriberId: id, ...change });
    return { subscriber_id: id, ...event };
  });
}

/** Everything held about the person, as the API and the preferences page hand it out. */
export async function exportSubscriber(deps: Db & Pick<Deps, 'clock'>, id: string) {
  const subscriber = await getSubscriber(deps, id);
  const [consent, affinity, mails] = await Promise.all([
    consentRecord(deps, id), subscribers.affinityEventsOf(deps.db, id), subscribers.mailsTo(deps.db, id),
  ]);
  return {
    exported_at: new Date(deps.clock()).toISOString(),
    subscriber,
    consent,
    affinity_events: affinity,
    // The outbox keeps each mail as the worker sends it, links and all: shown without their tokens.
    mails: mails.map((mail) => ({ ...mail, text: withoutLinkTokens(mail.text) })),
  };
}

/**
 * Erases the person: address, names, attributes, evidence, affinity history and mail bodies
 * go; a hash of the address stays in suppressions so it is never mailed again, and the chain
 * of consent hashes stays and still verifies, ending in an `erased` event.
 */
export async function eraseSubscriber(deps: Db, id: string, requestedBy: { by: 'api' | 'subscriber'; key?: string }): Promise<void> {
  if (!UUID.test(id)) throw notFound(id);
  await deps.db.transaction().execute(async (trx) => {
    await allowLongStatements(trx, { timeoutMs: WITHDRAWAL_WAIT_MS }); // its subscriptions may be sending, as for a withdrawal
    const subscriber = await store.lockSubscriber(trx, id);
    if (!subscriber) throw notFound(id);
    await subscribers.allowErasure(trx);
    await subscribers.deleteEvidenceOf(trx, id);
    await subscribers.deleteAffinityEventsOf(trx, id);
    await subscribers.scrubMailsTo(trx, id);
    await scrubReportsAbout(trx, id);
    await subscribers.closeSubscriptionsOf(trx, id);
    await subscribers.deleteIdempotentAnswersAbout(trx, subscriber);
    await subscribers.blankSubscriber(trx, id);
    await subscribers.insertSuppression(trx, addressHash(subscriber.email), 'erased');
    const head = await chainHead(trx, id);
    await appendConsentEvent(trx, head, {
      subscriberId: id, listId: null, kind: 'erased',
      evidence: { requested_by: requestedBy.by, ...(requestedBy.key && { api_key: requestedBy.key }) },
    });
  });
}
