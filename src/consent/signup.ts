// A signup: one transaction that records the request, its evidence and the confirmation mail
// (transactional outbox); the worker sends it later. The caller answers the same whatever
// happened here, so nobody learns who is on a list.
import type { Deps } from '../deps.js';
import { messageId } from '../mail/transport.js';
import type { Trx } from '../db/database.js';
import { DomainError } from '../errors.js';
import type { Locale } from '../i18n.js';
import { appendConsentEvent } from './ledger.js';
import * as store from './store.js';
import { CONFIRM_TTL_MS } from './tokens.js';

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
}

/** Who asked, as evidence: the client, its browser and the page whose form posted. */
export interface RequestContext {
  ip: string | null;
  userAgent: string | null;
  page: string | null;
}

export type SignupOutcome = 'mailed' | 'already_confirmed' | 'throttled';

/** The list named, or the only one when none is named (a form without a list field). */
async function listSlug(trx: Trx, slug: string | undefined): Promise<string> {
  if (slug !== undefined) return slug;
  const lists = await store.findOnlyLists(trx);
  if (lists.length === 0) throw new DomainError('list_not_found', 'there is no list yet');
  if (lists.length > 1) {
    throw new DomainError('list_required', 'choose a list', { list: 'required when more than one list exists' });
  }
  return lists[0]!.slug;
}

export async function signup(
  deps: Pick<Deps, 'db' | 'clock' | 'config' | 'signer' | 'mailTemplates' | 'log'>,
  request: SignupRequest,
  context: RequestContext,
): Promise<SignupOutcome> {
  return deps.db.transaction().execute(async (trx) => {
    const slug = await listSlug(trx, request.listSlug);
    const found = await store.upsertSignup(trx, { listSlug: slug, email: request.email, locale: request.locale });
    if (!found) throw new DomainError('list_not_found', `there is no list "${slug}"`);
    const { list, subscriber, subscription } = found;
    if (subscription.status === 'confirmed') return 'already_confirmed';

    const now = deps.clock();
    const lastMail = subscription.last_confirmation_mail_at?.getTime();
    if (lastMail !== undefined && now - lastMail < RESEND_INTERVAL_MS) return 'throttled';
    const { head, mailsSince } = await store.signupHead(trx, subscriber.id, new Date(now - DAY_MS));
    if (mailsSince >= DAILY_CONFIRMATION_CAP) return 'throttled';

    const token = deps.signer.signConfirm({
      subscriberId: subscriber.id, listId: list.id, issuedAt: now, expiresAt: now + CONFIRM_TTL_MS,
    });
    const confirmUrl = `${deps.config.publicUrl}/confirm/${token}`;
    const mail = deps.mailTemplates.renderConfirmation({
      locale: request.locale, email: subscriber.email, listName: list.name, consentText: list.consentText, confirmUrl,
    });
    const id = messageId(deps.config.mailFrom);
    const fields: Record<string, string> = { locale: request.locale };
    if (list.fields.includes('first_name') && request.firstName) fields.first_name = request.firstName;
    if (list.fields.includes('last_name') && request.lastName) fields.last_name = request.lastName;

    await appendConsentEvent(trx, head, {
      subscriberId: subscriber.id,
      listId: list.id,
      kind: 'requested',
      evidence: {
        ip: context.ip,
        user_agent: context.userAgent,
        page: context.page,
        form: { email: subscriber.email, ...fields },
        list: { id: list.id, slug: list.slug, name: list.name },
        consent: { version: list.consentVersion, text: list.consentText },
        mail: { message_id: id, subject: mail.subject, text: mail.text },
      },
    });
    const pendingSince = subscription.status === 'pending' && subscription.pending_since
      ? subscription.pending_since : new Date(now);
    await store.markSubscriptionRequested(trx, { subscriberId: subscriber.id, listId: list.id }, {
      now: new Date(now), pendingSince, fields, consentVersion: list.consentVersion,
      mail: { kind: 'confirmation', recipient: subscriber.email, messageId: id, subject: mail.subject, html: mail.html, text: mail.text },
    });
    if (!deps.config.smtpUrl) deps.log.info({ confirm_url: confirmUrl }, 'confirmation mail written to the outbox folder');
    return 'mailed';
  });
}
