import { randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createSesReceiver, isSnsUrl, type SesOutcome } from '../src/inbound/sns.js';
import { resolveVerp, signVerpTag, verpAddress, verpKeysFromSecrets, type VerpClaims } from '../src/inbound/verp.js';
import { issue, signSns } from './helpers/sns.js';

const NOW = Date.parse('2016-10-21T06:58:12Z');
const YEAR = 365 * 24 * 3600 * 1000;
const VALID: [Date, Date] = [new Date(NOW - YEAR), new Date(NOW + YEAR)];
const CA = issue('Test Root CA for SNS', 'self', VALID, 1, true);
const SIGNER = issue('sns.amazonaws.com', { name: 'Test Root CA for SNS', key: CA.key }, VALID, 2);
const EXPIRED = issue('sns.amazonaws.com', { name: 'Test Root CA for SNS', key: CA.key }, [new Date(NOW - 2 * YEAR), new Date(NOW - YEAR)], 3);
// Someone else's certificate, which they would serve from a host of theirs.
const STRANGER = issue('sns.amazonaws.com', 'self', VALID, 4);

const FIXTURES = new URL('./fixtures/bounces/', import.meta.url);
const fixtureText = (file: string) => readFileSync(new URL(file, FIXTURES), 'latin1');
interface IndexEntry { file: string; kind: string; recipient: string; expected: string; status_code: string | null }
const INDEX = JSON.parse(readFileSync(new URL('INDEX.json', FIXTURES), 'utf8')) as IndexEntry[];
const entry = (file: string) => INDEX.find((candidate) => candidate.file === file)!;

const TOPIC = 'arn:aws:sns:us-west-2:123456789012:SES-EJ-B';
const CERT_URL = 'https://sns.us-west-2.amazonaws.com/SimpleNotificationService-b95095beb82e8f6a046b3aafc7f4149a.pem';
const EXPIRED_URL = 'https://sns.us-west-2.amazonaws.com/SimpleNotificationService-expired.pem';
const VERP = { bounceAddress: 'bounces@mail.assent.test', keys: verpKeysFromSecrets(['test-secret-for-verp-tags-0123456789']) };
const CLAIMS: VerpClaims = { kind: 'outbox', outboxId: '31337' };
const OUR_VERP = verpAddress(VERP.bounceAddress, signVerpTag(CLAIMS, VERP.keys));
const OUR_RECIPIENT = 'subscriber.two@recipient.test';

/** Serves our test certificates at SNS URLs and the stranger's anywhere else, counting fetches. */
function certificateServer() {
  const fetched: string[] = [];
  const fetchCertificate = async (url: string) => {
    fetched.push(url);
    if (url === CERT_URL) return SIGNER.pem;
    if (url === EXPIRED_URL) return EXPIRED.pem;
    if (url.includes('unreachable')) throw new Error('connection refused');
    return STRANGER.pem;
  };
  return { fetched, receiver: createSesReceiver({ topicArns: [TOPIC], fetchCertificate }) };
}

function envelope(fields: Record<string, string>, options: { key?: KeyObject; version?: '1' | '2' } = {}): string {
  const message: Record<string, string> = {
    Type: 'Notification', MessageId: randomUUID(), TopicArn: TOPIC, Timestamp: new Date(NOW - 10_000).toISOString(),
    SignatureVersion: options.version ?? '1', SigningCertURL: CERT_URL, ...fields,
  };
  message.Signature = signSns(message, options.key ?? SIGNER.key, options.version ?? '1');
  return JSON.stringify(message);
}

const request = (body: string) => ({ body, headers: new Headers({ 'content-type': 'text/plain; charset=UTF-8' }) });
const reportsOf = (outcome: SesOutcome) => (outcome.ok ? outcome.reports : []);

describe('SES via SNS: the published samples', () => {
  it('covers every SES sample in INDEX.json', () => {
    expect(INDEX.filter((candidate) => candidate.kind === 'ses').map((candidate) => candidate.file).sort()).toEqual([
      'ses-bounce-permanent-general-with-dsn-awsdocs.json', 'ses-complaint-abuse-mailbox-simulator.json',
      'ses-complaint-abuse-with-feedback-awsdocs.json', 'ses-sns-envelope-bounce-permanent-general.json',
    ]);
  });

  it('the test certificate is a real one, issued by the test CA', () => {
    const signer = new X509Certificate(SIGNER.pem);
    expect(signer.checkIssued(new X509Certificate(CA.pem))).toBe(true);
    expect(signer.verify(new X509Certificate(CA.pem).publicKey)).toBe(true);
  });

  it('a full SNS envelope (SES mailbox simulator bounce), re-signed with the test key', async () => {
    const raw = fixtureText('ses-sns-envelope-bounce-permanent-general.json');
    const original = JSON.parse(raw) as Record<string, string>;
    const ours = JSON.parse(raw.replaceAll('kijitora@neko.example.org', OUR_VERP).replaceAll('bounce@simulator.amazonses.com', OUR_RECIPIENT)) as Record<string, string>;
    const body = raw.replaceAll('kijitora@neko.example.org', OUR_VERP).replaceAll('bounce@simulator.amazonses.com', OUR_RECIPIENT)
      .replace(original.Signature!, signSns(ours, SIGNER.key));
    const outcome = await certificateServer().receiver(request(body), NOW);
    expect(outcome).toMatchObject({ ok: true, type: 'notification' });
    const [report] = reportsOf(outcome);
    expect(report).toMatchObject({
      provider: 'ses', kind: 'permanent', status: '5.1.1', recipients: [OUR_RECIPIENT], diagnostic: '550 5.1.1 user unknown',
      reportId: 'ses:01010157e6083d17-38cf01f3-852d-4401-8e8a-84e67a3e51d8-000000',
      providerMessageId: '01010157e6083857-2c73eed0-71f8-47d1-ab77-c4646f9d776d-000000',
    });
    expect(report!.reportedAt?.toISOString()).toBe('2016-10-21T06:58:02.245Z');
    expect(resolveVerp(report!.verpCandidates, VERP)).toEqual(CLAIMS);
  });

  it.each([
    ['ses-bounce-permanent-general-with-dsn-awsdocs.json', 'john@example.com'],
    ['ses-complaint-abuse-with-feedback-awsdocs.json', 'john@example.com'],
    ['ses-complaint-abuse-mailbox-simulator.json', 'kijitora@neko.example.jp'],
  ])('%s, as the Message of a signed SNS notification', async (file, sender) => {
    const { expected, status_code: status, recipient } = entry(file);
    const message = fixtureText(file).replaceAll(sender, OUR_VERP).replaceAll(recipient, OUR_RECIPIENT).replaceAll('custom-message-ID', '<ours@mail.assent.test>');
    const [report] = reportsOf(await certificateServer().receiver(request(envelope({ Message: message }, { version: '2' })), NOW));
    expect(report).toMatchObject({ provider: 'ses', kind: expected === 'hard' ? 'permanent' : 'complaint', status, recipients: [OUR_RECIPIENT] });
    expect(resolveVerp(report!.verpCandidates, VERP)).toEqual(CLAIMS);
    if (file.includes('awsdocs')) expect(report!.originalMessageId).toBe('<ours@mail.assent.test>');
    if (expected === 'complaint') expect(report!.feedbackType).toBe('abuse');
  });
});

describe('SES via SNS: what is refused', () => {
  const bounce = fixtureText('ses-bounce-permanent-general-with-dsn-awsdocs.json');

  it('a message changed after it was signed', async () => {
    const body = envelope({ Message: bounce }).replace('jane@example.com', 'mary@example.com');
    expect(await certificateServer().receiver(request(body), NOW)).toMatchObject({ ok: false, reason: 'bad_signature' });
  });

  it('a message signed by a key other than the certificate\'s', async () => {
    expect(await certificateServer().receiver(request(envelope({ Message: bounce }, { key: STRANGER.key })), NOW))
      .toMatchObject({ ok: false, reason: 'bad_signature' });
  });

  it.each([
    'https://sns.us-west-2.amazonaws.com.attacker.example/cert.pem',
    'https://attacker.example/sns.us-west-2.amazonaws.com/cert.pem',
    'http://sns.us-west-2.amazonaws.com/SimpleNotificationService-x.pem',
    'https://sns.us-west-2.amazonaws.com:8443/SimpleNotificationService-x.pem',
    'https://user@sns.us-west-2.amazonaws.com/SimpleNotificationService-x.pem',
    'https://sns.us-west-2.amazonaws.com/SimpleNotificationService-x.txt',
    'https://sqs.us-west-2.amazonaws.com/SimpleNotificationService-x.pem',
  ])('a certificate from anywhere but an SNS host, though it verifies: %s', async (url) => {
    const server = certificateServer();
    const body = envelope({ Message: bounce, SigningCertURL: url }, { key: STRANGER.key });
    expect(await server.receiver(request(body), NOW)).toMatchObject({ ok: false, reason: 'untrusted_url' });
    expect(server.fetched).toEqual([]);
  });

  it('will not be built without a topic', () => {
    expect(() => createSesReceiver({ topicArns: [], fetchCertificate: async () => SIGNER.pem })).toThrow();
  });

  it('accepts the China regions\' SNS hosts', () => {
    expect(isSnsUrl('https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem', { certificate: true })).toBe(true);
  });

  it('a topic that is not ours, though signed by SNS', async () => {
    const server = certificateServer();
    const body = envelope({ Message: bounce, TopicArn: 'arn:aws:sns:us-west-2:999999999999:someone-else' });
    expect(await server.receiver(request(body), NOW)).toMatchObject({ ok: false, reason: 'unknown_topic' });
    expect(server.fetched).toEqual([]);
  });

  it('a message published more than an hour ago, or from the future', async () => {
    const { receiver } = certificateServer();
    const old = envelope({ Message: bounce, Timestamp: new Date(NOW - 61 * 60_000).toISOString() });
    expect(await receiver(request(old), NOW)).toMatchObject({ ok: false, reason: 'stale_timestamp' });
    const ahead = envelope({ Message: bounce, Timestamp: new Date(NOW + 6 * 60_000).toISOString() });
    expect(await receiver(request(ahead), NOW)).toMatchObject({ ok: false, reason: 'stale_timestamp' });
    const retried = envelope({ Message: bounce, Timestamp: new Date(NOW - 59 * 60_000).toISOString() });
    expect(await receiver(request(retried), NOW)).toMatchObject({ ok: true });
  });

  it('an unknown SignatureVersion, a missing signature, a body that is no SNS message', async () => {
    const { receiver, fetched } = certificateServer();
    const message = JSON.parse(envelope({ Message: bounce })) as Record<string, string>;
    expect(await receiver(request(JSON.stringify({ ...message, SignatureVersion: '3' })), NOW)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const { Signature: _dropped, ...unsigned } = message;
    expect(await receiver(request(JSON.stringify(unsigned)), NOW)).toMatchObject({ ok: false, reason: 'missing_credentials' });
    expect(await receiver(request('not json'), NOW)).toMatchObject({ ok: false, reason: 'missing_credentials' });
    expect(fetched).toEqual([]);
  });

  it('a certificate that has expired, or cannot be fetched', async () => {
    const { receiver } = certificateServer();
    const expired = envelope({ Message: bounce, SigningCertURL: EXPIRED_URL }, { key: EXPIRED.key });
    expect(await receiver(request(expired), NOW)).toMatchObject({ ok: false, reason: 'certificate_unusable' });
    const unreachable = envelope({ Message: bounce, SigningCertURL: 'https://sns.us-west-2.amazonaws.com/unreachable.pem' });
    expect(await receiver(request(unreachable), NOW)).toMatchObject({ ok: false, reason: 'certificate_unusable' });
  });
});

describe('SES via SNS: subscriptions and certificates', () => {
  it('a subscription confirmation gives the SubscribeURL to visit, and visits nothing', async () => {
    const subscribeUrl = 'https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:SES-EJ-B&Token=2336412f37';
    const body = envelope({ Type: 'SubscriptionConfirmation', Message: 'You have chosen to subscribe…', SubscribeURL: subscribeUrl, Token: '2336412f37' });
    const server = certificateServer();
    expect(await server.receiver(request(body), NOW)).toEqual({ ok: true, type: 'subscription_confirmation', topicArn: TOPIC, subscribeUrl, reports: [] });
    expect(server.fetched).toEqual([CERT_URL]);
  });

  it('refuses a subscription confirmation whose SubscribeURL is not on an SNS host', async () => {
    const body = envelope({ Type: 'SubscriptionConfirmation', Message: 'x', SubscribeURL: 'https://attacker.example/?Action=ConfirmSubscription', Token: 't' });
    expect(await certificateServer().receiver(request(body), NOW)).toMatchObject({ ok: false, reason: 'untrusted_url' });
  });

  it('an unsubscribe confirmation is acknowledged', async () => {
    const body = envelope({ Type: 'UnsubscribeConfirmation', Message: 'x', SubscribeURL: 'https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription', Token: 't' });
    expect(await certificateServer().receiver(request(body), NOW)).toEqual({ ok: true, type: 'unsubscribe_confirmation', topicArn: TOPIC, reports: [] });
  });

  it('fetches a certificate once, and again after a failed fetch', async () => {
    const server = certificateServer();
    const bounce = fixtureText('ses-bounce-permanent-general-with-dsn-awsdocs.json');
    for (let i = 0; i < 3; i++) expect((await server.receiver(request(envelope({ Message: bounce })), NOW)).ok).toBe(true);
    expect(server.fetched).toEqual([CERT_URL]);
    const unreachable = envelope({ Message: bounce, SigningCertURL: 'https://sns.us-west-2.amazonaws.com/unreachable.pem' });
    await server.receiver(request(unreachable), NOW);
    await server.receiver(request(unreachable), NOW);
    expect(server.fetched.filter((url) => url.includes('unreachable'))).toHaveLength(2);
  });

  it('a notification that is not SES\'s, or an SES event that is no report, gives no report', async () => {
    const { receiver } = certificateServer();
    expect(await receiver(request(envelope({ Message: 'hello' })), NOW)).toEqual({ ok: true, type: 'notification', reports: [] });
    const open = JSON.stringify({ eventType: 'Open', mail: { messageId: 'x' }, open: {} });
    expect(await receiver(request(envelope({ Message: open })), NOW)).toEqual({ ok: true, type: 'notification', reports: [] });
  });

  it('a delivery and a delivery delay', async () => {
    const { receiver } = certificateServer();
    const delivery = JSON.stringify({ notificationType: 'Delivery', mail: { messageId: 'm1', source: OUR_VERP }, delivery: { recipients: [OUR_RECIPIENT], timestamp: '2016-10-21T06:58:00.000Z', smtpResponse: '250 2.6.0 Message received' } });
    expect(reportsOf(await receiver(request(envelope({ Message: delivery })), NOW))[0]).toMatchObject({ kind: 'delivered', status: '2.6.0', recipients: [OUR_RECIPIENT] });
    const delay = JSON.stringify({ eventType: 'DeliveryDelay', mail: { messageId: 'm2' }, deliveryDelay: { delayedRecipients: [{ emailAddress: OUR_RECIPIENT, status: '4.4.1', diagnosticCode: 'smtp; 421 4.4.1 try later' }] } });
    expect(reportsOf(await receiver(request(envelope({ Message: delay })), NOW))[0]).toMatchObject({ kind: 'temporary', status: '4.4.1' });
  });
});
