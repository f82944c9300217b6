// A raw message (from the SMTP listener or POST /api/v1/inbound) to one InboundReport.
// mailparser reads the MIME; the report parts it hands over as bytes are read by fields.ts.
// Order matters: feedback reports (ARF, Microsoft JMRP); challenge-response mail, which
// may dress as a DSN; RFC 3464 delivery status; auto-replies, which Postfix-style
// "Auto-Submitted" headers do not tell from bounces; and last the words of MTAs that write
// no DSN. Garbage in any form is `not_a_report`, never an exception.
import { simpleParser, type SimpleParserOptions } from 'mailparser';
import { isAutoReply, isChallengeResponse, saysAutoReplied } from './autoreply.js';
import {
  bareAddress, classifyFailure, classifyFeedback, distinct, findStatus, hashedId, normaliseDiagnostic,
  normaliseMessageId, parseDate, worstOf, type FailureKind,
} from './classify.js';
import { firstField, parseFieldBlock, parseFieldGroups, type Fields } from './fields.js';
import { addressesIn, ORIGINAL_TYPES, readAttachedOriginal, readInlineOriginal, type Original } from './original.js';
import { leadText, looksLikeBounce, readTextBounce } from './plaintext.js';
import type { IgnoredBecause, InboundReport } from './types.js';

export interface ReadReportOptions {
  /** RCPT TO of the SMTP session, when there was one: the surest place for a VERP tag. */
  envelopeRecipients?: readonly string[];
  /** Bytes past this are not read: a report says what it is near its start. */
  maxBytes?: number;
}

/** 1 MiB: a bounce with our largest mail attached fits; a flood of bytes costs no more. */
export const DEFAULT_MAX_REPORT_BYTES = 1024 * 1024;

const PARSER_OPTIONS: SimpleParserOptions = {
  // Attached originals stay bytes, so their headers (Message-ID, Return-Path) can be read.
  ignoreEmbedded: true,
  keepDeliveryStatus: true,
  skipImageLinks: true,
  skipTextToHtml: true,
  skipTextLinks: true,
  checksumAlgo: false,
  maxHtmlLengthToParse: 256 * 1024,
  maxHeadSize: 256 * 1024,
  // Bounds the parts (and so the nesting) of a message; more makes mailparser refuse it.
  maxChildNodes: 256,
};
// What the rules read of each part: a report says what it is in its first lines, and an
// original's headers come first. Keeps every regular expression's input bounded.
const PART_MAX_BYTES = 128 * 1024;
const TEXT_MAX_CHARS = 128 * 1024;
const DSN_TYPES = new Set(['message/delivery-status', 'message/global-delivery-status']);
const VERP_HEADERS = ['x-original-to', 'delivered-to', 'envelope-to', 'to'];
const MAX_VERP_CANDIDATES = 20;

interface Message {
  headers: Fields;
  subject: string;
  text: string;
  parts: { contentType: string; text: string }[];
}

type Verdict = Pick<InboundReport, 'kind' | 'ignoredBecause' | 'status' | 'diagnostic' | 'recipients' | 'feedbackType'>;

interface RecipientOutcome { address: string; kind: FailureKind; status: string | null; diagnostic: string | null }

export async function parseReportMessage(raw: Uint8Array, options: ReadReportOptions = {}): Promise<InboundReport> {
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const message = await readMessage(bytes.subarray(0, options.maxBytes ?? DEFAULT_MAX_REPORT_BYTES));
  const envelope = distinct(options.envelopeRecipients ?? []);
  if (!message) {
    return { ...BLANK, ...ignored('unparseable'), reportId: hashedId('smtp', 'bytes', bytes), verpCandidates: envelope };
  }
  const original = originalOf(message);
  const reportMessageId = normaliseMessageId(firstField(message.headers, 'message-id'));
  return {
    ...BLANK,
    ...judge(message, original),
    reportId: reportMessageId ? hashedId('smtp', 'message-id', reportMessageId) : hashedId('smtp', 'bytes', bytes),
    originalMessageId: original?.messageId ?? normaliseMessageId(firstField(message.headers, 'in-reply-to')),
    verpCandidates: verpCandidates(message, original, envelope),
    reportedAt: parseDate(firstField(message.headers, 'date')),
  };
}

const BLANK: Omit<InboundReport, 'reportId'> = {
  provider: 'smtp', kind: 'not_a_report', ignoredBecause: null, status: null, diagnostic: null, recipients: [],
  feedbackType: null, originalMessageId: null, providerMessageId: null, verpCandidates: [], reportedAt: null,
};

function ignored(because: IgnoredBecause): Verdict {
  return { kind: 'not_a_report', ignoredBecause: because, status: null, diagnostic: null, recipients: [], feedbackType: null };
}

async function readMessage(bytes: Buffer): Promise<Message | undefined> {
  if (bytes.length === 0) return undefined;
  try {
    const parsed = await simpleParser(bytes, PARSER_OPTIONS);
    const headers = new Map<string, string[]>();
    for (const { key, line } of parsed.headerLines) {
      const value = line.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]*/g, ' ').trim();
      const values = headers.get(key);
      if (values) values.push(value);
      else headers.set(key, [value]);
    }
    const parts = parsed.attachments.map((part) => ({
      contentType: part.contentType.toLowerCase(),
      text: part.content.subarray(0, PART_MAX_BYTES).toString('utf8'),
    }));
    return { headers, subject: parsed.subject ?? '', text: (parsed.text ?? '').slice(0, TEXT_MAX_CHARS), parts };
  } catch {
    // mailparser refuses what breaks its limits (too many parts, a huge header): not a report.
    return undefined;
  }
}

function originalOf(message: Message): Original | undefined {
  const part = message.parts.find((candidate) => ORIGINAL_TYPES.has(candidate.contentType));
  return part ? readAttachedOriginal(part.text) : readInlineOriginal(message.text);
}

function judge(message: Message, original: Original | undefined): Verdict {
  const feedback = message.parts.find((part) => part.contentType === 'message/feedback-report');
  if (feedback) return fromFeedbackReport(parseFieldBlock(feedback.text), original);
  // Microsoft JMRP: no feedback-report part, the complainer only in the attached original.
  if (original?.headers.has('x-hmxmroriginalrecipient')) return fromFeedbackReport(new Map(), original);
  const statusTexts = message.parts.filter((part) => DSN_TYPES.has(part.contentType)).map((part) => part.text);
  const lead = leadText(message.text);
  const dsn = fromDeliveryStatus(statusTexts);
  if (isChallengeResponse(message.headers, [lead, ...statusTexts])) {
    // What its DSN dress said stays as evidence; it names nobody to act on.
    return { ...ignored('challenge_response'), status: dsn?.status ?? null, diagnostic: dsn?.diagnostic ?? null };
  }
  if (dsn) return dsn;
  if (isAutoReply(message.headers, message.subject)) return ignored('auto_reply');
  const textBounce = looksLikeBounce(message.headers, message.subject) ? readTextBounce(message.headers, message.text) : undefined;
  if (textBounce) return { ...textBounce, ignoredBecause: null, feedbackType: null };
  return ignored(saysAutoReplied(message.headers) ? 'auto_reply' : 'unrecognised');
}

function fromFeedbackReport(fields: Fields, original: Original | undefined): Verdict {
  const feedbackType = firstField(fields, 'feedback-type');
  const reported = distinct((fields.get('original-rcpt-to') ?? []).map(bareAddress));
  return {
    ...classifyFeedback(feedbackType),
    status: null,
    diagnostic: null,
    recipients: reported.length > 0 ? reported : original?.recipients ?? [],
    feedbackType,
  };
}

/** RFC 3464: one outcome per recipient group; the report says the worst of them. */
function fromDeliveryStatus(texts: readonly string[]): Verdict | undefined {
  const outcomes = texts.flatMap((text) => parseFieldGroups(text)).flatMap((group) => recipientOutcome(group) ?? []);
  const kind = worstOf(outcomes);
  if (!kind) return undefined;
  const worst = outcomes.filter((outcome) => outcome.kind === kind);
  return {
    kind,
    ignoredBecause: null,
    status: worst.find((outcome) => outcome.status)?.status ?? null,
    diagnostic: worst.find((outcome) => outcome.diagnostic)?.diagnostic ?? null,
    recipients: distinct(worst.map((outcome) => outcome.address)),
    feedbackType: null,
  };
}

function recipientOutcome(group: Fields): RecipientOutcome | undefined {
  // Original-Recipient is the address as we gave it in RCPT TO; Final-Recipient may be an
  // alias it was rewritten to (the Exchange 5.7.1 sample).
  const original = firstField(group, 'original-recipient');
  const address = (original && /^\s*rfc822\s*;/i.test(original) ? bareAddress(original) : null)
    ?? bareAddress(firstField(group, 'final-recipient'));
  if (!address) return undefined;
  const diagnostic = normaliseDiagnostic(firstField(group, 'diagnostic-code'));
  const status = findStatus(firstField(group, 'status')) ?? findStatus(diagnostic);
  const action = firstField(group, 'action');
  return { address, status, diagnostic, kind: classifyFailure({ action, status, diagnostic, fallback: 'permanent' }) };
}

function verpCandidates(message: Message, original: Original | undefined, envelope: readonly string[]): string[] {
  const reportFields = message.parts
    .filter((part) => DSN_TYPES.has(part.contentType) || part.contentType === 'message/feedback-report')
    .map((part) => parseFieldBlock(part.text));
  const found = [
    ...envelope,
    ...addressesIn(VERP_HEADERS.flatMap((name) => message.headers.get(name) ?? [])),
    ...reportFields.flatMap((fields) => [bareAddress(firstField(fields, 'x-postfix-sender')), bareAddress(firstField(fields, 'original-mail-from'))]),
    ...(original?.envelopeSenders ?? []),
  ];
  return distinct(found).slice(0, MAX_VERP_CANDIDATES);
}
