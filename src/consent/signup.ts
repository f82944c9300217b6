// A signup: one transaction that records the request, its evidence and the confirmation mail
// (transactional outbox); the worker sends it later. The caller answers the same whatever
// happened here, so nobody learns who is on a list.
import type { ControlledTransaction } from 'kysely';
import type { Trx } from '../db/database.js';
import type { DB } from '../db/schema.js';
import type { Deps } from '../deps.js';
import type { RequestContext } from '../domain.js';
import { DomainError } from '../errors.js';
import type { Locale } from '../i18n.js';
import { confirmLink } from '../links/urls.js';
import * as listStore from '../lists/store.js';
import { messageId } from '../mail/transport.js';
import { appendConsentEvent, sentMailEvidence } from './ledger.js';
import * as store from './store.js';

/** At most one confirmation mail per address and list in this time. */
export const RESEND_INTERVAL_MS = 10 * 60 * 1000;
/** At most this many confirmation mails per address a day, over all lists. */
export const DAILY_CONFIRMATION_CAP = 5;
const DAY_MS = 24 * 3600 * 1000;

export interface SignupRequest {
  /** Already normalised (address.ts). */
  email: string;
  listSlug: string | undefined;
  firstName: string | null;
  lastName: string | null;
  locale: Locale;
  /**
   * Attributes a server sent with its signup (POST /api/v1/subscribers): kept with the
   * request and applied with the names once the person confirms.
   */
  attributes?: Record<string, string | number | boolean>;
}

/**
 * A signup a server made with an API key: the key's name, and which of the request
 * context's fields the key asserted (rather than the socket or headers telling us).
 */
export interface SignupSource {
  apiKey: string;
  asserted: readonly ('ip' | 'user_agent' | 'page')[];
  /** An import's row that brought no consent (imports/imports.ts): which file and line asked. */
  import?: { id: string; file_sha256: string; line: number };
}

export type SignupOutcome = 'mailed' | 'already_confirmed' | 'throttled';

/** The list named, or the only one when none is named (a form without a list field). */
async function listSlug(trx: Trx, slug: string | undefined): Promise<string> {
  if (slug !== undefined) return slug;
  const lists = await listStore.findOnlyLists(trx);
  if (lists.length === 0) throw new DomainError('list_not_found', 'there is no list yet');
  if (lists.length > 1) {
    throw new DomainError('list_required', 'choose a list', { list: 'required when more than one list exists' });
  }
  return lists[0]!.slug;
}

/**
 * Rolls a signup back: a throttled or already-confirmed signup writes nothing at all, not
 * even the subscriber and subscription rows its first statement made (docs/decisions.md).
 * Rolling back costs the round trip a commit would; deciding before any write would cost one more.
 */
class WritesNothing extends Error {
  constructor(readonly outcome: Exclude<SignupOutcome, 'mailed'>) {
    super(outcome);
  }
}

type SignupDeps = Pick<Deps, 'db' | 'clock' | 'config' | 'signer' | 'mailTemplates' | 'log'>;

export async function signup(deps: SignupDeps, request: SignupRequest, context: RequestContext, source?: SignupSource): Promise<SignupOutcome> {
  try {
    return await deps.db.transaction().execute((trx) => requestSignup(deps, trx, request, context, source));
  } catch (error) {
    if (error instanceof WritesNothing) return error.outcome;
    throw error;
  }
}

/**
 * A signup inside the caller's transaction, for an import's batch (imports/imports.ts): a
 * savepoint stands in for signup's own transaction, so a throttled row writes nothing and
 * the batch goes on. The caller holds its transaction open; the mail waits for its commit.
 */
export async function signupInBatch(deps: SignupDeps, trx: ControlledTransaction<DB>, request: SignupRequest, context: RequestContext, source: SignupSource): Promise<SignupOutcome> {
  const row = await trx.savepoint('signup').execute();
  try {
    const outcome = await requestSignup(deps, row, request, context, source);
    await row.releaseSavepoint('signup').execute();
    return outcome;
  } catch (error) {
    await row.rollbackToSavepoint('signup').execute();
    if (error instanceof WritesNothing) return error.outcome;
    throw error;
  }
}

async function requestSignup(deps: SignupDeps, trx: Trx, request: SignupRequest, context: RequestContext, source: SignupSource | undefined): Promise<'mailed'> {
  const slug = await listSlug(trx, request.listSlug);
  const found = await store.upsertSignup(trx, { listSlug: slug, email: request.email, locale: request.locale });
  if (!found) throw new DomainError('list_not_found', `there is no list "${slug}"`);
  if (found.subscription.status === 'confirmed') throw new WritesNothing('already_confirmed');
  const key = { subscriberId: found.subscriber.id, mailboxKey: found.subscriber.mailboxKey, listId: found.list.id };
  const now = deps.clock();
  // Both throttles count per mailbox, over every spelling of the address (migration 0004).
  const { head, mailsSince, lastMailToList } = await store.signupHead(trx, key, new Date(now - DAY_MS));
  const lastMail = lastMailToList?.getTime();
  if ((lastMail !== undefined && now - lastMail < RESEND_INTERVAL_MS) || mailsSince >= DAILY_CONFIRMATION_CAP) {
    throw new WritesNothing('throttled');
  }
  await requestConfirmation(deps, trx, { ...found, head, now }, request, context, source);
  return 'mailed';
}

type Found = NonNullable<Awaited<ReturnType<typeof store.upsertSignup>>>;

/** The request recorded with its evidence, and its confirmation mail queued. */
async function requestConfirmation(
  deps: SignupDeps,
  trx: Trx,
  { list, subscriber, subscription, head, now }: Found & { head: { now: Date; prevHash: Buffer | null }; now: number },
  request: SignupRequest,
  context: RequestContext,
  source: SignupSource | undefined,
): Promise<void> {
  const { token, url: confirmUrl } = confirmLink(deps, { subscriberId: subscriber.id, listId: list.id, issuedAt: now });
  const mail = deps.mailTemplates.renderConfirmation({
    locale: request.locale, email: subscriber.email, listName: list.name, consentText: list.consentText, confirmUrl,
  });
  const id = messageId(deps.config.mailFrom);
  const fields: Record<string, string> = { locale: request.locale };
  if (list.fields.includes('first_name') && request.firstName) fields.first_name = request.firstName;
  if (list.fields.includes('last_name') && request.lastName) fields.last_name = request.lastName;
  // pending_fields holds text only: attributes wait there as one JSON string (store.applySubscriberFields).
  const attributes = request.attributes && Object.keys(request.attributes).length > 0 ? request.attributes : undefined;
  const pendingFields = attributes ? { ...fields, attributes: JSON.stringify(attributes) } : fields;

  await appendConsentEvent(trx, head, {
    subscriberId: subscriber.id,
    listId: list.id,
    kind: 'requested',
    evidence: {
      ip: context.ip,
      user_agent: context.userAgent,
      page: context.page,
      form: { email: subscriber.email, ...fields, ...(attributes && { attributes }) },
      ...(source && { api_key: { name: source.apiKey, asserted: source.asserted } }),
      ...(source?.import && { import: source.import }),
      list: { id: list.id, slug: list.slug, name: list.name },
      consent: { version: list.consentVersion, text: list.consentText },
      mail: sentMailEvidence({ messageId: id, subject: mail.subject, text: mail.text }, token),
    },
  });
  const pendingSince = subscription.status === 'pending' && subscription.pending_since
    ? subscription.pending_since : new Date(now);
  await store.markSubscriptionRequested(trx, { subscriberId: subscriber.id, listId: list.id }, {
    now: new Date(now), pendingSince, fields: pendingFields, consentVersion: list.consentVersion,
    mail: { kind: 'confirmation', recipient: subscriber.email, messageId: id, subject: mail.subject, html: mail.html, text: mail.text },
  });
  if (!deps.config.smtpUrl) deps.log.info({ confirm_url: confirmUrl }, 'confirmation mail written to the outbox folder');
}
