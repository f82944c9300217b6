import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseReportMessage } from '../src/inbound/report.js';
import type { ReportKind } from '../src/inbound/types.js';
import { resolveVerp, signVerpTag, verpAddress, verpKeysFromSecrets, type VerpClaims } from '../src/inbound/verp.js';

const FIXTURES = new URL('./fixtures/bounces/', import.meta.url);
interface IndexEntry { file: string; kind: string; recipient: string; expected: string; status_code: string | null }
const INDEX = JSON.parse(readFileSync(new URL('INDEX.json', FIXTURES), 'utf8')) as IndexEntry[];
const MESSAGES = INDEX.filter((entry) => entry.file.endsWith('.eml'));
const KIND: Record<string, ReportKind> = { hard: 'permanent', soft: 'temporary', complaint: 'complaint', ignore: 'not_a_report' };

const VERP = { bounceAddress: 'bounces@mail.assent.test', keys: verpKeysFromSecrets(['test-secret-for-verp-tags-0123456789']) };
const CLAIMS: VerpClaims = { kind: 'campaign', campaignId: '4711', subscriberId: '0b5cbb7e-6a2d-4c55-8d1c-9b0e1f2a3b4c' };
const OUR_VERP = verpAddress(VERP.bounceAddress, signVerpTag(CLAIMS, VERP.keys));
const OUR_MESSAGE_LOCAL = 'f2c4e0a8-3b1d-4e5f-9a6b-7c8d9e0f1a2b';
const OUR_RECIPIENT = 'subscriber.one@recipient.test';

// Where each sample names the original: its Message-ID (local part, domain) and the
// envelope sender it went back to. The test puts ours in their place.
const ORIGINALS: Record<string, { messageId?: [string, string]; sender?: string }> = {
  'dsn-postfix-550-5.1.1-address-rejected.eml': { messageId: ['A8F82EDD-E518-4F5C-8C70-BC4EFF24AB9F', 'example.ne.jp'], sender: 'shironeko@example.ne.jp' },
  'dsn-exim-550-5.1.1-plaintext.eml': { messageId: ['d111875269acf00cb339571a5a2ce349.squirrel', 'example.com'], sender: 'sironeko@example.com' },
  'dsn-sendmail-550-5.1.1-user-unknown.eml': { messageId: ['E1C50F1B-1C83-4820-BC36-AC6FBFBE8568', 'example.org'], sender: 'kijitora@example.org' },
  'dsn-qmail-550-5.1.1-plaintext.eml': { messageId: ['20240624090001.44587.qmail', 'nq.example.jp'], sender: 'kijitora@nq.example.jp' },
  'dsn-office365-550-5.1.10-recipient-not-found.eml': { messageId: ['2222222222220000-00000000-2222-2222-2222-000000002222-000000', 'email.amazonses.com'], sender: 'sironeko@example.net' },
  'dsn-office365-outlook-550-5.1.1-user-unknown.eml': { messageId: ['SLXP216MB0381A4F513CF42F0FCDA0E2FA9250', 'SLXP216MB0381.KORP216.PROD.OUTLOOK.COM'], sender: 'azumakuniyuki@microsoft.example.com' },
  'dsn-exchange-550-5.7.1-delivery-restricted.eml': { messageId: ['78f44d2b2ea5763064d21edacd9d8d18', 'example.net'], sender: 'kijitora@example.com' },
  'dsn-exchange-french-550-5.1.1-non-remis.eml': { messageId: ['1513177790.ha3dsljxgizc2mjrgq2dkobx', 'mb.newsletter-autos.fr'], sender: 'ha3dsljxgizc2mjrgq2dkobx@mb.newsletter-autos.fr' },
  'dsn-gmail-550-5.1.1-user-unknown-plaintext.eml': { messageId: ['D992C2C3-F175-4C4D-97E2-53A90E4E5BF5', 'gmail.com'], sender: 'the-local-part-of-google-mail-address@gmail.com' },
  'dsn-gmail-552-5.2.2-over-quota.eml': { messageId: ['qbddfL3NB0z0D2Ld', 'smtp-gw1.example.jp'], sender: 'michitsuna@example.jp' },
  'dsn-yahoo-554-delivery-error-account-disabled.eml': { messageId: ['5bef54197003099438d2f5509afc38b7', 'example.net'], sender: 'kijitora@example.com' },
  'dsn-hotmail-delayed-4.4.7.eml': { messageId: ['BAY182-W4180385B0DABF89EB94B34A9300', 'phx.gbl'], sender: 'shironeko@outlook.example.com' },
  'dsn-sendmail-delayed-4.5.0.eml': { messageId: ['54341A75-5EF4-4F06-9C5D-56D36A9283FC', 'example.jp'], sender: 'shironeko@example.jp' },
  'dsn-hotmail-550-5.2.2-mailbox-full.eml': { messageId: ['BLU436-SMTP6645ECA6E7FEFFE86D040BBA770', 'phx.gbl'], sender: 'shironeko@hotmail.example.com' },
  'dsn-postfix-450-4.1.1-action-failed.eml': { messageId: ['FFFFFFFF.0000000', 'example.co.jp'], sender: 'shironeko@example.co.jp' },
  'autoreply-exchange-automatic-reply.eml': {},
  'autoreply-icloud-vacation.eml': { messageId: ['25203A4E-F90F-4A14-BF51-3E7B9D39BE8E', 'libsisimai.org'] },
  'autoreply-polish-automatyczna-odpowiedz.eml': {},
  'autoreply-boxbe-challenge-response.eml': { messageId: ['20101115133429.70E0916581C3', 'server4.example.co.uk'], sender: 'automated-bounces+12837740-F0BD-11DF-96E6-8B387FA1E9D6@email.example.com' },
  'arf-yahoo-fbl-abuse.eml': { messageId: ['WEB8daf12e7d45340df91f4dc4d66fb19f7', 'web8'], sender: 'support@ourdomain.com' },
  'arf-hotmail-jmrp-2010.eml': { messageId: ['WEB7-Qf2039815c40c40a0b68b37831d7c711c', 'web7-q'], sender: 'support@blahblah.com' },
  'arf-hotmail-jmrp-2016.eml': { messageId: ['0000000000fffffffff0000000000000', 'example.com'], sender: 'sironeko@example.com' },
  'arf-generic-abuse-rfc5965.eml': { messageId: ['8787KJKJ3K4J3K4J3K4J3.mail', 'example.net'], sender: 'somespammer@example.net' },
  'arf-opendmarc-auth-failure-headers-only.eml': { messageId: ['000000000eee', 'example.net'], sender: 'dmarc-bounces@ietf.example.org' },
};

function fixture(file: string): Buffer {
  return readFileSync(new URL(file, FIXTURES));
}

/** Replace every occurrence (any case) of `from` by `to`, leaving every other byte as it is. */
function swap(raw: Buffer, from: string, to: string): Buffer {
  const escaped = from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return Buffer.from(raw.toString('latin1').replace(new RegExp(escaped, 'gi'), to), 'latin1');
}

/** The sample as if it were about our mail: our Message-ID, our VERP address, our subscriber. */
function ours(entry: IndexEntry): Buffer {
  const original = ORIGINALS[entry.file]!;
  let raw = fixture(entry.file);
  // Message-ID first: the French sample's Message-ID holds its sender's address.
  if (original.messageId) raw = swap(raw, `${original.messageId[0]}@`, `${OUR_MESSAGE_LOCAL}@`);
  if (original.sender) raw = swap(raw, original.sender, OUR_VERP);
  return swap(raw, entry.recipient, OUR_RECIPIENT);
}

describe('parseReportMessage: every published sample', () => {
  it('has a row in this test for each message in INDEX.json', () => {
    expect(Object.keys(ORIGINALS).sort()).toEqual(MESSAGES.map((entry) => entry.file).sort());
  });

  it.each(MESSAGES.map((entry) => [entry.file, entry] as const))('%s', async (_file, entry) => {
    const report = await parseReportMessage(ours(entry));
    const original = ORIGINALS[entry.file]!;
    expect(report.provider).toBe('smtp');
    expect(report.kind).toBe(KIND[entry.expected]);
    expect(report.status).toBe(entry.status_code);
    if (entry.expected === 'ignore') {
      expect(report.ignoredBecause).not.toBeNull();
    } else {
      expect(report.ignoredBecause).toBeNull();
      expect(report.recipients).toEqual([OUR_RECIPIENT]);
    }
    if (original.messageId) expect(report.originalMessageId).toBe(`<${OUR_MESSAGE_LOCAL}@${original.messageId[1]}>`);
    if (original.sender) expect(resolveVerp(report.verpCandidates, VERP)).toEqual(CLAIMS);
    expect(report.reportId).toMatch(/^smtp:[0-9a-f]{64}$/);
    expect(report.reportedAt).toBeInstanceOf(Date);
  });
});

describe('parseReportMessage: what the samples say besides their class', () => {
  it('keeps the remote server words as the diagnostic', async () => {
    const postfix = await parseReportMessage(fixture('dsn-postfix-550-5.1.1-address-rejected.eml'));
    expect(postfix.diagnostic).toBe('550 5.1.1 Address rejected kijitora@example.co.jp');
    const qmail = await parseReportMessage(fixture('dsn-qmail-550-5.1.1-plaintext.eml'));
    expect(qmail.diagnostic).toMatch(/^550 5\.1\.1 <userunknown@libsisimai\.net>: Recipient address rejected: User unknown/);
    const exim = await parseReportMessage(fixture('dsn-exim-550-5.1.1-plaintext.eml'));
    expect(exim.diagnostic).toBe('550 5.1.1 unknown or illegal alias: kijitora@icloud.example.com');
  });

  it('names only the recipient that failed, not the others the original went to', async () => {
    const gmail = await parseReportMessage(fixture('dsn-gmail-550-5.1.1-user-unknown-plaintext.eml'));
    expect(gmail.recipients).toEqual(['userunknown@example.jp']);
  });

  it('takes the address as we sent it (Original-Recipient), not the alias it reached', async () => {
    const exchange = await parseReportMessage(fixture('dsn-exchange-550-5.7.1-delivery-restricted.eml'));
    expect(exchange.recipients).toEqual(['neko-nyaan@cat.example.jp']);
  });

  it('gives the feedback type of an ARF report, and none for Microsoft JMRP', async () => {
    expect((await parseReportMessage(fixture('arf-yahoo-fbl-abuse.eml'))).feedbackType).toBe('abuse');
    expect((await parseReportMessage(fixture('arf-hotmail-jmrp-2016.eml'))).feedbackType).toBeNull();
    const dmarc = await parseReportMessage(fixture('arf-opendmarc-auth-failure-headers-only.eml'));
    expect(dmarc).toMatchObject({ kind: 'not_a_report', ignoredBecause: 'not_a_complaint', feedbackType: 'auth-failure' });
  });

  it('says why a sample is not a report', async () => {
    const why = async (file: string) => (await parseReportMessage(fixture(file))).ignoredBecause;
    expect(await why('autoreply-exchange-automatic-reply.eml')).toBe('auto_reply');
    expect(await why('autoreply-icloud-vacation.eml')).toBe('auto_reply');
    expect(await why('autoreply-polish-automatyczna-odpowiedz.eml')).toBe('auto_reply');
    const boxbe = await parseReportMessage(fixture('autoreply-boxbe-challenge-response.eml'));
    expect(boxbe).toMatchObject({ ignoredBecause: 'challenge_response', status: '4.7.0', recipients: [] });
    expect(boxbe.diagnostic).toMatch(/^Sender not pre-approved/);
  });

  it('finds the VERP tag a mail system upper-cased (as Boxbe did), and nothing in a forged one', async () => {
    const boxbe = fixture('autoreply-boxbe-challenge-response.eml');
    const upper = await parseReportMessage(swap(boxbe, 'automated-bounces+12837740-F0BD-11DF-96E6-8B387FA1E9D6@email.example.com', OUR_VERP.toUpperCase()));
    expect(resolveVerp(upper.verpCandidates, VERP)).toEqual(CLAIMS);
    const tag = OUR_VERP.slice('bounces+'.length, OUR_VERP.indexOf('@'));
    const forgedTag = tag.replace(/.$/, (last) => (last === 'a' ? 'b' : 'a'));
    const forged = await parseReportMessage(swap(ours(MESSAGES.find((entry) => entry.file.startsWith('dsn-postfix-550'))!), tag, forgedTag));
    expect(forged.kind).toBe('permanent');
    expect(resolveVerp(forged.verpCandidates, VERP)).toBeUndefined();
  });

  it('puts the SMTP envelope recipients first among the VERP candidates', async () => {
    const report = await parseReportMessage(fixture('dsn-postfix-550-5.1.1-address-rejected.eml'), { envelopeRecipients: [OUR_VERP] });
    expect(report.verpCandidates[0]).toBe(OUR_VERP);
    expect(resolveVerp(report.verpCandidates, VERP)).toEqual(CLAIMS);
  });

  it('reads a report dated by its Date header', async () => {
    const report = await parseReportMessage(fixture('dsn-sendmail-550-5.1.1-user-unknown.eml'));
    expect(report.reportedAt?.toISOString()).toBe('2013-10-16T05:15:35.000Z');
  });
});

describe('parseReportMessage: each report is handled once', () => {
  it('gives the same id to the same report delivered twice, even with another Received line', async () => {
    const raw = fixture('dsn-sendmail-550-5.1.1-user-unknown.eml');
    const again = Buffer.concat([Buffer.from('Received: from relay.example (relay.example [192.0.2.9])\n'), raw]);
    const first = await parseReportMessage(raw);
    expect((await parseReportMessage(again)).reportId).toBe(first.reportId);
  });

  it('gives every sample its own id, and hashes the bytes of a report without Message-ID', async () => {
    const ids = await Promise.all(MESSAGES.map(async (entry) => (await parseReportMessage(fixture(entry.file))).reportId));
    expect(new Set(ids).size).toBe(ids.length);
    const qmail = fixture('dsn-qmail-550-5.1.1-plaintext.eml');
    const edited = swap(qmail, 'Nyaaaaaan', 'Nyaaaaaaan');
    expect((await parseReportMessage(qmail)).reportId).not.toBe((await parseReportMessage(edited)).reportId);
    expect((await parseReportMessage(qmail)).reportId).toBe((await parseReportMessage(Buffer.from(qmail))).reportId);
  });
});

describe('parseReportMessage: a DSN naming several recipients', () => {
  it('says the worst outcome and names only the recipients it applies to', async () => {
    // The sendmail sample with a second recipient group that was only delayed.
    const raw = swap(fixture('dsn-sendmail-550-5.1.1-user-unknown.eml'), 'Last-Attempt-Date: Wed, 16 Oct 2013 14:15:35 +0900\n',
      'Last-Attempt-Date: Wed, 16 Oct 2013 14:15:35 +0900\n\nFinal-Recipient: RFC822; later@bouncehammer.jp\nAction: delayed\nStatus: 4.4.1\n');
    const report = await parseReportMessage(raw);
    expect(report).toMatchObject({ kind: 'permanent', status: '5.1.1', recipients: ['userunknown@bouncehammer.jp'] });
  });
});

describe('parseReportMessage: garbage never throws and is not a report', () => {
  function nestedMultiparts(depth: number): Buffer {
    const open = Array.from({ length: depth }, (_, i) => `Content-Type: multipart/mixed; boundary="b${i}"\n\n--b${i}\n`).join('');
    const close = Array.from({ length: depth }, (_, i) => `\n--b${depth - 1 - i}--\n`).join('');
    return Buffer.from(`From: MAILER-DAEMON@example.org\nSubject: Undelivered Mail Returned to Sender\n${open}Content-Type: text/plain\n\nhello${close}`);
  }

  it.each([
    ['empty', Buffer.alloc(0)],
    ['random bytes', randomBytes(4096)],
    ['a 10 MB blob', randomBytes(10 * 1024 * 1024)],
    ['10 MB of line breaks', Buffer.alloc(10 * 1024 * 1024, 0x0a)],
    ['multiparts nested 100 deep', nestedMultiparts(100)],
    ['multiparts nested 5000 deep', nestedMultiparts(5000)],
    ['a multipart report with no parts', Buffer.from('Content-Type: multipart/report; report-type=delivery-status; boundary="x"\nSubject: x\n\n')],
    ['headers only', Buffer.from('From: someone@example.org\nSubject: hello\n')],
    ['an empty delivery-status part', Buffer.from('Content-Type: multipart/report; boundary="x"\n\n--x\nContent-Type: message/delivery-status\n\n\n--x--\n')],
    ['a 2 MB header', Buffer.from(`Subject: ${'a'.repeat(2_000_000)}\n\nbody`)],
    ['5000 parts', Buffer.from(`Content-Type: multipart/mixed; boundary="x"\n\n${'--x\nContent-Type: text/plain\n\nx\n'.repeat(5000)}--x--\n`)],
  ])('%s', async (_name, raw) => {
    const started = performance.now();
    const report = await parseReportMessage(raw);
    expect(report.kind).toBe('not_a_report');
    expect(report.recipients).toEqual([]);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('random bytes, and real samples with random bytes overwritten, never throw', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
      expect((await parseReportMessage(bytes)).kind).toBe('not_a_report');
    }), { numRuns: 200 });
    const samples = MESSAGES.map((entry) => fixture(entry.file));
    await fc.assert(fc.asyncProperty(fc.nat({ max: samples.length - 1 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 30 }), async (which, edits) => {
      const raw = Buffer.from(samples[which]!);
      for (const [at, byte] of edits) raw[at % raw.length] = byte;
      await expect(parseReportMessage(raw)).resolves.toHaveProperty('reportId');
    }), { numRuns: 200 });
  });

  it('reads only the start of a huge report, which is where a bounce says what it is', async () => {
    const raw = fixture('dsn-postfix-550-5.1.1-address-rejected.eml');
    const padded = swap(raw, 'test\n\n--6265E1AC124', `${'padding line of the attached original\n'.repeat(200_000)}test\n\n--6265E1AC124`);
    expect(padded.length).toBeGreaterThan(5_000_000);
    expect(await parseReportMessage(padded)).toMatchObject({ kind: 'permanent', status: '5.1.1' });
  });
});
