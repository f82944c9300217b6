import { createHmac, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createMailgunReceiver } from '../src/inbound/mailgun.js';
import { createPostmarkReceiver } from '../src/inbound/postmark.js';
import { createSendGridReceiver } from '../src/inbound/sendgrid.js';
import type { InboundReport, ReportKind } from '../src/inbound/types.js';
import { resolveVerp, signVerpTag, verpAddress, verpKeysFromSecrets, type VerpClaims } from '../src/inbound/verp.js';
import type { WebhookOutcome } from '../src/inbound/providers.js';

const FIXTURES = new URL('./fixtures/bounces/', import.meta.url);
const fixtureText = (file: string) => readFileSync(new URL(file, FIXTURES), 'utf8');
interface IndexEntry { file: string; kind: string; recipient: string; expected: string; status_code: string | null }
const INDEX = JSON.parse(readFileSync(new URL('INDEX.json', FIXTURES), 'utf8')) as IndexEntry[];
const KIND: Record<string, ReportKind> = { hard: 'permanent', soft: 'temporary', complaint: 'complaint', ignore: 'not_a_report' };
const samples = (kind: string) => INDEX.filter((entry) => entry.kind === kind).map((entry) => [entry.file, entry] as const);

const VERP = { bounceAddress: 'bounces@mail.assent.test', keys: verpKeysFromSecrets(['test-secret-for-verp-tags-0123456789']) };
const CLAIMS: VerpClaims = { kind: 'campaign', campaignId: '12', subscriberId: '3e0f7c1a-9d2b-4c6e-8f1a-2b3c4d5e6f70' };
const TAG = signVerpTag(CLAIMS, VERP.keys);
const OUR_VERP = verpAddress(VERP.bounceAddress, TAG);
const OUR_RECIPIENT = 'subscriber.three@recipient.test';
const NOW = 1_770_921_000_000;

const reportsOf = (outcome: WebhookOutcome): InboundReport[] => (outcome.ok ? outcome.reports : []);

function expectSample(report: InboundReport | undefined, entry: IndexEntry, provider: string) {
  expect(report).toMatchObject({ provider, kind: KIND[entry.expected], status: entry.status_code, recipients: [OUR_RECIPIENT], ignoredBecause: null });
  expect(report!.reportId.startsWith(`${provider}:`)).toBe(true);
}

describe('Postmark webhooks (Basic auth, the token as password)', () => {
  const TOKEN = 'postmark-webhook-token-0123456789';
  const receive = createPostmarkReceiver({ token: TOKEN });
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const call = (body: string, authorization?: string) =>
    receive({ body, headers: new Headers(authorization ? { authorization } : {}) });
  // Postmark echoes a message's metadata: ours carries the VERP tag there.
  const ours = (file: string) => fixtureText(file).replaceAll('john@example.com', OUR_RECIPIENT).replace('"customer_id": "12345"', `"verp": "${TAG}"`);

  it.each(samples('postmark'))('%s', (file, entry) => {
    const [report] = reportsOf(call(ours(file), basic('postmark', TOKEN)));
    expectSample(report, entry, 'postmark');
    expect(report).toMatchObject({ reportId: 'postmark:bounce:42', providerMessageId: '883953f4-6105-42a2-a16a-77a8eac79483' });
    expect(report!.reportedAt?.toISOString()).toBe('2025-04-05T16:33:54.907Z');
    expect(resolveVerp(report!.verpCandidates, VERP)).toEqual(CLAIMS);
  });

  it('keeps the remote server words of a hard bounce', () => {
    expect(reportsOf(call(ours('postmark-hardbounce.json'), basic('any-user', TOKEN)))[0]!.diagnostic)
      .toBe('550 5.1.1 The email account that you tried to reach does not exist.');
  });

  it('refuses a wrong token, no credentials, or credentials of another scheme', () => {
    const body = ours('postmark-hardbounce.json');
    expect(call(body, basic('postmark', `${TOKEN}x`))).toMatchObject({ ok: false, reason: 'bad_signature' });
    expect(call(body, basic('postmark', ''))).toMatchObject({ ok: false, reason: 'bad_signature' });
    expect(call(body)).toMatchObject({ ok: false, reason: 'missing_credentials' });
    expect(call(body, `Bearer ${TOKEN}`)).toMatchObject({ ok: false, reason: 'missing_credentials' });
    expect(call(body, `Basic ${Buffer.from(TOKEN).toString('base64')}`)).toMatchObject({ ok: false, reason: 'missing_credentials' });
  });

  it('refuses a body that is not a Postmark record, once authenticated', () => {
    expect(call('[1,2,3]', basic('postmark', TOKEN))).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it.each([
    ['SoftBounce', 'temporary', null],
    ['Transient', 'temporary', null],
    ['AutoResponder', 'not_a_report', 'auto_reply'],
    ['ChallengeVerification', 'not_a_report', 'challenge_response'],
    ['AddressChange', 'not_a_report', 'other_event'],
  ])('maps bounce type %s to %s', (type, kind, ignoredBecause) => {
    const body = ours('postmark-hardbounce.json').replace('"Type": "HardBounce"', `"Type": "${type}"`);
    expect(reportsOf(call(body, basic('postmark', TOKEN)))[0]).toMatchObject({ kind, ignoredBecause });
  });

  it('a hard bounce for a full mailbox is temporary, as in a DSN', () => {
    const body = ours('postmark-hardbounce.json').replace('550 5.1.1 The email account that you tried to reach does not exist.', '552 5.2.2 Mailbox full');
    expect(reportsOf(call(body, basic('postmark', TOKEN)))[0]).toMatchObject({ kind: 'temporary', status: '5.2.2' });
  });

  it('a delivery, and nothing for an open', () => {
    const delivery = JSON.stringify({ RecordType: 'Delivery', MessageID: 'm-1', Recipient: OUR_RECIPIENT, DeliveredAt: '2025-04-05T16:33:54Z', Details: 'Test delivery webhook details' });
    expect(reportsOf(call(delivery, basic('postmark', TOKEN)))[0]).toMatchObject({ kind: 'delivered', recipients: [OUR_RECIPIENT] });
    expect(call(JSON.stringify({ RecordType: 'Open', MessageID: 'm-1' }), basic('postmark', TOKEN))).toEqual({ ok: true, reports: [] });
  });
});

describe('SendGrid signed event webhook (ECDSA P-256 over timestamp + body)', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const KEY_BASE64 = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const receive = createSendGridReceiver({ publicKey: KEY_BASE64 });
  const timestamp = String(Math.floor(NOW / 1000));
  const signature = (body: string, at = timestamp, key = privateKey) => sign('sha256', Buffer.from(at + body), key).toString('base64');
  const call = (body: string, headers: Record<string, string>) => receive({ body: Buffer.from(body), headers: new Headers(headers) }, NOW);
  const signed = (body: string, at = timestamp) => call(body, {
    'X-Twilio-Email-Event-Webhook-Signature': signature(body, at), 'X-Twilio-Email-Event-Webhook-Timestamp': at,
  });
  const ours = (entry: IndexEntry) => fixtureText(entry.file).replaceAll(entry.recipient, OUR_RECIPIENT)
    .replace('"smtp-id"', `"verp":"${TAG}","smtp-id"`);

  it.each(samples('sendgrid'))('%s', (_file, entry) => {
    const [report] = reportsOf(signed(ours(entry)));
    expectSample(report, entry, 'sendgrid');
    expect(resolveVerp(report!.verpCandidates, VERP)).toEqual(CLAIMS);
    expect(report!.originalMessageId).toMatch(/^<.+@.+>$/);
  });

  it('takes the verification key as PEM too', () => {
    const pem = createSendGridReceiver({ publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString() });
    const body = fixtureText('sendgrid-spamreport-docs.json');
    const outcome = pem({ body, headers: new Headers({ 'X-Twilio-Email-Event-Webhook-Signature': signature(body), 'X-Twilio-Email-Event-Webhook-Timestamp': timestamp }) }, NOW);
    expect(reportsOf(outcome)[0]).toMatchObject({ kind: 'complaint', feedbackType: 'abuse' });
  });

  it('reads every event of a batch and skips those that are no report', () => {
    const events = ['sendgrid-bounce-5.0.0-docs.json', 'sendgrid-deferred-docs.json', 'sendgrid-spamreport-docs.json']
      .map((file) => (JSON.parse(fixtureText(file)) as unknown[])[0]);
    const body = JSON.stringify([...events, { email: OUR_RECIPIENT, event: 'open', sg_event_id: 'o1', timestamp: 1 }]);
    expect(reportsOf(signed(body)).map((report) => report.kind)).toEqual(['permanent', 'temporary', 'complaint']);
  });

  it('refuses a changed body, a changed timestamp, another key, no signature', () => {
    const body = fixtureText('sendgrid-bounce-5.0.0-docs.json');
    const headers = { 'X-Twilio-Email-Event-Webhook-Signature': signature(body), 'X-Twilio-Email-Event-Webhook-Timestamp': timestamp };
    expect(call(body.replace('example@test.com', 'other@test.com'), headers)).toMatchObject({ ok: false, reason: 'bad_signature' });
    expect(call(body, { ...headers, 'X-Twilio-Email-Event-Webhook-Timestamp': String(Number(timestamp) + 1) })).toMatchObject({ ok: false, reason: 'bad_signature' });
    const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    expect(call(body, { ...headers, 'X-Twilio-Email-Event-Webhook-Signature': signature(body, timestamp, stranger) })).toMatchObject({ ok: false, reason: 'bad_signature' });
    expect(call(body, { ...headers, 'X-Twilio-Email-Event-Webhook-Signature': 'bm90IGEgc2lnbmF0dXJl' })).toMatchObject({ ok: false, reason: 'bad_signature' });
    expect(call(body, {})).toMatchObject({ ok: false, reason: 'missing_credentials' });
  });

  it('refuses a genuine signature made more than five minutes ago (or ahead)', () => {
    const body = fixtureText('sendgrid-bounce-5.0.0-docs.json');
    expect(signed(body, String(Number(timestamp) - 301))).toMatchObject({ ok: false, reason: 'stale_timestamp' });
    expect(signed(body, String(Number(timestamp) + 301))).toMatchObject({ ok: false, reason: 'stale_timestamp' });
    expect(signed(body, String(Number(timestamp) - 299)).ok).toBe(true);
  });

  it('refuses a signed body that is not an event array', () => {
    expect(signed('{"event":"bounce"}')).toMatchObject({ ok: false, reason: 'malformed' });
  });
});

describe('Mailgun webhooks (HMAC-SHA256 of timestamp + token)', () => {
  const SIGNING_KEY = 'key-0123456789abcdef0123456789abcdef';
  const receive = createMailgunReceiver({ signingKey: SIGNING_KEY });
  const seconds = String(Math.floor(NOW / 1000));
  function payload(eventData: string, options: { timestamp?: string; key?: string; token?: string } = {}): string {
    const timestamp = options.timestamp ?? seconds;
    const token = options.token ?? randomBytes(25).toString('hex');
    const signature = createHmac('sha256', options.key ?? SIGNING_KEY).update(timestamp + token).digest('hex');
    // The published event-data, byte for byte, inside the envelope Mailgun posts.
    return `{"signature":${JSON.stringify({ timestamp, token, signature })},"event-data":${eventData}}`;
  }
  const call = (body: string) => receive({ body, headers: new Headers({ 'content-type': 'application/json' }) }, NOW);
  const ours = (entry: IndexEntry) => fixtureText(entry.file).replaceAll(entry.recipient, OUR_RECIPIENT).replace('"user-variables": []', `"user-variables": {"verp": "${TAG}"}`);

  it.each(samples('mailgun'))('%s', (_file, entry) => {
    const [report] = reportsOf(call(payload(ours(entry))));
    expectSample(report, entry, 'mailgun');
    expect(resolveVerp(report!.verpCandidates, VERP)).toEqual(CLAIMS);
    expect(report!.originalMessageId).toMatch(/^<\d{14}\.[0-9a-f]+@(sample\.)?mailgun\.com>$/);
  });

  it('finds our VERP address in the envelope sender', () => {
    const body = fixtureText('mailgun-failed-permanent-docs.json').replace('"sender": "sender@sample.mailgun.com"', `"sender": "${OUR_VERP}"`);
    expect(resolveVerp(reportsOf(call(payload(body)))[0]!.verpCandidates, VERP)).toEqual(CLAIMS);
  });

  it('refuses another key, a changed token or timestamp, no signature', () => {
    const event = fixtureText('mailgun-failed-permanent-docs.json');
    expect(call(payload(event, { key: 'key-someone-else' }))).toMatchObject({ ok: false, reason: 'bad_signature' });
    const genuine = payload(event, { token: 'a'.repeat(50) });
    expect(call(genuine.replace('a'.repeat(50), 'b'.repeat(50)))).toMatchObject({ ok: false, reason: 'bad_signature' });
    expect(call(genuine.replace(`"timestamp":"${seconds}"`, `"timestamp":"${Number(seconds) - 1}"`))).toMatchObject({ ok: false, reason: 'bad_signature' });
    expect(call(`{"event-data":${event}}`)).toMatchObject({ ok: false, reason: 'missing_credentials' });
    expect(call('garbage')).toMatchObject({ ok: false, reason: 'missing_credentials' });
  });

  it('refuses a genuine signature made more than five minutes ago (or ahead)', () => {
    const event = fixtureText('mailgun-complained-docs.json');
    expect(call(payload(event, { timestamp: String(Number(seconds) - 301) }))).toMatchObject({ ok: false, reason: 'stale_timestamp' });
    expect(call(payload(event, { timestamp: String(Number(seconds) + 301) }))).toMatchObject({ ok: false, reason: 'stale_timestamp' });
    expect(call(payload(event, { timestamp: String(Number(seconds) - 299) })).ok).toBe(true);
  });

  it('a temporary failure stays temporary whatever its code; suppressions say what they were', () => {
    const permanent = fixtureText('mailgun-failed-permanent-docs.json');
    expect(reportsOf(call(payload(permanent.replace('"severity": "permanent"', '"severity": "temporary"'))))[0]).toMatchObject({ kind: 'temporary', status: '5.5.0' });
    expect(reportsOf(call(payload(permanent.replace('"reason": "bounce"', '"reason": "suppress-complaint"'))))[0]).toMatchObject({ kind: 'complaint' });
    expect(call(payload(permanent.replace('"event": "failed"', '"event": "opened"')))).toEqual({ ok: true, reports: [] });
  });
});

describe('webhook receivers are built from their settings', () => {
  it('refuse to be built without a token or key, or with a key that is none', () => {
    expect(() => createPostmarkReceiver({ token: '' })).toThrow();
    expect(() => createMailgunReceiver({ signingKey: '' })).toThrow();
    expect(() => createSendGridReceiver({ publicKey: 'bm90IGEga2V5' })).toThrow();
  });
});
