// From signup to confirmed through a real SMTP peer: the mail, its link, the page, the POST,
// and the proof of consent it leaves behind.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyChain } from '../src/consent/ledger.js';
import { tokenHash } from '../src/links/tokens.js';
import { useTestService } from './helpers/fixture.js';
import { createTestService } from './helpers/service.js';
import { confirmLink, pathOf, postForm, postJson, snapshot } from './helpers/http.js';

const t = useTestService({ smtp: true, lists: ['news'] });

/** Signs up, lets the worker send, and returns the mail that arrived. */
async function signUpAndReceive(email: string, extra: Record<string, string> = {}, headers: Record<string, string> = {}) {
  const count = t.smtp.received.length;
  const response = await postForm(t.service, { email, list: 'news', ...extra }, headers);
  expect(response.status).toBe(303);
  await t.service.worker.runOnce();
  return t.smtp.waitForMailTo(email, count);
}

const subscriptionOf = async (email: string) => (await t.tdb.query(
  `select x.*, s.first_name, s.last_name, s.locale from subscriptions x join subscribers s on s.id = x.subscriber_id where s.email = $1`, [email])).rows[0];

describe('the confirmation mail', () => {
  it('arrives with Message-ID, Date, HTML and text parts, in the form language, with a working link', async () => {
    const mail = await signUpAndReceive('ada@example.org', { locale: 'de', first_name: 'Ada' });
    const { parsed, envelopeTo } = mail;
    expect(envelopeTo).toEqual(['ada@example.org']);
    expect(parsed.messageId).toMatch(/^<[0-9a-f-]{36}@assent\.test>$/);
    expect(parsed.date).toBeInstanceOf(Date);
    expect(parsed.subject).toBe('Bitte bestätigen Sie Ihre Anmeldung für The news');
    expect(parsed.html).toContain('lang="de"');
    expect(parsed.text).toContain('Send me news by mail, about once a week.');
    const link = confirmLink(parsed.text);
    expect(parsed.html).toContain(link);
    expect(link.startsWith('https://assent.test/confirm/')).toBe(true);
    // the evidence holds the mail as sent, its link's token replaced by the token's hash
    const { rows } = await t.tdb.query(`select v.evidence from consent_evidence v join consent_events e on e.id = v.event_id
      join subscribers s on s.id = e.subscriber_id where s.email = 'ada@example.org'`);
    const token = pathOf(link).slice('/confirm/'.length);
    expect(rows[0].evidence.mail).toEqual({
      message_id: parsed.messageId, subject: parsed.subject,
      text: parsed.text!.replaceAll(token, `{token_sha256:${tokenHash(token)}}`), text_sha256: createHash('sha256').update(parsed.text!).digest('hex'),
    });
  });

  it('takes its language from Accept-Language when the form says none', async () => {
    const { parsed } = await signUpAndReceive('fi@example.org', {}, { 'accept-language': 'sv;q=0.9, fi;q=0.8, en;q=0.5' });
    expect(parsed.subject).toBe('Vahvista listan The news tilaus');
  });

  it('cannot be given extra headers through a name with CR/LF', async () => {
    const { parsed } = await signUpAndReceive('crlf@example.org', { first_name: 'Eve\r\nBcc: victim@example.org\r\n' });
    expect(parsed.headers.has('bcc')).toBe(false);
    expect(t.smtp.received.at(-1)!.envelopeTo).toEqual(['crlf@example.org']);
  });
});

describe('confirming', () => {
  it('GET shows a page whose button POSTs, and changes nothing; POST confirms and records the proof', async () => {
    const { parsed } = await signUpAndReceive('grace@example.org', { first_name: 'Grace', last_name: 'Hopper' }, {
      'user-agent': 'Signup Browser/1.0', referer: 'https://landing.example/join',
    });
    const path = pathOf(confirmLink(parsed.text));
    const before = await snapshot(t.tdb);
    const page = await t.service.app.request(path, { headers: { 'user-agent': 'MailScanner/2.0' } });
    expect(page.status).toBe(200);
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    const html = await page.text();
    expect(html).toMatch(/<form method="post" action="">/);
    expect(html).toContain('Send me news by mail, about once a week.');
    expect(await snapshot(t.tdb)).toEqual(before);
    expect((await subscriptionOf('grace@example.org')).status).toBe('pending');

    const confirmed = await t.service.app.request(path, {
      method: 'POST', headers: { 'user-agent': 'Clicking Browser/3.0', 'x-forwarded-for': '192.0.2.44' },
    });
    expect(confirmed.status).toBe(200);
    expect(confirmed.headers.get('referrer-policy')).toBe('no-referrer');
    expect(await confirmed.text()).toContain('Subscription confirmed');
    const subscription = await subscriptionOf('grace@example.org');
    expect(subscription).toMatchObject({ status: 'confirmed', consent_version: 1, first_name: 'Grace', last_name: 'Hopper' });

    const { rows: events } = await t.tdb.query(`select e.kind, v.evidence from consent_events e join consent_evidence v on v.event_id = e.id
      where e.subscriber_id = $1 order by e.id`, [subscription.subscriber_id]);
    expect(events.map((event) => event.kind)).toEqual(['requested', 'confirmed']);
    expect(events[0].evidence).toMatchObject({ user_agent: 'Signup Browser/1.0', page: 'https://landing.example/join',
      consent: { version: 1, text: 'Send me news by mail, about once a week.' } });
    expect(events[1].evidence).toMatchObject({
      ip: '192.0.2.44', user_agent: 'Clicking Browser/3.0',
      consent: { version: 1, text: 'Send me news by mail, about once a week.' },
      token_sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      time: expect.any(String),
    });
    const { rows: affinity } = await t.tdb.query('select level from affinity_events where subscriber_id = $1', [subscription.subscriber_id]);
    expect(affinity).toEqual([{ level: 'confirmed' }]);
    expect((await verifyChain(t.tdb.db, subscription.subscriber_id)).verified).toBe(true);
  });

  it('a second POST is harmless', async () => {
    const { parsed } = await signUpAndReceive('twice@example.org');
    const path = pathOf(confirmLink(parsed.text));
    expect((await t.service.app.request(path, { method: 'POST' })).status).toBe(200);
    const before = await snapshot(t.tdb);
    const again = await t.service.app.request(path, { method: 'POST' });
    expect(again.status).toBe(200);
    expect(await again.text()).toContain('was already confirmed');
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('records the wording the person was mailed, even when the list changed it before the click', async () => {
    const { parsed } = await signUpAndReceive('wording@example.org');
    const patched = await t.service.api('PATCH', '/api/v1/lists/news', { consent_text: 'Send me news and offers.' });
    expect((await patched.json()).consent_version).toBe(2);
    await t.service.app.request(pathOf(confirmLink(parsed.text)), { method: 'POST' });
    const subscription = await subscriptionOf('wording@example.org');
    expect(subscription.consent_version).toBe(1);
    await t.service.api('PATCH', '/api/v1/lists/news', { consent_text: 'Send me news by mail, about once a week.' });
  });
});

describe('links that do not confirm', () => {
  it('an expired link gets a page saying so, with a form for a fresh mail, and changes nothing', async () => {
    const { parsed } = await signUpAndReceive('late@example.org');
    const path = pathOf(confirmLink(parsed.text));
    t.service.clock.advance(7 * 24 * 3600_000 + 1);
    const before = await snapshot(t.tdb);
    for (const method of ['GET', 'POST']) {
      const response = await t.service.app.request(path, { method });
      expect(response.status).toBe(410);
      const html = await response.text();
      expect(html).toContain('This link has expired');
      expect(html).toContain('action="/subscribe"');
      expect(html).toContain('name="list" value="news"');
    }
    expect(await snapshot(t.tdb)).toEqual(before);
    expect((await subscriptionOf('late@example.org')).status).toBe('pending');
  });

  it('an altered link, any character of it, gets a page saying it is not valid', async () => {
    const { parsed } = await signUpAndReceive('altered@example.org');
    const token = pathOf(confirmLink(parsed.text)).slice('/confirm/'.length);
    const before = await snapshot(t.tdb);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 0; i < token.length; i += 1) {
      if (token[i] === '.') continue;
      const swapped = alphabet[(alphabet.indexOf(token[i]!) + 1) % alphabet.length];
      const response = await t.service.app.request(`/confirm/${token.slice(0, i)}${swapped}${token.slice(i + 1)}`, { method: 'POST' });
      expect(response.status, `character ${i}`).toBe(400);
    }
    const truncated = await t.service.app.request(`/confirm/${token.slice(0, -1)}`, { method: 'POST' });
    expect(await truncated.text()).toContain('This link is not valid');
    expect((await t.service.app.request('/confirm/%00%0d%0a', { method: 'POST' })).status).toBe(400);
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('a link signed with another key is not valid; one signed with a retired key still in TOKEN_SECRETS is', async () => {
    const { parsed } = await signUpAndReceive('rotate@example.org');
    const path = pathOf(confirmLink(parsed.text));
    const stranger = await createTestService(t.tdb.db, { env: { TOKEN_SECRETS: 'another-secret-0123456789abcdef0123456789' } });
    expect((await stranger.app.request(path, { method: 'POST' })).status).toBe(400);
    const rotated = await createTestService(t.tdb.db, {
      env: { TOKEN_SECRETS: 'new-secret-0123456789abcdef0123456789abcdef,test-secret-0123456789abcdef0123456789abcdef' },
    });
    rotated.clock.now = t.service.clock.now;
    expect((await rotated.app.request(path, { method: 'POST' })).status).toBe(200);
    expect((await subscriptionOf('rotate@example.org')).status).toBe('confirmed');
    stranger.close();
    rotated.close();
  });

  it('a garbled link\'s page names no list, and an expired one only the list it was for', async () => {
    for (const slug of ['internal-vip', 'staff-only']) {
      expect((await t.service.api('POST', '/api/v1/lists', { slug, name: `Secret ${slug}`, consent_text: 'Yes.' })).status).toBe(201);
    }
    const garbled = await t.service.app.request('/confirm/garbage');
    expect(garbled.status).toBe(400);
    const html = await garbled.text();
    expect(html).toContain('action="/subscribe"');
    expect(html).not.toContain('name="list"');
    for (const named of ['internal-vip', 'staff-only', 'Secret', 'news']) expect(html).not.toContain(named);

    const { parsed } = await signUpAndReceive('expired-one-list@example.org');
    t.service.clock.advance(7 * 24 * 3600_000 + 1);
    const expired = await (await t.service.app.request(pathOf(confirmLink(parsed.text)))).text();
    expect(expired).toContain('<input type="hidden" name="list" value="news">');
    for (const named of ['internal-vip', 'staff-only', 'Secret']) expect(expired).not.toContain(named);
  });

  it('a link for a subscription we no longer hold is unknown', async () => {
    const { parsed } = await signUpAndReceive('gone@example.org');
    await t.tdb.query(`update subscribers set email = null, erased_at = now() where email = 'gone@example.org'`);
    const response = await t.service.app.request(pathOf(confirmLink(parsed.text)), { method: 'POST' });
    expect(response.status).toBe(404);
    expect(await response.text()).toContain('This link is no longer known');
  });

  it('a link mailed before a withdrawal cannot undo it, even after a new signup', async () => {
    const { parsed: first } = await signUpAndReceive('changed-mind@example.org');
    const oldPath = pathOf(confirmLink(first.text));
    await t.tdb.query(`update subscriptions set status = 'unsubscribed', pending_since = null
      where subscriber_id = (select id from subscribers where email = 'changed-mind@example.org')`);
    expect((await t.service.app.request(oldPath, { method: 'POST' })).status).toBe(410);
    t.service.clock.advance(11 * 60_000);
    const { parsed: second } = await signUpAndReceive('changed-mind@example.org');
    const stale = await t.service.app.request(oldPath, { method: 'POST' });
    expect(stale.status).toBe(410);
    expect(await stale.text()).toContain('no longer valid');
    expect((await subscriptionOf('changed-mind@example.org')).status).toBe('pending');
    expect((await t.service.app.request(pathOf(confirmLink(second.text)), { method: 'POST' })).status).toBe(200);
    expect((await subscriptionOf('changed-mind@example.org')).status).toBe('confirmed');
  });

  it('the older of two mails still confirms while the request is pending', async () => {
    const { parsed: first } = await signUpAndReceive('two-mails@example.org');
    t.service.clock.advance(11 * 60_000);
    await signUpAndReceive('two-mails@example.org');
    expect((await t.service.app.request(pathOf(confirmLink(first.text)), { method: 'POST' })).status).toBe(200);
    expect((await subscriptionOf('two-mails@example.org')).status).toBe('confirmed');
  });
});

describe('a JSON signup', () => {
  it('gets the same mail as a form', async () => {
    const count = t.smtp.received.length;
    expect((await postJson(t.service, { email: 'api@example.org', list: 'news', locale: 'tr' })).status).toBe(202);
    await t.service.worker.runOnce();
    const [mail] = (await t.smtp.waitFor(count + 1)).slice(count);
    expect(mail!.parsed.subject).toBe('Lütfen The news listesine aboneliğinizi onaylayın');
  });
});
