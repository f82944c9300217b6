// Mail that comes back to the bounce address but is no bounce: out-of-office and vacation
// replies, and challenge-response systems asking us to prove we are human. They must
// change nothing (the contract), so they are recognised before any text heuristics run.
import { firstField, type Fields } from './fields.js';

// Headers that only automatic responders set. RFC 3834's Auto-Submitted is not among them:
// Postfix and Exim put "auto-replied" on their bounces too, so it only decides when
// nothing else marks the message as a bounce (see report.ts).
const RESPONDER_HEADERS = ['x-autoreply', 'x-autorespond', 'x-autoresponder', 'x-autoresponse', 'x-vacation'];

// Subject openings of automatic replies, from the languages our subscribers write in and
// the clients that write them (Outlook, Gmail, Apple Mail, Thunderbird, webmail). Matched
// at the start only, after any "[" or "Re:", so "Undeliverable: Out of office deals" stays
// a bounce.
const AUTO_REPLY_SUBJECTS = [
  // English
  'auto(?:matic|mated)?[ -]?(?:reply|response|answer)', 'autoreply', 'out of (?:the )?office', 'away from (?:the |my )?office',
  'on vacation', 'vacation (?:reply|notice|message)', 'absence notice',
  // German
  'abwesenheitsnotiz', 'automatische antwort', 'abwesend', 'nicht im b[üu]ro',
  // French
  'r[ée]ponse automatique', 'absent(?:e)? du bureau', "message d'absence", 'absence du bureau',
  // Spanish, Portuguese, Italian, Dutch
  'respuesta autom[áa]tica', 'fuera de la oficina', 'resposta autom[áa]tica', 'fora do escrit[óo]rio',
  'risposta automatica', 'fuori sede', 'fuori ufficio', 'automatisch antwoord', 'afwezig',
  // Polish, Czech, Hungarian, Turkish, Finnish, Swedish, Danish, Norwegian
  'automatyczna odpowied[źz]', 'nieobecno[śs][ćc]', 'automatick[áa] odpov[ěe]d', 'automatikus v[áa]lasz',
  'otomatik (?:yan[ıi]t|cevap)', 'ofis d[ıi][şs][ıi]nda', 'automaattinen vastaus', 'poissa toimistolta',
  'automatiskt svar', 'automatisk svar', 'autosvar', 'frånvaro', 'fravær',
  // Russian, Ukrainian, Japanese, Chinese, Korean
  'автоответ', 'автоматический ответ', 'автовідповідь', 'отсутствую', '自動応答', '自動返信', '不在', '自动回复', '自動回覆', '자동 응답',
];
const AUTO_REPLY_SUBJECT = new RegExp(`^(?:\\s|\\[|\\(|(?:re|aw|sv|vs|antw|odp|r):)*(?:${AUTO_REPLY_SUBJECTS.join('|')})`, 'iu');

// Challenge-response services, by the domains they send from and the words they use.
const CHALLENGE_SENDERS = /@(?:[a-z0-9-]+\.)*(?:boxbe\.com|spamarrest\.com|mailblocks\.com|bluebottle\.com|sendio\.com|qurb\.com|choicemail\.com)\b/i;
const CHALLENGE_WORDS = /waitlisted|guest list|not pre-?approved|challenge[- ]response|(?:confirm|prove|verify) (?:that )?you are (?:a )?(?:human|real person|not a (?:robot|spammer))|add yourself to my (?:approved|allowed|safe|guest)/i;

/** Whether the message is an automatic reply by its headers and subject. */
export function isAutoReply(headers: Fields, subject: string): boolean {
  if (RESPONDER_HEADERS.some((name) => headers.has(name))) return true;
  const precedence = firstField(headers, 'precedence')?.toLowerCase();
  if (precedence === 'auto_reply' || precedence === 'auto-reply') return true;
  if (firstField(headers, 'x-apple-action')?.toUpperCase() === 'VACATION') return true;
  return AUTO_REPLY_SUBJECT.test(subject.slice(0, 200));
}

/** RFC 3834 `Auto-Submitted: auto-replied`, taken alone. */
export function saysAutoReplied(headers: Fields): boolean {
  return /^auto-replied\b/i.test(firstField(headers, 'auto-submitted') ?? '');
}

/** Whether a challenge-response system sent it, whatever shape it took. */
export function isChallengeResponse(headers: Fields, texts: readonly string[]): boolean {
  const senders = ['from', 'sender', 'return-path', 'reply-to'].map((name) => firstField(headers, name) ?? '');
  if (senders.some((sender) => CHALLENGE_SENDERS.test(sender))) return true;
  if ([...headers.keys()].some((name) => name.startsWith('x-boxbe'))) return true;
  return texts.some((text) => CHALLENGE_WORDS.test(text));
}
