// The MIME builder every mail goes through (src/mail/mime.ts) against nodemailer's own
// composer: for any subject, names and bodies, a reader (mailparser) must find the same
// message in both, and ours must be well-formed on the wire: CRLF only, no line over 76
// characters in a body or over 998 anywhere.
import fc from 'fast-check';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp';
import { describe, expect, it } from 'vitest';
import { buildMessage, type OutgoingMail, quotedPrintable } from '../src/mail/mime.js';

const composer = nodemailer.createTransport({ streamTransport: true, buffer: true });

/** Text with what trips encoders: line ends of every kind, trailing blanks, '=', non-ASCII, long lines. */
const PIECES = ['\r\n', '\n', '\r', ' ', '\t', ' \n', '\t\r\n', '=', '=3D', '.', '..\n', 'é', 'ß', '€', '日本', '\u{1F600}', '<a href="https://x.example/u/abc?d=e">', 'a'.repeat(90), 'word '.repeat(30)];
const body = fc.array(fc.oneof(fc.constantFrom(...PIECES), fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 10 })), { maxLength: 40 })
  .map((parts) => parts.join(''));
const headerText = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 120 }),
  fc.array(fc.constantFrom('Hello', 'Grüße', '"quoted"', '(paren)', 'back\\slash', '\r\n', 'Bcc: x@example.net', '日本語', 'a'.repeat(100), ' '), { maxLength: 8 }).map((p) => p.join(' ')));

// nodemailer leaves out an empty part, and a reader then makes the text up from the HTML;
// our mails always have both, so both hold something here.
// A lone CR is a line break in ours and data in nodemailer's (SMTP allows CR only before LF),
// so the comparison takes line ends as LF or CRLF; the next test covers lone CRs.
const filled = body.filter((text) => /\S/.test(text)).map((text) => text.replace(/\r(?!\n)/g, '\n'));
const mail = fc.record({ subject: headerText, listName: headerText, html: filled, text: filled, name: headerText })
  .map(({ subject, listName, html, text, name }): OutgoingMail => ({
    from: `News <news@example.com>`, to: 'reader@example.org', subject, html, text,
    messageId: '<fixed@example.com>',
    list: { id: { url: 'weekly.assent.example', comment: listName }, unsubscribe: { url: `https://assent.example/u/${encodeURIComponent(name)}` } },
    headers: { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' },
  }));

const lineEnds = (value: string | false | undefined) => (value || '').replace(/\r\n?/g, '\n').replace(/\n+$/, '');

describe('buildMessage', () => {
  it('reads as the same message as nodemailer composes, and is well-formed on the wire', async () => {
    await fc.assert(fc.asyncProperty(mail, async (input) => {
      const built = buildMessage(input);
      const theirs = await composer.sendMail(input);
      const [ours, reference] = await Promise.all([simpleParser(built.raw), simpleParser(theirs.message as Buffer)]);

      expect(ours.subject).toBe(reference.subject);
      expect(ours.from?.text).toBe(reference.from?.text);
      expect(ours.to).toEqual(reference.to);
      expect(ours.messageId).toBe(reference.messageId);
      expect(ours.headers.get('list')).toEqual(reference.headers.get('list'));
      expect(ours.headers.get('list-unsubscribe-post')).toBe(reference.headers.get('list-unsubscribe-post'));
      // Line ends become CRLF on the way, whatever the input had: compare the lines.
      expect(lineEnds(ours.text)).toBe(lineEnds(reference.text));
      expect(lineEnds(ours.html)).toBe(lineEnds(reference.html));
      expect(built.envelope).toEqual({ from: 'news@example.com', to: ['reader@example.org'] });

      expect(built.raw).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
      const lines = built.raw.split('\r\n');
      expect(Math.max(...lines.map((line) => line.length))).toBeLessThanOrEqual(998);
      const bodyStart = lines.indexOf('');
      expect(lines.slice(bodyStart).filter((line) => line.length > 76)).toEqual([]);
    }), { numRuns: 300 });
  });

  it('sends a lone CR as a line break, and only CRLF on the wire', async () => {
    const withCr = fc.tuple(body, body).map(([a, b]) => `${a}\r${b}`);
    await fc.assert(fc.asyncProperty(mail, withCr, async (input, text) => {
      const built = buildMessage({ ...input, text, html: `<p>${text}</p>` });
      expect(built.raw).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
      const parsed = await simpleParser(built.raw);
      expect(lineEnds(parsed.text)).toBe(lineEnds(text.replace(/\r(?!\n)/g, '\n')));
    }), { numRuns: 100 });
  });

  it('encodes a body alike whether or not a similar body came just before it', () => {
    const alone = (text: string) => text.replace(/\r\n?/g, '\n').split('\n').map((line) => qpWrap(qpEncode(line), 76)).join('\r\n');
    fc.assert(fc.property(fc.array(body, { minLength: 2, maxLength: 6 }), fc.array(body, { minLength: 1, maxLength: 4 }), (lines, variants) => {
      // Bodies of the same shape that differ in some lines, as one campaign's mails do.
      for (const variant of variants) {
        const text = lines.map((line, i) => (i % 2 === 0 ? line : `${line}${variant}`)).join('\n');
        expect(quotedPrintable(text)).toBe(alone(text));
      }
    }), { numRuns: 300 });
  });
});
