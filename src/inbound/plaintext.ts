// Bounces without a message/delivery-status part: Exim ("Mail delivery failed"), qmail
// ("failure notice", "Remote host said:"), Gmail's older plain-text notices, and the text
// parts of Exchange and Office 365 reports. They say in words what a DSN says in fields.
import { bareAddress, classifyFailure, distinct, findStatus, normaliseDiagnostic, type FailureKind } from './classify.js';
import { firstField, type Fields } from './fields.js';

export interface TextBounce {
  kind: FailureKind;
  status: string | null;
  diagnostic: string | null;
  recipients: string[];
}

const BOUNCE_SENDER = /mailer-daemon|postmaster|mail delivery (?:system|subsystem)|mail administrator/i;
const BOUNCE_SUBJECT = new RegExp('^(?:' + [
  'mail delivery failed', 'delivery status notification', 'undeliverable', 'undelivered mail', 'returned mail',
  'failure notice', 'delivery failure', 'delivery (?:has )?failed', 'message not delivered', 'mail system error',
  'warning: could not send', 'non remis', 'unzustellbar', 'nicht zustellbar', 'no se puede entregar', 'niet bezorgd',
  'non recapitabile', 'n[ãa]o entregue',
].join('|') + ')', 'i');
// Where the copy of the original starts, in the words of the MTAs that attach it inline.
const ORIGINAL_COPY = new RegExp('^[ \\t]*(?:' + [
  '-+ ?this is a copy of (?:the|your) message', '-+ ?below this line is a copy of the message', '-+ ?original message -+',
  'original message headers:?', 'original message details', '-+ ?the header of the original message', '-+ ?returned message -+',
  '-+ ?undelivered message -+', 'content-type: message/rfc822',
].join('|') + ')', 'im');
const TEMPORARY_WORDS = /temporar|delayed|will (?:keep trying|retry)|warning message only|not yet been delivered/i;
// The remote server's reply: a reply code at the start of a line or after "said:", "host
// […]:" and the like, with the indented lines that continue it.
const REMOTE_REPLY = /(?:^|[:\]])[ \t#]*([245]\d\d[ -][^\n]*(?:\n[ \t]+[^\n]+)*)/m;
const FAILED_LINE = /^[ \t]*<?([^\s<>@]{1,64}@[^\s<>@:]{1,255})>?:?[ \t]*$/gm;

/** Whether the message presents itself as a bounce (its sender, subject or X-Failed-Recipients). */
export function looksLikeBounce(headers: Fields, subject: string): boolean {
  if (headers.has('x-failed-recipients')) return true;
  const from = firstField(headers, 'from') ?? '';
  return BOUNCE_SENDER.test(from) || BOUNCE_SUBJECT.test(subject.trim().slice(0, 200));
}

/** The report's own words, without the copy of the original that follows them. */
export function leadText(text: string): string {
  const match = ORIGINAL_COPY.exec(text);
  return match ? text.slice(0, match.index) : text;
}

/** The text after the report's own words: where an inline copy of the original is. */
export function originalCopyText(text: string): string | null {
  const match = ORIGINAL_COPY.exec(text);
  return match ? text.slice(match.index) : null;
}

/** What a text bounce says, or undefined when it names no failed recipient. */
export function readTextBounce(headers: Fields, text: string): TextBounce | undefined {
  const lead = leadText(text);
  const recipients = failedRecipients(headers, lead);
  if (recipients.length === 0) return undefined;
  const reply = REMOTE_REPLY.exec(lead)?.[1] ?? null;
  const diagnostic = normaliseDiagnostic(reply);
  const status = findStatus(diagnostic) ?? findStatus(lead);
  const fallback = TEMPORARY_WORDS.test(lead) ? 'temporary' : 'permanent';
  return { kind: classifyFailure({ status, diagnostic, fallback }), status, diagnostic, recipients };
}

function failedRecipients(headers: Fields, lead: string): string[] {
  const listed = (headers.get('x-failed-recipients') ?? []).flatMap((value) => value.split(','));
  if (listed.length > 0) return distinct(listed.map(bareAddress));
  // An address alone on its line, bare or in angle brackets, as Exim, qmail, Postfix,
  // Sendmail and Gmail list the recipients that failed.
  return distinct([...lead.matchAll(FAILED_LINE)].map((match) => bareAddress(match[1])));
}
