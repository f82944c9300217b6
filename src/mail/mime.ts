// Builds each outgoing mail as one MIME string, synchronously, for nodemailer to send as
// `raw`. nodemailer's own composer streams every part through several transforms in small
// pieces, and that took two thirds of a campaign worker's CPU. The header block is still
// nodemailer's (MimeNode: address and encoded-word formatting, folding, Date, MIME-Version),
// written by MimeNode for the first mail of a kind and reused line for line by the next ones
// (below), and so is the quoted-printable encoder; only the body pipeline is ours.
//
// The shape is always the same: multipart/alternative with a text and an HTML part, both
// UTF-8 and quoted-printable. Quoted-printable is line-local once lines end in CRLF, and a
// campaign's mails differ from each other in a few lines (a greeting, the links), so the
// lines equal to the last mail's are not encoded again.
import { randomUUID } from 'node:crypto';
import type { MailTag } from './envelope.js';
import MimeNode from 'nodemailer/lib/mime-node';
import { encodeWord, foldLines, isPlainText, quoteString } from 'nodemailer/lib/mime-funcs';
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

/** An OutgoingMail whose bodies may be in pieces (BodyPieces), as a campaign's worker has them. */
export type PiecedMail = Omit<OutgoingMail, 'html' | 'text'> & { html: string | BodyPieces; text: string | BodyPieces };

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

/**
 * A run of a template's text with no Liquid in it, its whole lines encoded once per campaign:
 * a body made of such runs and the text Liquid wrote between them (BodyPieces) encodes only
 * the lines where the two meet (quotedPrintablePieces). Made only of text without a CR, so
 * that its line ends are the same wherever it stands.
 */
export class EncodedRun {
  /** Up to the run's first line end, and after its last one: the lines it shares with its neighbours. */
  readonly first: string;
  readonly last: string;
  /** The lines wholly inside the run, encoded and joined by CRLF; undefined when there are none. */
  readonly middle: string | undefined;
  readonly ends: number;

  constructor(readonly text: string) {
    const lines = text.split('\n');
    this.ends = lines.length - 1;
    this.first = lines[0]!;
    this.last = lines[lines.length - 1]!;
    this.middle = lines.length > 2 ? lines.slice(1, -1).map(encodeLine).join('\r\n') : undefined;
  }

  static fits = (text: string) => !text.includes('\r');
}

/** A body as Liquid wrote it: its own text, and the template's runs in between. */
export type BodyPieces = (string | EncodedRun)[];

export const joinPieces = (pieces: BodyPieces) => pieces.map((piece) => (typeof piece === 'string' ? piece : piece.text)).join('');

// Lines where a run meets what Liquid wrote recur from mail to mail where what it wrote does
// not (a link, say, is alone on its line): kept, up to a bound, with their encoding.
const SEAM_LINES = 4096;
const seamLines = new Map<string, string>();
function encodeSeam(line: string): string {
  let encoded = seamLines.get(line);
  if (encoded === undefined) {
    if (seamLines.size >= SEAM_LINES) seamLines.clear();
    encoded = encodeLine(line);
    seamLines.set(line, encoded);
  }
  return encoded;
}

/** quotedPrintable(joinPieces(pieces)), encoding only the lines that are not wholly inside a run. */
export function quotedPrintablePieces(pieces: BodyPieces): string {
  if (pieces.some((piece) => typeof piece === 'string' && piece.includes('\r'))) return quotedPrintable(joinPieces(pieces));
  const out: string[] = [];
  let line = '';
  for (const piece of pieces) {
    if (typeof piece === 'string') {
      let start = 0;
      for (let end = piece.indexOf('\n'); end >= 0; end = piece.indexOf('\n', start)) {
        out.push(encodeSeam(line + piece.slice(start, end)));
        line = '';
        start = end + 1;
      }
      line += start === 0 ? piece : piece.slice(start);
    } else if (piece.ends === 0) {
      line += piece.text;
    } else {
      out.push(encodeSeam(line + piece.first));
      if (piece.middle !== undefined) out.push(piece.middle);
      line = piece.last;
    }
  }
  out.push(encodeSeam(line));
  return out.join('\r\n');
}

const encodeBody = (body: string | BodyPieces) => (typeof body === 'string' ? quotedPrintable(body) : quotedPrintablePieces(body));

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

/** The header block as nodemailer's MimeNode writes it, with the boundary and envelope it chose. */
function composeHeaders(mail: PiecedMail): { headers: string; boundary: string; envelope: BuiltMessage['envelope'] } {
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
  const envelope = root.getEnvelope();
  return { headers, boundary: root.boundary as string, envelope: { from: mail.tag?.envelopeFrom ?? (envelope.from || ''), to: envelope.to } };
}

// A campaign's mails share most of their header block: From, Subject, List-Id,
// List-Unsubscribe-Post, MIME-Version and the Content-Type line bar its boundary. MimeNode
// formats the block for the first mail of a kind; the next ones take those lines from it and
// format only their own (To, Message-ID, Date, List-Unsubscribe, the tag headers), as MimeNode
// would: MimeNode's header block cost 0.17 ms of a mail's 2.5 ms in the worker's profile.

/** One header line of a kind's first block, and how each later mail of that kind writes it. */
type LineMaker = (mail: PiecedMail, boundary: string) => string | undefined;

interface HeaderShape {
  lines: LineMaker[];
  envelopeFrom: string;
}

const SHAPES = 16;
const shapes = new Map<string, HeaderShape | null>();

/** What the lines kept from a kind's first block depend on: all but the per-mail values. */
const shapeKey = (mail: PiecedMail) => JSON.stringify([
  mail.from, mail.subject, mail.headers ?? {},
  Object.entries(mail.list ?? {}).map(([key, value]) => (key.toLowerCase() === 'unsubscribe' ? [key, value.comment] : [key, value])),
  Object.keys(mail.tag?.headers ?? {}),
]);

// An address MimeNode writes as it is (a dot-atom at a lower-case ASCII domain, no label
// that punycode would read), and a Message-ID it leaves alone: anything else goes to MimeNode.
const PLAIN_TO = /^[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*@(?!.*--)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$/;
const PLAIN_ID = /^<[\x21-\x3b\x3d\x3f-\x7e]+>$/;
const FITS = 76;

// MimeNode's Date value, which changes once a second: made once a second.
let date = { second: Number.NaN, value: '' };
function dateValue(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== date.second) date = { second, value: new Date(now).toUTCString().replace(/GMT/, '+0000') };
  return date.value;
}

/** How a mail like `mail` writes each line of `headers` (MimeNode's block for it); null where a line cannot be made so. */
function shapeOf(mail: PiecedMail, headers: string, boundary: string, envelopeFrom: string): HeaderShape | null {
  const lines = headers.split(/\r\n(?![ \t])/);
  const names = lines.map((line) => line.slice(0, line.indexOf(':')));
  if (new Set(names).size !== names.length) return null;
  const listKeys = new Map(Object.keys(mail.list ?? {}).map((key) => [`List-${key}`.toLowerCase(), key]));
  const tagKeys = new Map(Object.keys(mail.tag?.headers ?? {}).map((key) => [key.toLowerCase(), key]));
  const makers = lines.map((line, i): LineMaker | undefined => {
    const name = names[i]!;
    const lower = name.toLowerCase();
    if (lower === 'to') return (m) => (PLAIN_TO.test(m.to) && name.length + 2 + m.to.length <= FITS ? `${name}: ${m.to}` : undefined);
    if (lower === 'message-id') return (m) => (PLAIN_ID.test(m.messageId) && name.length + 2 + m.messageId.length <= FITS ? `${name}: ${m.messageId}` : undefined);
    if (lower === 'date') return () => `${name}: ${dateValue()}`;
    if (lower === 'content-type') {
      if (!line.includes(boundary) || line.indexOf(boundary) !== line.lastIndexOf(boundary)) return undefined;
      const [before, after] = line.split(boundary) as [string, string];
      return (_m, b) => `${before}${b}${after}`;
    }
    const listKey = listKeys.get(lower);
    if (listKey === 'unsubscribe') return (m) => foldLines(`${name}: ${listHeaderValue('unsubscribe', m.list!.unsubscribe!)}`);
    const tagKey = tagKeys.get(lower);
    if (tagKey !== undefined) return (m) => foldLines(`${name}: ${m.tag!.headers[tagKey]!}`);
    return () => line;
  });
  if (makers.some((maker) => maker === undefined)) return null;
  return { lines: makers as LineMaker[], envelopeFrom };
}

/** The header block and envelope of a mail whose kind was seen before; undefined where only MimeNode will do. */
function headersLike(mail: PiecedMail, shape: HeaderShape, boundary: string) {
  const lines: string[] = [];
  for (const make of shape.lines) {
    const line = make(mail, boundary);
    if (line === undefined) return undefined;
    lines.push(line);
  }
  return { headers: lines.join('\r\n'), boundary, envelope: { from: mail.tag?.envelopeFrom ?? shape.envelopeFrom, to: [mail.to] } };
}

function headerBlock(mail: PiecedMail) {
  const key = shapeKey(mail);
  const shape = shapes.get(key);
  if (shape) {
    const made = headersLike(mail, shape, `--_NmP-${randomUUID().replaceAll('-', '')}-Part_1`);
    if (made) return made;
  }
  const composed = composeHeaders(mail);
  if (shape === undefined && (mail.tag === undefined || composed.envelope.from === mail.tag.envelopeFrom)) {
    if (shapes.size >= SHAPES) shapes.delete(shapes.keys().next().value!);
    // The envelope's sender is From's address, whatever the recipient: kept from this mail.
    const envelopeFrom = mail.tag ? composeHeaders({ ...mail, tag: undefined }).envelope.from : composed.envelope.from;
    shapes.set(key, composed.envelope.to.length === 1 && composed.envelope.to[0] === mail.to
      ? shapeOf(mail, composed.headers, composed.boundary, envelopeFrom) : null);
  }
  return composed;
}

export function buildMessage(mail: PiecedMail): BuiltMessage {
  const { headers, boundary: name, envelope } = headerBlock(mail);
  const boundary = `--${name}`;
  const raw = `${headers}\r\n\r\n`
    + `${boundary}\r\n${PART_HEADERS.text}\r\n\r\n${encodeBody(mail.text)}\r\n`
    + `${boundary}\r\n${PART_HEADERS.html}\r\n\r\n${encodeBody(mail.html)}\r\n`
    + `${boundary}--\r\n`;
  return { raw, envelope };
}
