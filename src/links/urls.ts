// The links we put in mails, each carrying a signed token (tokens.ts) under PUBLIC_URL. Both
// consent/ and campaigns/ mint them, so they live here, below both.
import type { Deps } from '../deps.js';
import { CONFIRM_TTL_MS, PREFERENCES_TTL_MS, RECEIPT_LINK_TTL_MS, RECONSENT_TTL_MS } from './tokens.js';

type LinkDeps = Pick<Deps, 'config' | 'signer' | 'clock'>;

export interface RecipientLinks {
  unsubscribeUrl: string;
  preferencesUrl: string;
}

/**
 * A confirm link and its token (the request's evidence keeps the mail with the token's hash
 * in its place). `issuedAt` is the signup's own time: the link counts from the pending request on.
 */
export function confirmLink(deps: Pick<LinkDeps, 'config' | 'signer'>, claims: { subscriberId: string; listId: string; issuedAt: number }): {
  token: string; url: string;
} {
  const token = deps.signer.signConfirm({ ...claims, expiresAt: claims.issuedAt + CONFIRM_TTL_MS });
  return { token, url: `${deps.config.publicUrl}/confirm/${token}` };
}

export function preferencesUrl(deps: LinkDeps, subscriberId: string): string {
  const token = deps.signer.signPreferences({ subscriberId, expiresAt: deps.clock() + PREFERENCES_TTL_MS });
  return `${deps.config.publicUrl}/preferences/${token}`;
}

/** Where the person downloads their consent receipt (the "confirmed" page links it). */
export function receiptUrl(deps: LinkDeps, subscriberId: string): string {
  return `${deps.config.publicUrl}/receipt/${deps.signer.signReceipt({ subscriberId, expiresAt: deps.clock() + RECEIPT_LINK_TTL_MS })}`;
}

/** The links of one campaign mail: one-click unsubscribe from its list, and the person's preferences. */
export function recipientLinks(deps: LinkDeps, subscriberId: string, listId: string): RecipientLinks {
  return {
    unsubscribeUrl: `${deps.config.publicUrl}/u/${deps.signer.signUnsubscribe({ subscriberId, listId })}`,
    preferencesUrl: preferencesUrl(deps, subscriberId),
  };
}

/**
 * The links a preview shows: where they lead, with no token that works. A preview answers an
 * API key, and the person's own links would let that key unsubscribe them or change their
 * preferences as if it were them, with their click in the evidence.
 */
export function previewLinks(config: Deps['config']): RecipientLinks {
  return { unsubscribeUrl: `${config.publicUrl}/u/preview`, preferencesUrl: `${config.publicUrl}/preferences/preview` };
}

/** The re-consent link: a page showing old and new wording, whose button POSTs the agreement. */
export function reconsentUrl(deps: LinkDeps, claims: { subscriberId: string; listId: string; version: number }): string {
  return `${deps.config.publicUrl}/reconsent/${deps.signer.signReconsent({ ...claims, expiresAt: deps.clock() + RECONSENT_TTL_MS })}`;
}
