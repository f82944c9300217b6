// Bounces and complaints about re-consent mails (CONTRACT.md, "Bounces and complaints" and
// "When the terms change"): the mail goes out through a real SMTP peer with its envelope
// sender naming its reconsent_messages row; a published DSN or ARF sample about it comes back
// through the real SMTP listener (tag in the recipient) or POST /api/v1/inbound (no
// BOUNCE_ADDRESS: matched by the original's Message-ID), and its effect is asserted in the
// subscriptions, the consent ledger, the suppressions and the kept report.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReportMessage } from '../src/inbound/report.js';
import { resolveVerp, signVerpTag, verpAddress, verpKeysFromSecrets } from '../src/inbound/verp.js';
import { InboundSmtpListener } from '../src/workers/inbound-smtp.js';
import { type Fixture, useTestService } from './helpers/fixture.js';
import { seedConfirmed, snapshotAllTables } from './helpers/http.js';
import { API_KEY, TEST_SECRET } from './helpers/service.js';

const FIXTURES = new URL('./fixtures/bounces/', import.meta.url);
const fixture = (file: string) => readFileSync(new URL(file, FIXTURES));
const HARD_BOUNCE = 'dsn-postfix-550-5.1.1-address-rejected.eml';
const COMPLAINT = 'arf-yahoo-fbl-abuse.eml';
const BOUNCE_ADDRESS = 'bounces@assent.test';
const VERP = { bounceAddress: BOUNCE_ADDRESS, keys: verpKeysFromSecrets([TEST_SECRET]) };

/** One person's re-consent mail as the relay got it. */
interface Sent { subscriberId: string; email: string; envelopeFrom: string; messageId: string }

/**
 * People confirmed on `terms` (version 1) and on `other`; a material change of `terms`
 * (version 2) and its re-consent run, sent through the SMTP peer. Resolves with each mail.
 */
async function sendReconsentMails(t: Fixture, count: number): Promise<{ listId: string; sent: Sent[] }> {
  const ids = await seedConfirmed(t.tdb, 'terms', count, { prefix: 'rv' });
  await t.tdb.query(`insert into subscriptions (subscriber_id, list_id, status, consent_version, confirmed_at)
    select s, (select id from lists where slug = 'other'), 'confirmed', 1, now() from unnest($1::uuid[]) s`, [ids]);
  expect((await t.service.api('PATCH', '/api/v1/lists/terms', { consent_text: 'Terms, and partners too.', reconsent: true })).status).toBe(200);
  expect((await t.service.api('POST', '/api/v1/lists/terms/reconsent')).status).toBe(202);
  while ((await t.service.reconsentWorker.runOnce()) > 0);
  const mails = await t.smtp.waitFor(count);
  const { rows } = await t.tdb.query<{ list_id: string; subscriber_id: string; email: string; message_id: string }>(`
    select m.list_id::text, m.subscriber_id, s.email, m.message_id from reconsent_messages m
    join subscribers s on s.id = m.subscriber_id where m.status = 'sent' order by s.email`);
  expect(rows).toHaveLength(count);
  const sent = rows.map((row) => ({
    subscriberId: row.subscriber_id, email: row.email, messageId: row.message_id,
    envelopeFrom: mails.find((m) => m.envelopeTo.includes(row.email))!.envelopeFrom,
  }));
  return { listId: rows[0]!.list_id, sent };
}

function queries(t: Fixture) {
  return {
    status: async (subscriberId: string, list: string) => (await t.tdb.query<{ status: string }>(
      `select x.status from subscriptions x join lists l on l.id = x.list_id where x.subscriber_id = $1 and l.slug = $2`, [subscriberId, list])).rows[0]?.status,
    events: async (subscriberId: string, kind: string) => (await t.tdb.query<{ slug: string | null; evidence: any }>(
      `select l.slug, v.evidence from consent_events e left join lists l on l.id = e.list_id
       join consent_evidence v on v.event_id = e.id where e.subscriber_id = $1 and e.kind = $2 order by e.id`, [subscriberId, kind])).rows,
    suppressed: async (email: string) => (await t.tdb.query<{ reason: string }>(
      `select reason from suppressions where address_hash = sha256(convert_to(lower($1), 'UTF8'))`, [email])).rows[0]?.reason,
    reports: async (subscriberId: string) => (await t.tdb.query(
      `select kind, effect, matched_by, campaign_id, outbox_id, reconsent_list_id::text, reconsent_version
       from inbound_reports where subscriber_id = $1`, [subscriberId])).rows,
  };
}

let copies = 0;
/** Another report of the same content: a raw report's identity is its own Message-ID. */
function freshCopy(raw: Buffer | string): Buffer {
  const text = typeof raw === 'string' ? raw : raw.toString('latin1');
  const id = `Message-ID: <rv-copy-${(copies += 1)}-${randomBytes(4).toString('hex')}@remote.test>`;
  const head = text.split(/\r?\n\r?\n/)[0]!;
  return Buffer.from(/^Message-ID:.*$/im.test(head) ? text.replace(/^Message-ID:.*$/im, id) : `${id}\r\n${text}`, 'latin1');
}

/** The sample with its original's Message-ID replaced by ours (the fixtures README's way of making it about our mail). */
async function withMessageId(raw: Buffer, messageId: string): Promise<Buffer> {
  const original = (await parseReportMessage(raw)).originalMessageId;
  if (!original) throw new Error('sample names no original');
  return freshCopy(raw.toString('latin1').replaceAll(original.slice(1, -1), messageId.slice(1, -1)));
}

describe('with BOUNCE_ADDRESS: re-consent mails are tagged, and reports come back by SMTP', () => {
  const t = useTestService({ smtp: true, lists: ['terms', 'other'], env: { BOUNCE_ADDRESS } });
  const q = queries(t);
  const listener = { port: 0, stop: async () => undefined as void };
  let listId: string;
  let sent: Sent[] = [];

  beforeAll(async () => {
    const smtpListener = new InboundSmtpListener(t.service.deps);
    listener.port = await smtpListener.start(0, '127.0.0.1');
    listener.stop = () => smtpListener.stop();
    ({ listId, sent } = await sendReconsentMails(t, 4));
  }, 60_000);
  afterAll(() => listener.stop());

  async function sendReport(raw: Buffer, to: string): Promise<string> {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: listener.port, secure: false, ignoreTLS: true });
    try {
      return String((await transport.sendMail({ envelope: { from: 'MAILER-DAEMON@remote.test', to: [to] }, raw })).response);
    } finally {
      transport.close();
    }
  }

  it('sends each re-consent mail from BOUNCE_ADDRESS with a signed tag naming its row', () => {
    for (const mail of sent) {
      expect(mail.envelopeFrom).toMatch(/^bounces\+[a-z2-7]{30,55}@assent\.test$/);
      expect(resolveVerp([mail.envelopeFrom], VERP)).toEqual({ kind: 'reconsent', listId, version: 2, subscriberId: mail.subscriberId });
    }
  });

  it('a permanent bounce sent to the tag bounces the person on every list, with the mail in the evidence', async () => {
    const mail = sent[0]!;
    expect(await sendReport(freshCopy(fixture(HARD_BOUNCE)), mail.envelopeFrom)).toMatch(/^250/);
    expect(await q.status(mail.subscriberId, 'terms')).toBe('bounced');
    expect(await q.status(mail.subscriberId, 'other')).toBe('bounced');
    expect(await q.suppressed(mail.email)).toBe('bounced');
    const events = await q.events(mail.subscriberId, 'bounced');
    expect(events.map((e) => e.slug).sort()).toEqual(['other', 'terms']);
    for (const event of events) {
      expect(event.evidence).toMatchObject({ mail: { reconsent: { list_id: listId, version: 2 } }, matched_by: 'verp', report: { kind: 'permanent', status: '5.1.1' } });
    }
    expect(await q.reports(mail.subscriberId)).toEqual([{
      kind: 'permanent', effect: 'bounced', matched_by: 'verp', campaign_id: null, outbox_id: null, reconsent_list_id: listId, reconsent_version: 2,
    }]);
  });

  it('a complaint sent to the tag ends that list only, as `complained`, and suppresses the address for campaigns', async () => {
    const mail = sent[1]!;
    expect(await sendReport(freshCopy(fixture(COMPLAINT)), mail.envelopeFrom)).toMatch(/^250/);
    expect(await q.status(mail.subscriberId, 'terms')).toBe('complained');
    expect(await q.status(mail.subscriberId, 'other')).toBe('confirmed');
    expect(await q.suppressed(mail.email)).toBe('complained');
    const events = await q.events(mail.subscriberId, 'complained');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ slug: 'terms', evidence: { mail: { reconsent: { list_id: listId, version: 2 } }, matched_by: 'verp' } });
    expect(await q.reports(mail.subscriberId)).toMatchObject([{ kind: 'complaint', effect: 'complained', reconsent_list_id: listId, reconsent_version: 2 }]);
  });

  it('a tag we signed for a re-consent mail queued but not yet sent changes nothing', async () => {
    const [stranger] = await seedConfirmed(t.tdb, 'terms', 1, { prefix: 'unsent' });
    // Queued as a second run of POST …/reconsent would queue it, the worker not yet round.
    await t.tdb.query(`insert into reconsent_messages (list_id, version, subscriber_id) values ($1, 2, $2)`, [listId, stranger]);
    const before = await snapshotAllTables(t.tdb);
    const tag = signVerpTag({ kind: 'reconsent', listId, version: 2, subscriberId: stranger! }, VERP.keys);
    expect(await sendReport(freshCopy(fixture(HARD_BOUNCE)), verpAddress(BOUNCE_ADDRESS, tag))).toMatch(/^250/);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('a list id past the tag\'s bounds: its re-consent mail goes out untagged, and its bounce matches by Message-ID', async () => {
    // 2^35 is where the tag's 5 LEB128 bytes for a list id end (src/inbound/verp.ts).
    await t.tdb.query(`select setval(pg_get_serial_sequence('lists', 'id'), 34359738368)`);
    const created = await t.service.api('POST', '/api/v1/lists', { slug: 'huge', name: 'Huge', consent_text: 'Send me huge news.' });
    expect(created.status).toBe(201);
    const [person] = await seedConfirmed(t.tdb, 'huge', 1, { prefix: 'huge' });
    expect((await t.service.api('PATCH', '/api/v1/lists/huge', { consent_text: 'Huge news, and partners.', reconsent: true })).status).toBe(200);
    expect((await t.service.api('POST', '/api/v1/lists/huge/reconsent')).status).toBe(202);
    const before = t.smtp.received.length;
    while ((await t.service.reconsentWorker.runOnce()) > 0);
    const mail = await t.smtp.waitForMailTo('huge1@example.org', before);
    expect(mail.envelopeFrom).toBe('news@assent.test');
    const { rows } = await t.tdb.query<{ list_id: string; message_id: string }>(
      `select list_id::text, message_id from reconsent_messages where subscriber_id = $1 and status = 'sent'`, [person]);
    expect(BigInt(rows[0]!.list_id)).toBeGreaterThan(34359738367n);
    expect(await sendReport(await withMessageId(fixture(HARD_BOUNCE), rows[0]!.message_id), 'news@assent.test')).toMatch(/^250/);
    expect(await q.status(person!, 'huge')).toBe('bounced');
    expect(await q.reports(person!)).toMatchObject([{ matched_by: 'message_id', reconsent_list_id: rows[0]!.list_id, reconsent_version: 2 }]);
  });
});

describe('without BOUNCE_ADDRESS: re-consent mails are matched by their Message-ID', () => {
  const t = useTestService({ smtp: true, lists: ['terms', 'other'] });
  const q = queries(t);
  let listId: string;
  let sent: Sent[] = [];

  beforeAll(async () => {
    ({ listId, sent } = await sendReconsentMails(t, 3));
  }, 60_000);

  const postRaw = (body: Buffer) => t.service.app.request('/api/v1/inbound', {
    method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'message/rfc822' }, body: new Uint8Array(body),
  });

  it('sends them from MAIL_FROM\'s address, untagged', () => {
    for (const mail of sent) expect(mail.envelopeFrom).toBe('news@assent.test');
  });

  it('a permanent bounce naming the mail\'s Message-ID bounces the person on every list', async () => {
    const mail = sent[0]!;
    const response = await postRaw(await withMessageId(fixture(HARD_BOUNCE), mail.messageId));
    expect(response.status).toBe(202);
    expect(await response.json()).toMatchObject({ kind: 'permanent', outcome: 'applied' });
    expect(await q.status(mail.subscriberId, 'terms')).toBe('bounced');
    expect(await q.status(mail.subscriberId, 'other')).toBe('bounced');
    expect((await q.events(mail.subscriberId, 'bounced'))[0]).toMatchObject({ evidence: { mail: { reconsent: { list_id: listId, version: 2 } }, matched_by: 'message_id' } });
    expect(await q.reports(mail.subscriberId)).toMatchObject([{ effect: 'bounced', matched_by: 'message_id', reconsent_list_id: listId, reconsent_version: 2 }]);
  });

  it('a complaint naming the mail\'s Message-ID makes that list `complained`, the other stays', async () => {
    const mail = sent[1]!;
    const response = await postRaw(await withMessageId(fixture(COMPLAINT), mail.messageId));
    expect(await response.json()).toMatchObject({ kind: 'complaint', outcome: 'applied' });
    expect(await q.status(mail.subscriberId, 'terms')).toBe('complained');
    expect(await q.status(mail.subscriberId, 'other')).toBe('confirmed');
    expect(await q.suppressed(mail.email)).toBe('complained');
    expect(await q.reports(mail.subscriberId)).toMatchObject([{ effect: 'complained', matched_by: 'message_id', reconsent_list_id: listId }]);
  });

  it('a Message-ID of a re-consent mail not sent (failed after its id was written) changes nothing', async () => {
    const mail = sent[2]!;
    // As an operator would find a row the relay never took: the Message-ID kept, the status not sent.
    await t.tdb.query(`update reconsent_messages set status = 'failed' where subscriber_id = $1`, [mail.subscriberId]);
    const before = await snapshotAllTables(t.tdb);
    const response = await postRaw(await withMessageId(fixture(HARD_BOUNCE), mail.messageId));
    expect(await response.json()).toMatchObject({ outcome: 'unmatched' });
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });
});
