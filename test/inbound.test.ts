// Bounces and complaints end to end (CONTRACT.md, "Bounces and complaints"): mail goes out
// with a VERP envelope sender; the published samples in /work/shared/fixtures/bounces come
// back through a real SMTP connection to the listener, real HTTP calls to the hooks and to
// POST /api/v1/inbound; each effect is asserted in the database and the consent ledger.
import { createHmac, generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../src/consent/ledger.js';
import { clearOldRawReports } from '../src/consent/reports.js';
import { createApp } from '../src/http/app.js';
import { parseReportMessage } from '../src/inbound/report.js';
import { resolveVerp, signVerpTag, verpKeysFromSecrets } from '../src/inbound/verp.js';
import { InboundSmtpListener } from '../src/workers/inbound-smtp.js';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed, snapshotAllTables } from './helpers/http.js';
import { API_KEY, TEST_SECRET } from './helpers/service.js';
import { issue, signSns } from './helpers/sns.js';

const FIXTURES = new URL('./fixtures/bounces/', import.meta.url);
const fixture = (file: string) => readFileSync(new URL(file, FIXTURES));
interface IndexEntry { file: string; kind: string; recipient: string; expected: 'hard' | 'soft' | 'complaint' | 'ignore'; status_code: string | null }
const INDEX = JSON.parse(readFileSync(new URL('INDEX.json', FIXTURES), 'utf8')) as IndexEntry[];
const RAW_SAMPLES = INDEX.filter((entry) => ['dsn', 'arf', 'autoreply'].includes(entry.kind));

const POSTMARK_TOKEN = 'postmark-webhook-token-0123456789';
const MAILGUN_KEY = 'key-0123456789abcdef0123456789abcdef';
const sendgridKeys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const BOUNCE_ADDRESS = 'bounces@assent.test';
const SES_TOPIC = 'arn:aws:sns:us-west-2:123456789012:assent-ses';
const SNS_CERT_URL = 'https://sns.us-west-2.amazonaws.com/SimpleNotificationService-assent-test.pem';
const CERT_VALIDITY: [Date, Date] = [new Date('2020-01-01T00:00:00Z'), new Date('2036-01-01T00:00:00Z')];
const SNS_CA = issue('Test Root CA for SNS', 'self', CERT_VALIDITY, 1, true);
const SNS_SIGNER = issue('sns.amazonaws.com', { name: 'Test Root CA for SNS', key: SNS_CA.key }, CERT_VALIDITY, 2);
// Someone else's key and certificate, which he would serve from a host of his.
const FORGER = issue('sns.amazonaws.com', 'self', CERT_VALIDITY, 3);
const VERP = { bounceAddress: BOUNCE_ADDRESS, keys: verpKeysFromSecrets([TEST_SECRET]) };

const t = useTestService({
  smtp: true,
  lists: ['news', 'sport', 'big'],
  env: {
    BOUNCE_ADDRESS,
    POSTMARK_WEBHOOK_TOKEN: POSTMARK_TOKEN,
    MAILGUN_SIGNING_KEY: MAILGUN_KEY,
    SENDGRID_WEBHOOK_KEY: sendgridKeys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    SES_TOPIC_ARNS: SES_TOPIC,
  },
});

// SNS serves its signing certificates over HTTPS from sns.<region>.amazonaws.com. A real HTTP
// server stands in for that host: the hook's fetch is pointed at it, after the hook has
// checked the URL's host, and every URL asked for is recorded.
let certServer: Server;
const certificatesAsked: string[] = [];
async function fetchFromSnsStandIn(url: string) {
  certificatesAsked.push(url);
  const { port } = certServer.address() as AddressInfo;
  return fetch(`http://127.0.0.1:${port}${new URL(url).pathname}`);
}

let http: ServerType;
let baseUrl: string;
const listener = { port: 0, stop: async () => undefined as void };

/** Each seeded person's campaign mail as the relay got it: where its bounces go, its Message-ID. */
interface Sent { subscriberId: string; email: string; envelopeFrom: string; messageId: string; headers: Map<string, unknown> }
const people: Sent[] = [];
let campaignId: string;
let nextPerson = 0;
const person = (): Sent => people[nextPerson++]!;

beforeAll(async () => {
  certServer = createServer((request, response) => {
    response.end(request.url === new URL(SNS_CERT_URL).pathname ? SNS_SIGNER.pem : FORGER.pem);
  });
  await new Promise<void>((resolve) => certServer.listen(0, '127.0.0.1', resolve));
  const app = createApp(t.service.deps, { hooks: { fetch: fetchFromSnsStandIn } });
  await new Promise<void>((resolve) => { http = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve()); });
  baseUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const smtpListener = new InboundSmtpListener(t.service.deps);
  listener.port = await smtpListener.start(0, '127.0.0.1');
  listener.stop = () => smtpListener.stop();

  const ids = await seedConfirmed(t.tdb, 'news', 60, { prefix: 'reader' });
  await t.tdb.query(`insert into subscriptions (subscriber_id, list_id, status, consent_version, confirmed_at)
    select s, (select id from lists where slug = 'sport'), 'confirmed', 1, now() from unnest($1::uuid[]) s`, [ids]);
  const draft = await (await t.service.api('POST', '/api/v1/campaigns', {
    name: 'Spring', list: 'news', subject: 'Spring news', mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hello</mj-text></mj-column></mj-section></mj-body></mjml>',
  })).json() as { id: string };
  campaignId = draft.id;
  expect((await t.service.api('POST', `/api/v1/campaigns/${campaignId}/send`)).status).toBe(202);
  while ((await t.service.campaignWorker.runOnce()) > 0);
  const mails = await t.smtp.waitFor(60);
  const { rows } = await t.tdb.query<{ subscriber_id: string; email: string; message_id: string }>(
    `select m.subscriber_id, s.email, m.message_id from campaign_messages m join subscribers s on s.id = m.subscriber_id
     where m.campaign_id = $1 order by s.email`, [campaignId]);
  for (const row of rows) {
    const mail = mails.find((m) => m.envelopeTo.includes(row.email))!;
    people.push({ subscriberId: row.subscriber_id, email: row.email, envelopeFrom: mail.envelopeFrom, messageId: row.message_id, headers: mail.parsed.headers });
  }
}, 60_000);

afterAll(async () => {
  await listener.stop();
  await new Promise<void>((resolve) => http.close(() => resolve()));
  await new Promise<void>((resolve) => certServer.close(() => resolve()));
});

/** A whole SMTP session to the listener: resolves with the answer to the message, or rejects with the refusal. */
async function sendReport(raw: Buffer | string, to: string[]): Promise<string> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: listener.port, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ envelope: { from: 'MAILER-DAEMON@remote.test', to }, raw });
    return String(info.response);
  } finally {
    transport.close();
  }
}

const subscriptionStatus = async (subscriberId: string, list = 'news') => (await t.tdb.query<{ status: string }>(
  `select x.status from subscriptions x join lists l on l.id = x.list_id where x.subscriber_id = $1 and l.slug = $2`, [subscriberId, list])).rows[0]?.status;
const eventsOf = async (subscriberId: string) => (await t.tdb.query<{ kind: string; slug: string | null; evidence: any }>(
  `select e.kind, l.slug, v.evidence from consent_events e left join lists l on l.id = e.list_id
   left join consent_evidence v on v.event_id = e.id where e.subscriber_id = $1 order by e.id`, [subscriberId])).rows;
const suppressed = async (email: string) => (await t.tdb.query(
  `select reason from suppressions where address_hash = sha256(convert_to(lower($1), 'UTF8'))`, [email])).rows[0]?.reason as string | undefined;
const reportsAbout = async (subscriberId: string) => (await t.tdb.query<{ report_id: string; effect: string; kind: string; matched_by: string; raw: Buffer | null }>(
  `select report_id, effect, kind, matched_by, raw from inbound_reports where subscriber_id = $1 order by received_at`, [subscriberId])).rows;

const postRaw = (body: Buffer, key = API_KEY) => fetch(`${baseUrl}/api/v1/inbound`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'message/rfc822' }, body: new Uint8Array(body),
});

/** The sample with its original's Message-ID replaced by ours (the README's way of making it about our mail). */
async function withMessageId(raw: Buffer, messageId: string): Promise<Buffer> {
  const original = (await parseReportMessage(raw)).originalMessageId;
  if (!original) throw new Error('sample names no original');
  return freshCopy(raw.toString('latin1').replaceAll(original.slice(1, -1), messageId.slice(1, -1)));
}

let copies = 0;
/** Another report of the same content: a raw report's identity is its own Message-ID. */
function freshCopy(raw: Buffer | string): Buffer {
  const text = typeof raw === 'string' ? raw : raw.toString('latin1');
  const id = `Message-ID: <copy-${(copies += 1)}-${randomBytes(4).toString('hex')}@remote.test>`;
  const head = text.split(/\r?\n\r?\n/)[0]!;
  return Buffer.from(/^Message-ID:.*$/im.test(head) ? text.replace(/^Message-ID:.*$/im, id) : `${id}\r\n${text}`, 'latin1');
}
/** assent_inbound_reports_total for these labels, as GET /metrics shows it (0 before the first). */
async function reportsCounted(kind: string, provider: string, outcome = 'applied'): Promise<number> {
  const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = metrics.split('\n').find((l) => l.startsWith(`assent_inbound_reports_total{kind="${kind}",provider="${provider}",outcome="${outcome}"} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

const lf = (bytes: Buffer) => bytes.toString('latin1').replace(/\r\n/g, '\n');

describe('the envelope sender names the mail (VERP)', () => {
  it('sends each campaign mail from BOUNCE_ADDRESS with a signed tag naming the message', () => {
    expect(people).toHaveLength(60);
    for (const sent of people.slice(0, 5)) {
      expect(sent.envelopeFrom).toMatch(/^bounces\+[a-z2-7]{40,55}@assent\.test$/);
      expect(resolveVerp([sent.envelopeFrom], VERP)).toEqual({ kind: 'campaign', campaignId, subscriberId: sent.subscriberId });
    }
  });

  it('puts the same tag where Postmark, SendGrid and Mailgun echo it back, their webhooks being configured', () => {
    for (const sent of people.slice(0, 5)) {
      expect(sent.headers.get('x-pm-metadata-verp')).toBe(tagOf(sent));
      expect(JSON.parse(String(sent.headers.get('x-smtpapi')))).toEqual({ unique_args: { verp: tagOf(sent) } });
      expect(JSON.parse(String(sent.headers.get('x-mailgun-variables')))).toEqual({ verp: tagOf(sent) });
    }
  });

  it('sends the confirmation mail from a tag naming its outbox row', async () => {
    const before = t.smtp.received.length;
    const signup = await t.service.app.request('/subscribe', {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': '198.51.100.77' },
      body: JSON.stringify({ email: 'newcomer@example.org', list: 'sport' }),
    });
    expect(signup.status).toBeLessThan(400);
    await t.service.worker.runOnce();
    const mail = await t.smtp.waitForMailTo('newcomer@example.org', before);
    const { rows } = await t.tdb.query<{ id: string }>(`select id from outbox where recipient = 'newcomer@example.org'`);
    expect(resolveVerp([mail.envelopeFrom], VERP)).toEqual({ kind: 'outbox', outboxId: rows[0]!.id });
  });
});

describe('reports by SMTP, each published sample and its effect', () => {
  it.each(RAW_SAMPLES.map((entry) => [entry.file, entry] as const))('%s', async (_file, entry) => {
    const sent = person();
    const answer = await sendReport(fixture(entry.file), [sent.envelopeFrom]);
    expect(answer).toMatch(/^250/);
    const events = await eventsOf(sent.subscriberId);
    const reports = await reportsAbout(sent.subscriberId);
    switch (entry.expected) {
      case 'hard':
        expect(await subscriptionStatus(sent.subscriberId, 'news')).toBe('bounced');
        expect(await subscriptionStatus(sent.subscriberId, 'sport')).toBe('bounced');
        expect(events.filter((e) => e.kind === 'bounced').map((e) => e.slug).sort()).toEqual(['news', 'sport']);
        expect(events.at(-1)!.evidence.report).toMatchObject({ provider: 'smtp', kind: 'permanent', status: entry.status_code, arrived_at: '2026-01-15T10:00:00.000Z' });
        expect(await suppressed(sent.email)).toBe('bounced');
        expect(reports).toMatchObject([{ effect: 'bounced', matched_by: 'verp' }]);
        expect(lf(reports[0]!.raw!)).toBe(lf(fixture(entry.file))); // as it came, line ends aside (SMTP sends CRLF)
        break;
      case 'soft':
        expect(await subscriptionStatus(sent.subscriberId)).toBe('confirmed');
        expect(events.map((e) => e.kind)).not.toContain('bounced');
        expect(await suppressed(sent.email)).toBeUndefined();
        expect(reports).toMatchObject([{ kind: 'temporary', effect: 'counted' }]);
        break;
      case 'complaint':
        expect(await subscriptionStatus(sent.subscriberId, 'news')).toBe('complained');
        expect(await subscriptionStatus(sent.subscriberId, 'sport')).toBe('confirmed');
        expect(events.at(-1)).toMatchObject({ kind: 'complained', slug: 'news', evidence: { report: { kind: 'complaint', arrived_at: '2026-01-15T10:00:00.000Z' } } });
        expect(await suppressed(sent.email)).toBe('complained');
        break;
      case 'ignore':
        expect(await subscriptionStatus(sent.subscriberId)).toBe('confirmed');
        expect(events.map((e) => e.kind)).toEqual([]);
        expect(reports).toEqual([]);
        break;
    }
    expect((await verifyChain(t.service.deps.db, sent.subscriberId)).verified).toBe(true);
  });

  it('handles a report once however often it arrives', async () => {
    const sent = person();
    const raw = freshCopy(fixture('dsn-postfix-550-5.1.1-address-rejected.eml'));
    await sendReport(raw, [sent.envelopeFrom]);
    await sendReport(raw, [sent.envelopeFrom]);
    const again = await postRaw(raw);
    expect(again.status).toBe(202);
    expect(await again.json()).toMatchObject({ outcome: 'duplicate' });
    expect((await eventsOf(sent.subscriberId)).filter((e) => e.kind === 'bounced')).toHaveLength(2); // news and sport, once each
    expect(await reportsAbout(sent.subscriberId)).toHaveLength(1);
    const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/assent_inbound_reports_total\{kind="permanent",provider="smtp",outcome="duplicate"\} [1-9]/);
  });

  it('matches by the original Message-ID when the report carries no tag (sent to MAIL_FROM)', async () => {
    const sent = person();
    const raw = await withMessageId(fixture('dsn-sendmail-550-5.1.1-user-unknown.eml'), sent.messageId);
    expect(await sendReport(raw, ['news@assent.test'])).toMatch(/^250/);
    expect(await subscriptionStatus(sent.subscriberId)).toBe('bounced');
    expect(await reportsAbout(sent.subscriberId)).toMatchObject([{ matched_by: 'message_id', effect: 'bounced' }]);
  });
});

describe('what the listener refuses or ignores', () => {
  it('answers 550 to a recipient that is not ours, and changes nothing', async () => {
    const before = await snapshotAllTables(t.tdb);
    await expect(sendReport(fixture('dsn-postfix-550-5.1.1-address-rejected.eml'), ['someone@elsewhere.test'])).rejects.toMatchObject({ responseCode: 550 });
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('refuses a 10 MB report with 552', async () => {
    const big = `From: x@remote.test\r\nTo: ${BOUNCE_ADDRESS}\r\nSubject: big\r\n\r\n${'a'.repeat(76).concat('\r\n').repeat(130_000)}`;
    await expect(sendReport(big, [BOUNCE_ADDRESS])).rejects.toMatchObject({ responseCode: 552 });
  });

  it('answers 250 to a forged tag, a report about a mail never sent and garbage, and changes nothing', async () => {
    const sent = person();
    const before = await snapshotAllTables(t.tdb);
    const raw = freshCopy(fixture('dsn-postfix-550-5.1.1-address-rejected.eml'));
    // A genuine tag with one letter changed; a tag we signed for a message that was never sent.
    const tag = sent.envelopeFrom.slice('bounces+'.length, sent.envelopeFrom.indexOf('@'));
    const forged = `bounces+${tag.slice(0, -1)}${tag.endsWith('a') ? 'b' : 'a'}@assent.test`;
    const neverSent = `bounces+${signVerpTag({ kind: 'campaign', campaignId, subscriberId: '00000000-0000-4000-8000-000000000000' }, VERP.keys)}@assent.test`;
    expect(await sendReport(raw, [forged])).toMatch(/^250/);
    expect(await sendReport(raw, [neverSent])).toMatch(/^250/);
    expect(await sendReport(Buffer.from(randomBytes(5000)), [BOUNCE_ADDRESS])).toMatch(/^250/);
    expect(await sendReport('Content-Type: multipart/report; boundary="x"\r\n\r\n--x\r\n--x--', [BOUNCE_ADDRESS])).toMatch(/^250/);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
    expect(await subscriptionStatus(sent.subscriberId)).toBe('confirmed');
  });

  it('a report naming the Message-ID of a mail not yet sent changes nothing', async () => {
    const signup = await t.service.app.request('/subscribe', {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': '198.51.100.78' },
      body: JSON.stringify({ email: 'waiting@example.org', list: 'sport' }),
    });
    expect(signup.status).toBeLessThan(400);
    const { rows } = await t.tdb.query<{ message_id: string; status: string }>(`select message_id, status from outbox where recipient = 'waiting@example.org'`);
    expect(rows).toMatchObject([{ status: 'queued' }]);
    const before = await snapshotAllTables(t.tdb);
    const raw = await withMessageId(fixture('dsn-postfix-550-5.1.1-address-rejected.eml'), rows[0]!.message_id);
    expect(await sendReport(raw.toString('latin1').replaceAll('kijitora@example.co.jp', 'waiting@example.org'), [BOUNCE_ADDRESS])).toMatch(/^250/);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('a flood of reports with no matching tag or Message-ID unsubscribes nobody', async () => {
    const before = await snapshotAllTables(t.tdb);
    const raw = fixture('arf-generic-abuse-rfc5965.eml');
    await Promise.all(Array.from({ length: 40 }, () => sendReport(freshCopy(raw), [BOUNCE_ADDRESS, 'news@assent.test'])));
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });
});

describe('POST /api/v1/inbound', () => {
  it('applies a raw report matched by Message-ID and answers what it did', async () => {
    const sent = person();
    const response = await postRaw(await withMessageId(fixture('arf-yahoo-fbl-abuse.eml'), sent.messageId));
    expect(response.status).toBe(202);
    expect(await response.json()).toMatchObject({ kind: 'complaint', outcome: 'applied' });
    expect(await subscriptionStatus(sent.subscriberId)).toBe('complained');
  });

  it('needs an API key, a message body, and refuses 10 MB; garbage changes nothing', async () => {
    const before = await snapshotAllTables(t.tdb);
    const raw = freshCopy(fixture('dsn-postfix-550-5.1.1-address-rejected.eml'));
    expect((await postRaw(raw, 'wrong-key')).status).toBe(401);
    expect((await fetch(`${baseUrl}/api/v1/inbound`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'text/plain' }, body: new Uint8Array(raw) })).status).toBe(415);
    expect((await postRaw(Buffer.alloc(10 * 1024 * 1024, 'a'))).status).toBe(413);
    const garbage = await postRaw(randomBytes(3000));
    expect(garbage.status).toBe(202);
    expect(await garbage.json()).toMatchObject({ outcome: 'ignored' });
    expect((await postRaw(raw)).status).toBe(202); // a real report about no mail of ours
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });
});

// Providers echo the tag where the sender put it (README, "Bounces and complaints"); the samples get ours there.
const tagOf = (sent: Sent) => sent.envelopeFrom.slice('bounces+'.length, sent.envelopeFrom.indexOf('@'));
const ours = (file: string, sent: Sent) => {
  const entry = INDEX.find((e) => e.file === file)!;
  return fixture(file).toString('utf8').replaceAll(entry.recipient, sent.email);
};

// What Postmark does with a mail's X-PM-Metadata-<name> headers: its webhooks return them as Metadata.<name>.
const postmarkMetadata = (sent: Sent) => Object.fromEntries([...sent.headers]
  .filter(([name]) => name.startsWith('x-pm-metadata-')).map(([name, value]) => [name.slice('x-pm-metadata-'.length), String(value)]));
// What SendGrid does with X-SMTPAPI's unique_args: each becomes a top-level field of the mail's events.
const sendgridArgs = (sent: Sent) => (JSON.parse(String(sent.headers.get('x-smtpapi'))) as { unique_args: Record<string, string> }).unique_args;

function postmark(body: string, token = POSTMARK_TOKEN) {
  return fetch(`${baseUrl}/hooks/postmark`, {
    method: 'POST', body, headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`postmark:${token}`).toString('base64')}` },
  });
}
function sendgrid(body: string, key = sendgridKeys.privateKey) {
  const at = String(Math.floor(t.service.clock.now / 1000));
  return fetch(`${baseUrl}/hooks/sendgrid`, {
    method: 'POST', body, headers: {
      'content-type': 'application/json', 'X-Twilio-Email-Event-Webhook-Timestamp': at,
      'X-Twilio-Email-Event-Webhook-Signature': sign('sha256', Buffer.from(at + body), key).toString('base64'),
    },
  });
}
function mailgun(eventData: string, key = MAILGUN_KEY) {
  const timestamp = String(Math.floor(t.service.clock.now / 1000));
  const token = randomBytes(25).toString('hex');
  const signature = createHmac('sha256', key).update(timestamp + token).digest('hex');
  return fetch(`${baseUrl}/hooks/mailgun`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: `{"signature":${JSON.stringify({ timestamp, token, signature })},"event-data":${eventData}}`,
  });
}
const mailgunEvent = (file: string, sent: Sent, id?: string) => {
  const event = ours(file, sent).replace('"user-variables": []', `"user-variables": {"verp": "${tagOf(sent)}"}`);
  return id ? event.replace(/"id": "[^"]+"/, `"id": "${id}"`) : event;
};

describe('provider hooks over HTTP', () => {
  it('Postmark: a hard bounce bounces, a spam complaint complains, matched by the metadata our mail carried', async () => {
    const [a, b] = [person(), person()];
    // Postmark's MessageID is its own, not our Message-ID: only the echoed metadata names the mail.
    const withTag = (file: string, sent: Sent) => JSON.stringify({ ...JSON.parse(ours(file, sent)), Metadata: postmarkMetadata(sent) });
    const counted = [await reportsCounted('permanent', 'postmark'), await reportsCounted('complaint', 'postmark')];
    expect((await postmark(withTag('postmark-hardbounce.json', a))).status).toBe(200);
    expect((await postmark(withTag('postmark-spamcomplaint.json', b).replace('"ID":42', '"ID":43'))).status).toBe(200);
    expect([await reportsCounted('permanent', 'postmark'), await reportsCounted('complaint', 'postmark')]).toEqual([counted[0]! + 1, counted[1]! + 1]);
    expect(await subscriptionStatus(a.subscriberId)).toBe('bounced');
    expect(await subscriptionStatus(b.subscriberId)).toBe('complained');
    expect((await eventsOf(a.subscriberId)).at(-1)!.evidence.report).toMatchObject({ provider: 'postmark', status: '5.1.1' });
  });

  it('SendGrid: a signed batch, each event applied, matched by the unique_args our mail carried', async () => {
    const [a, b, c] = [person(), person(), person()];
    const event = (file: string, sent: Sent) => ({ ...(JSON.parse(ours(file, sent)) as object[])[0], ...sendgridArgs(sent) });
    const body = JSON.stringify([
      event('sendgrid-bounce-5.0.0-docs.json', a), event('sendgrid-spamreport-docs.json', b), event('sendgrid-deferred-docs.json', c),
    ]);
    const counted = await reportsCounted('temporary', 'sendgrid', 'counted');
    const response = await sendgrid(body);
    expect(response.status).toBe(200);
    expect(await reportsCounted('temporary', 'sendgrid', 'counted')).toBe(counted + 1);
    expect(await subscriptionStatus(a.subscriberId)).toBe('bounced');
    expect(await subscriptionStatus(b.subscriberId)).toBe('complained');
    expect(await reportsAbout(c.subscriberId)).toMatchObject([{ kind: 'temporary', effect: 'counted' }]);
  });

  it('Mailgun: a permanent failure bounces, a complaint complains, matched by the variables our mail carried', async () => {
    const [a, b] = [person(), person()];
    // What Mailgun does with a mail's X-Mailgun-Variables: its events return them as user-variables.
    const withVariables = (file: string, sent: Sent) => ours(file, sent).replace('"user-variables": []', `"user-variables": ${String(sent.headers.get('x-mailgun-variables'))}`);
    const counted = await reportsCounted('complaint', 'mailgun');
    expect((await mailgun(withVariables('mailgun-failed-permanent-docs.json', a))).status).toBe(200);
    expect((await mailgun(withVariables('mailgun-complained-docs.json', b))).status).toBe(200);
    expect(await reportsCounted('complaint', 'mailgun')).toBe(counted + 1);
    expect(await subscriptionStatus(a.subscriberId)).toBe('bounced');
    expect(await subscriptionStatus(b.subscriberId)).toBe('complained');
  });

  it('answers 401 to an unsigned or wrongly signed call, and changes nothing', async () => {
    const sent = person();
    const before = await snapshotAllTables(t.tdb);
    const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const pm = ours('postmark-hardbounce.json', sent).replace('"customer_id": "12345"', `"verp": "${tagOf(sent)}"`);
    expect((await postmark(pm, 'not-the-token-0123456789')).status).toBe(401);
    expect((await fetch(`${baseUrl}/hooks/postmark`, { method: 'POST', body: pm })).status).toBe(401);
    expect((await sendgrid(`[${JSON.stringify({ email: sent.email, event: 'bounce', sg_event_id: 'x', timestamp: 1, verp: tagOf(sent) })}]`, stranger)).status).toBe(401);
    expect((await mailgun(mailgunEvent('mailgun-failed-permanent-docs.json', sent, 'forged-1'), 'key-not-ours-0123456789abcdef0123')).status).toBe(401);
    expect((await fetch(`${baseUrl}/hooks/mailgun`, { method: 'POST', body: '{}' })).status).toBe(401);
    expect((await fetch(`${baseUrl}/hooks/ses`, { method: 'POST', body: '{}' })).status).toBe(401);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });
});

/** An SES notification as SNS posts it: the sample as its Message, signed as SNS signs. */
function snsNotification(sent: Sent, fields: Record<string, string> = {}, key = SNS_SIGNER.key): string {
  const file = 'ses-bounce-permanent-general-with-dsn-awsdocs.json';
  const sample = fixture(file).toString('utf8').replaceAll('john@example.com', sent.envelopeFrom).replaceAll(INDEX.find((e) => e.file === file)!.recipient, sent.email);
  const message: Record<string, string> = {
    Type: 'Notification', MessageId: randomUUID(), TopicArn: SES_TOPIC, Message: sample,
    Timestamp: new Date(t.service.clock.now - 5_000).toISOString(), SignatureVersion: '1', SigningCertURL: SNS_CERT_URL, ...fields,
  };
  return JSON.stringify({ ...message, Signature: signSns(message, key) });
}
const ses = (body: string) => fetch(`${baseUrl}/hooks/ses`, { method: 'POST', body, headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'Notification' } });

describe('Amazon SES through SNS, over HTTP', () => {
  it('a bounce signed with the key of a certificate fetched from the SNS host bounces the person, matched by the envelope sender', async () => {
    const sent = person();
    const counted = await reportsCounted('permanent', 'ses');
    const response = await ses(snsNotification(sent));
    expect(response.status).toBe(200);
    expect(await reportsCounted('permanent', 'ses')).toBe(counted + 1);
    expect(await subscriptionStatus(sent.subscriberId)).toBe('bounced');
    expect(await reportsAbout(sent.subscriberId)).toMatchObject([{ kind: 'permanent', matched_by: 'verp' }]);
    expect((await eventsOf(sent.subscriberId)).at(-1)!.evidence.report).toMatchObject({ provider: 'ses', status: '5.1.1' });
    expect(certificatesAsked).toEqual([SNS_CERT_URL]);
  });

  it('a forged signature, a certificate from a host that is not SNS\'s, a topic not ours: 401, and nothing changes', async () => {
    const sent = person();
    const before = await snapshotAllTables(t.tdb);
    const asked = certificatesAsked.length;
    expect((await ses(snsNotification(sent, {}, FORGER.key))).status).toBe(401);
    const foreign = 'https://attacker.example/SimpleNotificationService-assent-test.pem';
    expect((await ses(snsNotification(sent, { SigningCertURL: foreign }, FORGER.key))).status).toBe(401);
    expect((await ses(snsNotification(sent, { SigningCertURL: 'https://sns.us-west-2.amazonaws.com.attacker.example/x.pem' }, FORGER.key))).status).toBe(401);
    expect((await ses(snsNotification(sent, { TopicArn: 'arn:aws:sns:us-west-2:999999999999:not-ours' }))).status).toBe(401);
    expect(certificatesAsked.slice(asked).every((url) => new URL(url).hostname === 'sns.us-west-2.amazonaws.com')).toBe(true);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
    expect(await subscriptionStatus(sent.subscriberId)).toBe('confirmed');
  });
});

describe('soft bounces', () => {
  it('three temporary failures within 15 days count as permanent; a delivery between starts again', async () => {
    const sent = person();
    const soft = (n: number) => mailgun(mailgunEvent('mailgun-failed-temporary-docs.json', sent, `soft-${sent.subscriberId}-${n}`));
    const delivered = (n: number) => mailgun(JSON.stringify({
      event: 'delivered', id: `delivered-${sent.subscriberId}-${n}`, timestamp: t.service.clock.now / 1000, recipient: sent.email,
      'user-variables': { verp: tagOf(sent) }, message: { headers: { 'message-id': sent.messageId.slice(1, -1) } },
    }));
    expect((await soft(1)).status).toBe(200);
    expect((await soft(2)).status).toBe(200);
    expect((await delivered(1)).status).toBe(200);
    expect((await soft(3)).status).toBe(200);
    expect(await subscriptionStatus(sent.subscriberId)).toBe('confirmed');
    // The first two fall outside the window once they are 15 days old; the count restarted anyway.
    expect((await soft(4)).status).toBe(200);
    expect(await subscriptionStatus(sent.subscriberId)).toBe('confirmed');
    expect((await soft(5)).status).toBe(200);
    expect(await subscriptionStatus(sent.subscriberId)).toBe('bounced');
    const last = (await eventsOf(sent.subscriberId)).at(-1)!;
    expect(last).toMatchObject({ kind: 'bounced', evidence: { report: { kind: 'temporary', soft_bounces_in_15_days: 3 } } });
  });

  it('does not count temporary failures older than 15 days', async () => {
    const sent = person();
    const soft = (n: number) => mailgun(mailgunEvent('mailgun-failed-temporary-docs.json', sent, `old-${sent.subscriberId}-${n}`));
    await soft(1);
    await soft(2);
    await t.tdb.query(`update inbound_reports set received_at = received_at - interval '16 days' where subscriber_id = $1`, [sent.subscriberId]);
    await soft(3);
    expect(await subscriptionStatus(sent.subscriberId)).toBe('confirmed');
  });
});

describe('raw reports are kept 30 days and erased with the person', () => {
  it('clears raw reports past 30 days and those of an erased person', async () => {
    const [a, b] = [person(), person()];
    await sendReport(freshCopy(fixture('dsn-qmail-550-5.1.1-plaintext.eml')), [a.envelopeFrom]);
    await sendReport(freshCopy(fixture('dsn-exim-550-5.1.1-plaintext.eml')), [b.envelopeFrom]);
    expect((await reportsAbout(a.subscriberId))[0]!.raw).not.toBeNull();
    await t.tdb.query(`update inbound_reports set received_at = received_at - interval '31 days' where subscriber_id = $1`, [a.subscriberId]);
    expect(await clearOldRawReports(t.service.deps)).toBeGreaterThanOrEqual(1);
    expect((await reportsAbout(a.subscriberId))[0]!.raw).toBeNull();
    expect((await reportsAbout(b.subscriberId))[0]!.raw).not.toBeNull();
    expect((await t.service.api('DELETE', `/api/v1/subscribers/${b.subscriberId}`)).status).toBeLessThan(300);
    expect((await reportsAbout(b.subscriberId))[0]).toMatchObject({ raw: null, effect: 'bounced' });
    expect((await t.tdb.query(`select diagnostic from inbound_reports where subscriber_id = $1`, [b.subscriberId])).rows[0].diagnostic).toBeNull();
  });
});

describe('campaign counts and the automatic pause', () => {
  it('counts bounced and complained per campaign', async () => {
    const body = await (await t.service.api('GET', `/api/v1/campaigns/${campaignId}`)).json() as { counts: Record<string, number> };
    const { rows } = await t.tdb.query<{ bounced: string; complained: string }>(`select count(*) filter (where effect = 'bounced') as bounced,
      count(*) filter (where effect = 'complained') as complained from inbound_reports where campaign_id = $1`, [campaignId]);
    expect(body.counts.bounced).toBeGreaterThan(5);
    expect(body.counts.complained).toBeGreaterThan(3);
    expect(body.counts).toMatchObject({ bounced: Number(rows[0]!.bounced), complained: Number(rows[0]!.complained), sent: 60 });
  });

  it('pauses a campaign whose complaints pass 0.3% of 1,000 delivered, with its reason', async () => {
    const ids = await seedConfirmed(t.tdb, 'big', 1000, { prefix: 'big' });
    const draft = await (await t.service.api('POST', '/api/v1/campaigns', {
      name: 'Big', list: 'big', subject: 'Big news', mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>',
    })).json() as { id: string };
    expect((await t.service.api('POST', `/api/v1/campaigns/${draft.id}/send`)).status).toBe(202);
    // As if the relay had taken all 1,000 (sending them through SMTP is tested above).
    await t.tdb.query(`update campaign_messages set status = 'sent', sent_at = now(), message_id = '<big-' || subscriber_id || '@assent.test>'
      where campaign_id = $1`, [draft.id]);
    const complain = async (subscriberId: string) => {
      const sent = { subscriberId, email: `x@example.org`, envelopeFrom: `bounces+${signVerpTag({ kind: 'campaign', campaignId: draft.id, subscriberId }, VERP.keys)}@assent.test`, messageId: '', headers: new Map() };
      const event = mailgunEvent('mailgun-complained-docs.json', sent, `complaint-${subscriberId}`);
      expect((await mailgun(event)).status).toBe(200);
    };
    const status = async () => (await (await t.service.api('GET', `/api/v1/campaigns/${draft.id}`)).json()) as {
      status: string; paused_reason: string | null; counts: Record<string, number>;
    };
    for (const id of ids.slice(0, 3)) await complain(id);
    expect(await status()).toMatchObject({ status: 'sending', paused_reason: null, counts: { complained: 3 } });
    await complain(ids[3]!);
    expect(await status()).toMatchObject({ status: 'paused', counts: { complained: 4, sent: 1000 } });
    expect((await status()).paused_reason).toBe('complaints passed 0.3%: 4 of 1000 delivered');
    const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/assent_campaigns_auto_paused_total\{reason="complaints"\} 1/);
    // A person resumes it: the reason goes.
    expect((await t.service.api('POST', `/api/v1/campaigns/${draft.id}/resume`)).status).toBe(200);
    expect(await status()).toMatchObject({ status: 'sending', paused_reason: null });
  }, 30_000);
});
