// Signed link tokens: `<payload>.<mac>`, both base64url. The payload is a short dot-separated
// record, the MAC an HMAC-SHA256 over the payload with the first of TOKEN_SECRETS; every
// secret verifies, so secrets rotate by putting a new one first and dropping the old one
// once its links no longer matter. Nothing is stored: the database only keeps a hash of a
// token that proved a click, as evidence.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type TokenPurpose = 'confirm' | 'unsubscribe' | 'preferences' | 'receipt' | 'reconsent';

/** `a` for re-consent: "agree" (issue 20); `r` was taken by the receipt. */
const PURPOSE_CODE: Record<TokenPurpose, string> = { confirm: 'c', unsubscribe: 'u', preferences: 'p', receipt: 'r', reconsent: 'a' };

/** Agreement to one list's material version, by one subscriber (issue 20). */
export interface ReconsentClaims {
  subscriberId: string;
  listId: string;
  version: number;
  expiresAt: number;
}

export type ReconsentCheck =
  | { ok: true; claims: ReconsentClaims }
  | { ok: false; reason: 'invalid' | 'expired' };


export interface ConfirmClaims {
  purpose: 'confirm';
  subscriberId: string;
  listId: string;
  /** Milliseconds since the epoch: a link issued before a withdrawal cannot undo it. */
  issuedAt: number;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

export type TokenCheck =
  | { ok: true; claims: ConfirmClaims }
  /** Not a token we could have made (garbled, truncated or signed with no key we know). */
  | { ok: false; reason: 'invalid' }
  /** Genuine but past its expiry; the claims say which subscription it was for. */
  | { ok: false; reason: 'expired'; claims: ConfirmClaims };

export const CONFIRM_TTL_MS = 7 * 24 * 3600 * 1000;
/** Preferences links in mails keep working this long; "Lost your mail?" sends a fresh one. */
export const PREFERENCES_TTL_MS = 180 * 24 * 3600 * 1000;
/** As long as a preferences link: the mail may sit unread for a while, and nothing is lost by waiting. */
export const RECONSENT_TTL_MS = PREFERENCES_TTL_MS;
/** The "confirmed" page's receipt link; later, the preferences page offers the receipt too. */
export const RECEIPT_LINK_TTL_MS = 30 * 24 * 3600 * 1000;

/** One-click unsubscribe: for one subscriber and list, and it never expires (RFC 8058 §3.2 asks for a URL that keeps working). */
export interface UnsubscribeClaims {
  subscriberId: string;
  listId: string;
}

export interface PreferencesClaims {
  subscriberId: string;
  expiresAt: number;
}

export type PreferencesCheck =
  | { ok: true; claims: PreferencesClaims }
  | { ok: false; reason: 'invalid' | 'expired' };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ID = /^[1-9]\d{0,18}$/;
const TIME = /^\d{1,15}$/;

function mac(secret: string, payload: string): Buffer {
  return createHmac('sha256', secret).update(payload).digest();
}

export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** SHA-256 of the token, kept as evidence that this link was used without keeping the link. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class TokenSigner {
  constructor(private readonly secrets: readonly string[]) {
    if (secrets.length === 0) throw new Error('at least one token secret is needed');
  }

  signConfirm(claims: Omit<ConfirmClaims, 'purpose'>): string {
    const fields = [PURPOSE_CODE.confirm, claims.subscriberId, claims.listId, String(claims.issuedAt), String(claims.expiresAt)];
    return this.sign(fields.join('.'));
  }

  /** `now` in milliseconds, from the injected clock. */
  verifyConfirm(token: string, now: number): TokenCheck {
    const payload = this.verify(token);
    if (payload === undefined) return { ok: false, reason: 'invalid' };
    const [purpose, subscriberId, listId, issued, expiry, ...rest] = payload.split('.');
    if (purpose !== PURPOSE_CODE.confirm || rest.length > 0 || !subscriberId || !UUID.test(subscriberId)
      || !listId || !ID.test(listId) || !issued || !TIME.test(issued) || !expiry || !TIME.test(expiry)) {
      return { ok: false, reason: 'invalid' };
    }
    const claims: ConfirmClaims = {
      purpose: 'confirm', subscriberId, listId, issuedAt: Number(issued), expiresAt: Number(expiry),
    };
    if (claims.expiresAt <= now) return { ok: false, reason: 'expired', claims };
    return { ok: true, claims };
  }

  signUnsubscribe(claims: UnsubscribeClaims): string {
    return this.sign([PURPOSE_CODE.unsubscribe, claims.subscriberId, claims.listId].join('.'));
  }

  verifyUnsubscribe(token: string): UnsubscribeClaims | undefined {
    const [purpose, subscriberId, listId, ...rest] = this.verify(token)?.split('.') ?? [];
    if (purpose !== PURPOSE_CODE.unsubscribe || rest.length > 0 || !subscriberId || !UUID.test(subscriberId) || !listId || !ID.test(listId)) {
      return undefined;
    }
    return { subscriberId, listId };
  }

  signPreferences(claims: PreferencesClaims): string {
    return this.signForSubscriber('preferences', claims);
  }

  verifyPreferences(token: string, now: number): PreferencesCheck {
    return this.verifyForSubscriber('preferences', token, now);
  }

  /** A link to the person's consent receipt only (the "confirmed" page's download): reads, changes nothing. */
  signReceipt(claims: PreferencesClaims): string {
    return this.signForSubscriber('receipt', claims);
  }

  verifyReceipt(token: string, now: number): PreferencesCheck {
    return this.verifyForSubscriber('receipt', token, now);
  }

  signReconsent(claims: ReconsentClaims): string {
    return this.sign([PURPOSE_CODE.reconsent, claims.subscriberId, claims.listId, String(claims.version), String(claims.expiresAt)].join('.'));
  }

  verifyReconsent(token: string, now: number): ReconsentCheck {
    const [code, subscriberId, listId, version, expiry, ...rest] = this.verify(token)?.split('.') ?? [];
    if (code !== PURPOSE_CODE.reconsent || rest.length > 0 || !subscriberId || !UUID.test(subscriberId) || !listId || !ID.test(listId)
      || !version || !/^[1-9]\d{0,8}$/.test(version) || !expiry || !TIME.test(expiry)) {
      return { ok: false, reason: 'invalid' };
    }
    const claims = { subscriberId, listId, version: Number(version), expiresAt: Number(expiry) };
    return claims.expiresAt <= now ? { ok: false, reason: 'expired' } : { ok: true, claims };
  }

  private signForSubscriber(purpose: 'preferences' | 'receipt', claims: PreferencesClaims): string {
    return this.sign([PURPOSE_CODE[purpose], claims.subscriberId, String(claims.expiresAt)].join('.'));
  }

  private verifyForSubscriber(purpose: 'preferences' | 'receipt', token: string, now: number): PreferencesCheck {
    const [code, subscriberId, expiry, ...rest] = this.verify(token)?.split('.') ?? [];
    if (code !== PURPOSE_CODE[purpose] || rest.length > 0 || !subscriberId || !UUID.test(subscriberId) || !expiry || !TIME.test(expiry)) {
      return { ok: false, reason: 'invalid' };
    }
    const claims = { subscriberId, expiresAt: Number(expiry) };
    return claims.expiresAt <= now ? { ok: false, reason: 'expired' } : { ok: true, claims };
  }

  private sign(payload: string): string {
    const encoded = Buffer.from(payload, 'utf8').toString('base64url');
    return `${encoded}.${mac(this.secrets[0]!, encoded).toString('base64url')}`;
  }

  /** The payload if some secret made this MAC, compared in constant time; else undefined. */
  private verify(token: string): string | undefined {
    if (token.length > 512) return undefined;
    const match = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!match) return undefined;
    const [, encoded, signature] = match as unknown as [string, string, string];
    const given = Buffer.from(signature, 'base64url');
    // base64url has spare bits in its last character: insist on the one canonical spelling,
    // so that every altered token is refused, not just most.
    if (given.length !== 32 || given.toString('base64url') !== signature) return undefined;
    const valid = this.secrets.some((secret) => timingSafeEqual(mac(secret, encoded), given));
    return valid ? Buffer.from(encoded, 'base64url').toString('utf8') : undefined;
  }
}
