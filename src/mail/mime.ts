// Builds each outgoing mail as one MIME string, synchronously, for nodemailer to send as
// `raw`. nodemailer's own composer streams every part through several transforms in small
// pieces, and that took two thirds of a campaign worker's CPU. The header block is still
// nodemailer's (MimeNode: address and encoded-word formatting, folding, Date, MIME-Version)
// and so is the quoted-printable encoder; only the body pipeline is ours.
//
// The shape is always the same: multipart/alternative with a text and an HTML part, both
// UTF-8 and quoted-printable. Quoted-printable is line-local once lines end in CRLF, and a
// campaign's mails differ from each other in a few lines (a greeting, the links), so the
// lines equal to the last mail's are not encoded again.
import { randomUUID } from 'node:crypto';
import type { MailTag } from './envelope.js';
import MimeNode from 'nodemailer/lib/mime-node';
import { encodeWord, isPlainText, quoteString } from 'nodemailer/lib/mime-funcs';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp';

export interface OutgoingMail {
  from: string;
  to: string;
  subject: string;
  html: string;
  text: string;
  messageId: string;
  /** The mail's signed tag (mail/envelope.ts): its envelope sender and provider headers. */
  tag?: MailTag | undefined;
  headers?: Record<string, string>;
  /** List-* headers (RFC 2369, RFC 2919), as nodemailer's `list` option takes them. */
  list?: Record<string, { url: string; comment?: string }>;
}

export interface BuiltMessage {
  raw: string;
  envelope: { from: string; to: string[] };
}

// The last few bodies encoded, line by line: a mail whose lines match one of them line for
// line takes the encoding of each equal line from it, so only the lines that differ (a
// greeting, the links) are encoded. Comparing two strings is far cheaper than hashing them.
interface EncodedBody {
  lines: string[];
  encoded: string[];
}
const RECENT_BODIES = 8;
const recentBodies: EncodedBody[] = [];

const encodeLine = (line: string) => qpWrap(qpEncode(line), 76);

/** Quoted-printable (RFC 2045 §6.7) with CRLF line ends, whatever line ends the text had. */
export function quotedPrintable(text: string): string {
  const lines = (text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text).split('\n');
  const index = recentBodies.findIndex((body) => body.lines.length === lines.length);
  const like = index >= 0 ? recentBodies.splice(index, 1)[0] : undefined;
  const encoded = lines.map((line, i) => (like && like.lines[i] === line ? like.encoded[i]! : encodeLine(line)));
  recentBodies.unshift({ lines, encoded });
  if (recentBodies.length > RECENT_BODIES) recentBodies.pop();
  return encoded.join('\r\n');
}

// The List-* header values, formatted as nodemailer formats its `list` option.
function listUrl(url: string): string {
  const clean = url.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, '').replace(/[\s<]+|[\s>]+/g, '');
  if (/^(https?|mailto|ftp):/.test(clean)) return `<${clean}>`;
  if (/^[^@]+@[^@]+$/.test(clean)) return `<mailto:${clean}>`;
  return `<http://${clean}>`;
}

function listHeaderValue(key: string, value: { url: string; comment?: string }): string {
  const raw = (value.comment ?? '').replace(/\r?\n|\r/g, ' ');
  const needsEncoding = !isPlainText(raw) || /\x7f/.test(raw);
  if (key === 'id') {
    // List-Id: "comment" <domain>: the identifier carries no scheme.
    const comment = needsEncoding ? encodeWord(raw) : quoteString(raw);
    return `${raw ? `${comment} ` : ''}${listUrl(value.url).replace(/^<[^:]+:\/{0,2}/, '<')}`;
  }
  const comment = needsEncoding ? encodeWord(raw) : raw.replace(/[()\\]/g, '\\$&');
  return listUrl(value.url) + (raw ? ` (${comment})` : '');
}

const PART_HEADERS = {
  text: 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable',
  html: 'Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable',
};

export function buildMessage(mail: OutgoingMail): BuiltMessage {
  // The boundary's random part from randomUUID, which draws on a cached pool of entropy;
  // MimeNode's own default asks the system for 8 bytes each time.
  const root = new MimeNode('multipart/alternative', { baseBoundary: randomUUID().replaceAll('-', '') });
  root.setHeader('From', mail.from);
  root.setHeader('To', mail.to);
  root.setHeader('Subject', mail.subject);
  root.setHeader('Message-ID', mail.messageId);
  for (const [key, value] of Object.entries(mail.list ?? {})) {
    root.addHeader(`List-${key}`, { prepared: true, foldLines: true, value: listHeaderValue(key.toLowerCase(), value) });
  }
  for (const [key, value] of Object.entries(mail.headers ?? {})) root.setHeader(key, value);
  // Folded, never encoded: the tag headers are ASCII, and the providers read them as they are.
  for (const [key, value] of Object.entries(mail.tag?.headers ?? {})) root.setHeader(key, { prepared: true, foldLines: true, value });
  const headers = root.buildHeaders();
  const boundary = `--${root.boundary as string}`;
  const raw = `${headers}\r\n\r\n`
    + `${boundary}\r\n${PART_HEADERS.text}\r\n\r\n${quotedPrintable(mail.text)}\r\n`
    + `${boundary}\r\n${PART_HEADERS.html}\r\n\r\n${quotedPrintable(mail.html)}\r\n`
    + `${boundary}--\r\n`;
  const envelope = root.getEnvelope();
  return { raw, envelope: { from: mail.tag?.envelopeFrom ?? (envelope.from || ''), to: envelope.to } };
}
