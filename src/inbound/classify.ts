// The rules every source shares: which status means what, which feedback is a complaint,
// and how ids and texts are normalised. A DSN, an SES event and a SendGrid event with the
// same status come out the same.
import { createHash } from 'node:crypto';
import type { IgnoredBecause, ReportKind } from './types.js';

/** RFC 3463 enhanced status code: class.subject.detail, detail up to three digits (5.1.10). */
const ENHANCED_STATUS = /(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\d|\.\d)/;
/** An SMTP reply code at the start of a diagnostic (`smtp; 550 …`, `550-5.1.1 …`). */
const LEADING_REPLY_CODE = /^\s*(?:[a-z-]+;\s*)?([245])\d\d(?![\d.])/i;
// A full mailbox is the one 5.x.x that is not the address's fault for good (RFC 3463 files
// 5.2.2 under "mailbox status", and servers reuse 5.x.x codes for it in their own words).
const MAILBOX_FULL = new RegExp([
  'mailbox (?:is )?full', 'mailbox (?:size )?(?:limit|quota) exceeded', 'over ?quota', 'quota (?:exceeded|full)',
  'exceeded (?:the )?(?:storage|quota)', 'out of storage', 'insufficient (?:disk |storage )?space', 'inbox is full',
  'bo[iî]te (?:aux lettres )?pleine', 'postfach (?:ist )?voll', 'casella (?:di posta )?piena', 'buz[oó]n lleno',
].join('|'), 'i');
const DIAGNOSTIC_MAX_CHARS = 1000;
// Bounded like RFC 5321's local part (64) and domain (255), which also keeps a long run of
// non-address bytes from costing quadratic time.
export const ADDRESS = /[^\s<>"',;:()[\]@]{1,64}@[^\s<>"',;:()[\]@]{1,255}/;
const ADDRESS_IN_BRACKETS = /<([^<>\s@]{1,64}@[^<>\s@]{1,255})>/;

export type FailureKind = Extract<ReportKind, 'permanent' | 'temporary' | 'delivered'>;

/** The enhanced status code in a text, if any. */
export function findStatus(text: string | null | undefined): string | null {
  const match = text ? ENHANCED_STATUS.exec(text) : null;
  return match ? `${match[1]}.${match[2]}.${match[3]}` : null;
}

export function isMailboxFull(text: string | null | undefined): boolean {
  return !!text && MAILBOX_FULL.test(text);
}

/**
 * What one recipient's outcome means. The status class decides (a Postfix "Action: failed"
 * with 4.1.1 is still temporary); then the exceptions: a full mailbox (5.2.2, or a text
 * saying so) and 5.7.x (policy, spam filters, our own authentication: about the mail or
 * the sender, not the address) are temporary, so three of them in a row, not one, end the
 * subscription. Without any code the source's own verdict (`fallback`) stands.
 */
export function classifyFailure(outcome: {
  action?: string | null; status: string | null; diagnostic: string | null; fallback: FailureKind;
}): FailureKind {
  const action = outcome.action?.trim().toLowerCase();
  if (action === 'delayed') return 'temporary';
  if (action === 'delivered' || action === 'relayed' || action === 'expanded') return 'delivered';
  const statusClass = outcome.status?.[0] ?? LEADING_REPLY_CODE.exec(outcome.diagnostic ?? '')?.[1];
  if (statusClass === '2') return 'delivered';
  if (statusClass === '4') return 'temporary';
  if (outcome.status === '5.2.2' || outcome.status?.startsWith('5.7.') || isMailboxFull(outcome.diagnostic)) return 'temporary';
  if (statusClass === '5') return 'permanent';
  return outcome.fallback;
}

/**
 * A provider's own "hard" verdict, checked against the same exceptions (a full mailbox,
 * 5.7.x). A provider's "soft" verdict stays temporary: it is still trying, or knows the
 * address was not at fault.
 */
export function confirmPermanent(status: string | null, diagnostic: string | null): 'permanent' | 'temporary' {
  return classifyFailure({ status, diagnostic, fallback: 'permanent' }) === 'temporary' ? 'temporary' : 'permanent';
}

/** Most severe first, so a report naming several recipients says its worst. */
const SEVERITY: readonly FailureKind[] = ['permanent', 'temporary', 'delivered'];

export function worstOf<T extends { kind: FailureKind }>(outcomes: readonly T[]): FailureKind | undefined {
  return SEVERITY.find((kind) => outcomes.some((outcome) => outcome.kind === kind));
}

/**
 * Whether a feedback report is a person's complaint. RFC 5965 §7.3 types abuse, fraud and
 * other are (a feedback loop sends them when someone presses "spam"); unknown types count
 * as other, as the RFC says; a missing type is Microsoft JMRP's. auth-failure (RFC 6591),
 * not-spam and virus are reports about the mail, with no one asking to leave.
 */
export function classifyFeedback(feedbackType: string | null):
  { kind: 'complaint'; ignoredBecause: null } | { kind: 'not_a_report'; ignoredBecause: IgnoredBecause } {
  const type = feedbackType?.trim().toLowerCase();
  if (type === 'auth-failure' || type === 'not-spam' || type === 'virus') return { kind: 'not_a_report', ignoredBecause: 'not_a_complaint' };
  return { kind: 'complaint', ignoredBecause: null };
}

/** `<id@host>` as our outbox stores it, from `<id@host>`, `id@host` or a header value around it. */
export function normaliseMessageId(value: string | null | undefined): string | null {
  if (!value) return null;
  const bracketed = /<([^<>\s@]{1,250}@[^<>\s]{1,250})>/.exec(value);
  if (bracketed) return `<${bracketed[1]}>`;
  const bare = /^\s*([^<>\s@]{1,250}@[^<>\s@]{1,250})\s*$/.exec(value);
  return bare ? `<${bare[1]}>` : null;
}

/** A diagnostic as evidence: the `smtp;` type dropped, whitespace folded, bounded. */
export function normaliseDiagnostic(value: string | null | undefined): string | null {
  if (!value) return null;
  const text = value.replace(/^\s*(?:smtp|x-[a-z-]+|dns|mta);\s*/i, '').replace(/\s+/g, ' ').trim();
  return text ? text.slice(0, DIAGNOSTIC_MAX_CHARS) : null;
}

/** A bare address from `rfc822; a@b`, `<a@b>` or `Name <a@b>`; null when there is none. */
export function bareAddress(value: string | null | undefined): string | null {
  if (!value) return null;
  const typed = value.replace(/^\s*[a-z0-9-]+;\s*/i, '');
  const bracketed = ADDRESS_IN_BRACKETS.exec(typed);
  const address = bracketed?.[1] ?? ADDRESS.exec(typed)?.[0];
  return address ? address.replace(/\.$/, '') : null;
}

/** Unique, non-empty, in first-seen order. */
export function distinct(values: Iterable<string | null | undefined>): string[] {
  const seen = new Set<string>();
  for (const value of values) if (value) seen.add(value);
  return [...seen];
}

/** `<provider>:<sha256 hex>` of a labelled value, so no two kinds of id collide. */
export function hashedId(provider: string, label: string, value: string | Uint8Array): string {
  return `${provider}:${createHash('sha256').update(`${label}\0`).update(value).digest('hex')}`;
}

/** A Date from a header or ISO string, or null when it does not parse. */
export function parseDate(value: string | number | null | undefined): Date | null {
  if (value === null || value === undefined || value === '') return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}
