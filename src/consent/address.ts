// Normalising what people type into a signup form.
import { createHash } from 'node:crypto';
import { domainToASCII } from 'node:url';

// RFC 5322 dot-atom characters. Non-ASCII local parts (RFC 6531) are refused: few relays
// accept SMTPUTF8, and a mail that cannot be delivered is a signup that cannot be confirmed.
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * The address as we store and mail it: trimmed, domain lower-cased and IDN domains in
 * punycode (so `ü` and a homoglyph are told apart by their ASCII form), or undefined when
 * it is not a deliverable address. Limits are RFC 5321 §4.5.3.1: local part 64 octets,
 * domain 255, and the whole path 256 with its angle brackets, so 254.
 */
export function normaliseEmail(input: string): string | undefined {
  const trimmed = input.trim();
  if (trimmed.length > 254 || /[\p{Cc}\s]/u.test(trimmed)) return undefined;
  const at = trimmed.lastIndexOf('@');
  if (at < 1) return undefined;
  const local = trimmed.slice(0, at);
  const domain = domainToASCII(trimmed.slice(at + 1).replace(/\.$/, '').toLowerCase());
  if (local.length > 64 || !LOCAL_PART.test(local)) return undefined;
  if (!domain || domain.length > 255) return undefined;
  const labels = domain.split('.');
  if (labels.length < 2 || !labels.every((label) => LABEL.test(label))) return undefined;
  if (/^\d+$/.test(labels.at(-1)!)) return undefined; // an IP address, not a domain
  const address = `${local}@${domain}`;
  return address.length <= 254 ? address : undefined;
}

/**
 * How addresses are matched: local parts differ only in case for almost every provider. The
 * signup throttles count wider, per mailbox (`subscribers.mailbox_key`, migration 0004), so
 * that `Jane.Doe+x@gmail.com` and `janedoe@googlemail.com` share one cap.
 */
export function emailKey(email: string): string {
  return email.toLowerCase();
}

/** What suppressions keep instead of the address. */
export function addressHash(email: string): Buffer {
  return createHash('sha256').update(emailKey(email)).digest();
}

// C0/C1 controls (CR and LF among them) and the bidirectional overrides and isolates that
// can make a name display as something else.
const UNSAFE = /[\p{Cc}\u200E\u200F\u202A-\u202E\u2066-\u2069]/gu;

/** A name as stored: unsafe characters removed, whitespace collapsed; empty becomes null. */
export function cleanName(input: string | undefined): string | null {
  if (input === undefined) return null;
  const cleaned = input.replace(UNSAFE, ' ').replace(/\s+/g, ' ').trim();
  return cleaned.length > 0 ? cleaned : null;
}
