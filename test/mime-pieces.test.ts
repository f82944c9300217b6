// What issue 21 added to the MIME builder (src/mail/mime.ts) against what it replaces: a
// header block reused from the first mail of a kind must be the block MimeNode writes for the
// mail itself, and a body from pieces must encode to the bytes of its joined text.
import fc from 'fast-check';
import MimeNode from 'nodemailer/lib/mime-node';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp';
import { describe, expect, it } from 'vitest';
import { type BodyPieces, buildMessage, EncodedRun, joinPieces, type OutgoingMail, quotedPrintablePieces } from '../src/mail/mime.js';

/** MimeNode's block for a mail, as buildMessage wrote every mail's before issue 21. */
function mimeNodeHeaders(mail: OutgoingMail, boundary: string): string {
  const root = new MimeNode('multipart/alternative', { baseBoundary: boundary });
  root.setHeader('From', mail.from);
  root.setHeader('To', mail.to);
  root.setHeader('Subject', mail.subject);
  root.setHeader('Message-ID', mail.messageId);
  for (const [key, value] of Object.entries(mail.list ?? {})) {
    const url = `<${value.url}>`;
    root.addHeader(`List-${key}`, { prepared: true, foldLines: true, value: key === 'id' ? `"${value.comment}" <${value.url}>` : url });
  }
  for (const [key, value] of Object.entries(mail.headers ?? {})) root.setHeader(key, value);
  for (const [key, value] of Object.entries(mail.tag?.headers ?? {})) root.setHeader(key, { prepared: true, foldLines: true, value });
  return root.buildHeaders();
}

const headerBlock = (raw: string) => raw.slice(0, raw.indexOf('\r\n\r\n'));
const boundaryOf = (raw: string) => /boundary="--_NmP-([0-9a-f]+)-Part_1"/.exec(raw)![1]!;
const withoutDate = (block: string) => block.replace(/^Date: .*$/m, 'Date: -');

const address = fc.oneof(
  fc.tuple(fc.stringMatching(/^[a-z0-9._+-]{1,70}$/), fc.constantFrom('bench.example', 'x-y.example.org', 'Upper.Example', 'jõgeva.ee', 'xn--jgeva-dua.ee'))
    .map(([local, domain]) => `${local}@${domain}`),
  fc.constantFrom('"quoted"@x.example', 'ü@x.example', 'a..b@x.example', '.a@x.example'),
);
const token = fc.stringMatching(/^[A-Za-z0-9_-]{1,120}$/);

describe('buildMessage reusing the header block of a kind', () => {
  it('writes, for every mail of a kind, the block MimeNode writes for that mail', () => {
    const kind = fc.record({ subject: fc.constantFrom('The weekly news', 'Grüße — Ausgabe 12', 'x '.repeat(60)), name: fc.constantFrom('Weekly', 'Weekly news') });
    const mail = fc.record({ to: address, id: fc.oneof(fc.uuid(), fc.string({ maxLength: 90 })), unsubscribe: token, verp: fc.option(token, { nil: undefined }) });
    fc.assert(fc.property(kind, fc.array(mail, { minLength: 2, maxLength: 6 }), (k, mails) => {
      for (const m of mails) {
        const outgoing: OutgoingMail = {
          from: 'News <news@bench.example>', to: m.to, subject: k.subject, html: '<p>Hi</p>', text: 'Hi', messageId: `<${m.id}@bench.example>`,
          list: { id: { url: 'weekly.assent.example', comment: k.name }, unsubscribe: { url: `https://assent.example/u/${m.unsubscribe}` } },
          headers: { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' },
          ...(m.verp && { tag: { envelopeFrom: `bounce+${m.verp}@bench.example`, headers: { 'X-SMTPAPI': `{"unique_args": {"verp": "${m.verp}"}}` } } }),
        };
        const built = buildMessage(outgoing);
        const block = headerBlock(built.raw);
        expect(withoutDate(block)).toBe(withoutDate(mimeNodeHeaders(outgoing, boundaryOf(block))));
        const root = new MimeNode('multipart/alternative');
        root.setHeader('From', outgoing.from);
        root.setHeader('To', outgoing.to);
        const envelope = root.getEnvelope();
        expect(built.envelope).toEqual({ from: outgoing.tag?.envelopeFrom ?? envelope.from, to: envelope.to });
      }
    }), { numRuns: 200 });
  });
});

describe('quotedPrintablePieces', () => {
  const alone = (text: string) => text.replace(/\r\n?/g, '\n').split('\n').map((line) => qpWrap(qpEncode(line), 76)).join('\r\n');
  const text = fc.array(fc.constantFrom('', '\n', '\r', '\r\n', 'a', '.', '..\n', '=', ' ', 'é', '日本', 'a'.repeat(90), 'word '.repeat(20)), { maxLength: 8 }).map((p) => p.join(''));
  const pieces = fc.array(fc.tuple(fc.boolean(), text), { maxLength: 8 })
    .map((parts): BodyPieces => parts.map(([run, t]) => (run && EncodedRun.fits(t) ? new EncodedRun(t) : t)));

  it('encodes a body from pieces to the bytes of its joined text', () => {
    fc.assert(fc.property(pieces, (body) => {
      expect(quotedPrintablePieces(body)).toBe(alone(joinPieces(body)));
    }), { numRuns: 1000 });
  });
});
