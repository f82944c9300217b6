// The original: the mail of ours a report is about, as the report quotes it back, whole
// (message/rfc822), as headers only (text/rfc822-headers), or pasted into the text of a
// plain-text bounce. Its Message-ID and Return-Path are how a report finds our mail when
// no VERP tag survived.
import { ADDRESS, bareAddress, distinct, normaliseMessageId } from './classify.js';
import { firstField, parseFieldBlock, type Fields } from './fields.js';
import { originalCopyText } from './plaintext.js';

export const ORIGINAL_TYPES = new Set([
  'message/rfc822', 'message/global', 'text/rfc822-headers', 'message/rfc822-headers', 'message/global-headers',
]);

export interface Original {
  headers: Fields;
  messageId: string | null;
  /**
   * Its envelope sender as the receiving server recorded it (Return-Path, the SPF and
   * Authentication-Results verdicts): where a VERP tag is.
   */
  envelopeSenders: string[];
  /** Who it was addressed to: Microsoft JMRP's X-HmXmrOriginalRecipient, else its To. */
  recipients: string[];
}

const MESSAGE_ID_LINE = /^message-id:[ \t]*(.+)$/im;
const RETURN_PATH_LINE = /^return-path:[ \t]*(.+)$/im;
const ADDRESSES = new RegExp(ADDRESS.source, 'g');

/** The original from an attached part's text. */
export function readAttachedOriginal(partText: string): Original {
  const headers = parseFieldBlock(partText);
  // RFC 5965's own example puts a blank line inside the attached headers, so a Message-ID
  // missed by the header block is looked for in the rest of the part.
  const messageId = normaliseMessageId(firstField(headers, 'message-id')) ?? messageIdIn(partText);
  const complainer = firstField(headers, 'x-hmxmroriginalrecipient');
  return {
    headers,
    messageId,
    envelopeSenders: envelopeSendersIn(headers),
    recipients: complainer ? distinct([bareAddress(complainer)]) : addressesIn(headers.get('to') ?? []),
  };
}

/** The original as pasted after a plain-text bounce's own words, if it is there. */
export function readInlineOriginal(text: string): Original | undefined {
  const copy = originalCopyText(text);
  if (!copy) return undefined;
  return {
    headers: new Map(),
    messageId: messageIdIn(copy),
    envelopeSenders: distinct([bareAddress(RETURN_PATH_LINE.exec(copy)?.[1])]),
    recipients: [],
  };
}

/** Every address in some header values. */
export function addressesIn(values: readonly string[]): string[] {
  return distinct(values.flatMap((value) => value.match(ADDRESSES) ?? []).map((address) => address.replace(/\.$/, '')));
}

// RFC 8601 `smtp.mailfrom=` (and the older `smtp.mail=`), RFC 7208 `envelope-from=`.
const RECORDED_SENDER = /\b(?:smtp\.mail(?:from)?|envelope-from)=<?([^\s;<>"@]{1,64}@[^\s;<>"@]{1,255})/gi;

function envelopeSendersIn(headers: Fields): string[] {
  const verdicts = [...(headers.get('authentication-results') ?? []), ...(headers.get('received-spf') ?? [])];
  return distinct([
    bareAddress(firstField(headers, 'return-path')),
    ...verdicts.flatMap((value) => [...value.matchAll(RECORDED_SENDER)].map((match) => bareAddress(match[1]))),
  ]);
}

function messageIdIn(text: string): string | null {
  // A Message-ID sits among headers, so the start of a long original is enough.
  return normaliseMessageId(MESSAGE_ID_LINE.exec(text.slice(0, 256 * 1024))?.[1]);
}
