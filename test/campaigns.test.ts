// Campaigns through a real SMTP peer: drafts and template errors, personalisation bounded by
// affinity, every header and the footer, DKIM, pause/resume/cancel, and 409s.
import { generateKeyPairSync } from 'node:crypto';
import { authenticate } from 'mailauth';
import { describe, expect, it } from 'vitest';
import { smtpSender } from '../src/mail/transport.js';
import { CampaignWorker } from '../src/workers/campaign.js';
import { takeSendTokens } from '../src/workers/message-store.js';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed } from './helpers/http.js';
import type { TestService } from './helpers/service.js';
import { createTestService } from './helpers/service.js';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const DKIM_ENV = {
  DKIM_DOMAIN: 'assent.test',
  DKIM_SELECTOR: 'mail',
  DKIM_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  SENDER_ADDRESS: 'Example GmbH, Hauptstraße 1, 10115 Berlin',
};
const DKIM_RECORD = `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;

const t = useTestService({ smtp: true, lists: ['news', 'small'], env: DKIM_ENV });

const MJML = `<mjml>
  <mj-body>
    <mj-section>
      <mj-column>
        <mj-text>Hello {{ subscriber.first_name | default: "there" }}!</mj-text>
        <mj-text>{% if subscriber.attributes.city %}Greetings to {{ subscriber.attributes.city }}.{% endif %}</mj-text>
        <mj-button href="https://shop.example/?ref={{ affinity }}">Visit the {{ list.name }} shop</mj-button>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>`;

async function draft(service: TestService, body: Record<string, unknown> = {}) {
  const response = await service.api('POST', '/api/v1/campaigns', { name: 'Spring', list: 'news', subject: 'News for {{ subscriber.first_name | default: "you" }}', mjml: MJML, ...body });
  expect(response.status, await response.clone().text()).toBe(201);
  return response.json() as Promise<{ id: string; status: string }>;
}

const statusOf = async (id: string) => (await (await t.service.api('GET', `/api/v1/campaigns/${id}`)).json()) as {
  status: string; counts: Record<string, number>;
};

async function sendAll(worker: { runOnce(): Promise<number> }): Promise<void> {
  while ((await worker.runOnce()) > 0);
}

describe('drafts', () => {
  it('creates a draft and refuses an unknown list', async () => {
    const campaign = await draft(t.service);
    expect(campaign).toMatchObject({ status: 'draft', counts: { queued: 0, sent: 0, failed: 0, skipped: 0 }, list: 'news', min_affinity: 'confirmed' });
    expect((await t.service.api('POST', '/api/v1/campaigns', { name: 'x', list: 'nope', subject: 'x', mjml: MJML })).status).toBe(404);
  });

  it('answers 422 with the line for MJML and Liquid errors', async () => {
    const mjmlError = await t.service.api('POST', '/api/v1/campaigns', {
      name: 'x', list: 'news', subject: 'x', mjml: '<mjml>\n<mj-body>\n<mj-section><mj-column>\n<mj-text colr="red">x</mj-text>\n</mj-column></mj-section></mj-body></mjml>',
    });
    expect(mjmlError.status).toBe(422);
    const mjmlBody = await mjmlError.json();
    expect(mjmlBody.error.code).toBe('template_invalid');
    expect(mjmlBody.error.details).toEqual([expect.objectContaining({ source: 'mjml', line: 4, message: expect.stringContaining('colr') })]);

    const liquidError = await t.service.api('POST', '/api/v1/campaigns', {
      name: 'x', list: 'news', subject: 'x', mjml: '<mjml><mj-body>\n<mj-section><mj-column><mj-text>\n{% if subscriber.first_name %}Hi\n</mj-text></mj-column></mj-section></mj-body></mjml>',
    });
    expect(liquidError.status).toBe(422);
    expect((await liquidError.json()).error.details).toEqual([expect.objectContaining({ source: 'mjml', line: 3 })]);
    const subjectError = await t.service.api('POST', '/api/v1/campaigns', { name: 'x', list: 'news', subject: 'Hi {{ x | nosuchfilter }}', mjml: MJML });
    expect(subjectError.status).toBe(422);
    expect((await subjectError.json()).error.details[0].source).toBe('subject');
  });

  it('never reads the server\'s files through mj-include or Liquid include', async () => {
    const include = `<mjml><mj-body><mj-include path="/etc/passwd" /><mj-section><mj-column><mj-text>x</mj-text></mj-column></mj-section></mj-body></mjml>`;
    const response = await t.service.api('POST', '/api/v1/campaigns', { name: 'x', list: 'news', subject: 'x', mjml: include });
    if (response.status === 201) {
      const { id } = await response.json();
      const { rows } = await t.tdb.query('select html_template from campaigns where id = $1', [id]);
      expect(rows[0].html_template).not.toContain('root:');
    } else {
      expect(response.status).toBe(422);
    }
    const [subscriber] = await seedConfirmed(t.tdb, 'small', 1, { prefix: 'include' });
    const liquid = await t.service.api('POST', '/api/v1/campaigns', {
      name: 'x', list: 'small', subject: 'x', mjml: MJML.replace('Hello', "{% include '/etc/passwd' %}"),
    });
    if (liquid.status === 201) {
      const preview = await t.service.api('POST', `/api/v1/campaigns/${(await liquid.json()).id}/preview`, { subscriber_id: subscriber });
      expect(await preview.text()).not.toContain('root:');
    } else {
      expect(liquid.status).toBe(422);
    }
  });
});

describe('personalisation bounded by affinity', () => {
  it('gives a confirmed-level recipient the fallback and a known-level one their escaped name', async () => {
    const [stranger] = await seedConfirmed(t.tdb, 'small', 1, { prefix: 'stranger', firstName: 'Sam' });
    const [friend] = await seedConfirmed(t.tdb, 'small', 1, { prefix: 'friend', firstName: '<b>Ada</b>', level: 'known' });
    await t.tdb.query(`update subscribers set attributes = '{"city":"Oslo"}' where id = any($1)`, [[stranger, friend]]);
    const { id } = await draft(t.service, { list: 'small' });

    const preview = async (subscriber: string) => {
      const response = await t.service.api('POST', `/api/v1/campaigns/${id}/preview`, { subscriber_id: subscriber });
      expect(response.status).toBe(200);
      return response.json() as Promise<{ subject: string; html: string; text: string; affinity: string; withheld: string[] }>;
    };
    const far = await preview(stranger!);
    expect(far).toMatchObject({ subject: 'News for you', affinity: 'confirmed', withheld: ['subscriber.first_name', 'subscriber.attributes'] });
    expect(far.html).toContain('Hello there!');
    expect(far.html).not.toContain('Sam');
    expect(far.html).not.toContain('Oslo');

    const near = await preview(friend!);
    expect(near).toMatchObject({ subject: 'News for <b>Ada</b>', affinity: 'known', withheld: ['subscriber.attributes'] });
    expect(near.html).toContain('Hello &lt;b&gt;Ada&lt;/b&gt;!');
    expect(near.html).not.toContain('<b>Ada</b>');
    expect(near.text).toContain('Hello <b>Ada</b>!');
    expect(near.html).toContain('https://shop.example/?ref=known');

    // the person's own cap wins over the recorded level
    await t.tdb.query(`update subscribers set affinity_cap = 'confirmed' where id = $1`, [friend]);
    expect(await preview(friend!)).toMatchObject({ subject: 'News for you', affinity: 'confirmed' });
    await t.tdb.query(`update subscribers set affinity_cap = null where id = $1`, [friend]);

    // an engaged recipient's attributes reach the template
    await t.service.api('POST', `/api/v1/subscribers/${friend}/affinity`, { level: 'engaged', reason: 'bought twice' });
    expect((await preview(friend!)).html).toContain('Greetings to Oslo.');
    expect((await t.service.api('POST', `/api/v1/campaigns/${id}/preview`, { subscriber_id: '00000000-0000-4000-8000-000000000000' })).status).toBe(404);
  });

  it('shows where the links lead without handing the API a working one: no unsubscribe or preferences token of the person', async () => {
    const [person] = await seedConfirmed(t.tdb, 'small', 1, { prefix: 'previewed' });
    const { id } = await draft(t.service, { list: 'small' });
    const { html, text } = await (await t.service.api('POST', `/api/v1/campaigns/${id}/preview`, { subscriber_id: person })).json() as { html: string; text: string };
    const links = [...`${html}\n${text}`.matchAll(/https:\/\/assent\.test\/(?:u|preferences)\/[A-Za-z0-9_.-]+/g)].map((m) => m[0]);
    expect(links).toContain('https://assent.test/u/preview');
    for (const link of new Set(links)) {
      const path = new URL(link).pathname;
      const unsubscribe = await t.service.app.request(path, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click',
      });
      expect(unsubscribe.status).toBeGreaterThanOrEqual(400);
      expect((await t.service.app.request(path)).status).toBeGreaterThanOrEqual(400);
    }
    const { rows } = await t.tdb.query(`select status from subscriptions where subscriber_id = $1`, [person]);
    expect(rows[0].status).toBe('confirmed');
  });

  it('sends only to those at or above min_affinity', async () => {
    await t.tdb.query(`insert into lists (slug, name) values ('levels', 'Levels')`);
    await t.tdb.query(`insert into list_consent_versions (list_id, version, text) select id, 1, 'x' from lists where slug = 'levels'`);
    await seedConfirmed(t.tdb, 'levels', 3, { prefix: 'lvl-c' });
    await seedConfirmed(t.tdb, 'levels', 2, { prefix: 'lvl-k', level: 'known' });
    const capped = await seedConfirmed(t.tdb, 'levels', 1, { prefix: 'lvl-capped', level: 'engaged' });
    await t.tdb.query(`update subscribers set affinity_cap = 'confirmed' where id = $1`, [capped[0]]);
    const { id } = await draft(t.service, { list: 'levels', min_affinity: 'known' });
    const sent = await t.service.api('POST', `/api/v1/campaigns/${id}/send`);
    expect(sent.status).toBe(202);
    expect((await sent.json()).counts.queued).toBe(2);
  });
});

describe('sending', () => {
  it('sends 1,000 recipients exactly one mail each, with every header, the footer and a DKIM signature that verifies', async () => {
    await t.tdb.query(`insert into lists (slug, name) values ('big', 'Big News')`);
    await t.tdb.query(`insert into list_consent_versions (list_id, version, text) select id, 1, 'x' from lists where slug = 'big'`);
    await seedConfirmed(t.tdb, 'big', 1000, { prefix: 'big' });
    // an erased and a suppressed person on the list get nothing
    const [erased, suppressed] = await seedConfirmed(t.tdb, 'big', 2, { prefix: 'gone' });
    await t.service.api('DELETE', `/api/v1/subscribers/${erased}`);
    await t.tdb.query(`insert into suppressions (address_hash, reason) select sha256(convert_to(lower(email), 'UTF8')), 'complaint' from subscribers where id = $1`, [suppressed]);

    const { id } = await draft(t.service, { list: 'big' });
    const send = await t.service.api('POST', `/api/v1/campaigns/${id}/send`);
    expect(send.status).toBe(202);
    expect(await send.json()).toMatchObject({ status: 'sending', counts: { queued: 1000 } });
    const before = t.smtp.received.length;
    await sendAll(t.service.campaignWorker);
    expect(await statusOf(id)).toMatchObject({ status: 'sent', counts: { queued: 0, sent: 1000, failed: 0, skipped: 0 } });

    // (the worker also finished the min_affinity campaign queued above: two lvl-k mails)
    const mails = t.smtp.received.slice(before).filter((mail) => !mail.envelopeTo[0]!.startsWith('lvl-'));
    const recipients = mails.map((mail) => mail.envelopeTo.join());
    expect(recipients).toHaveLength(1000);
    expect(new Set(recipients).size).toBe(1000);
    expect(recipients.every((to) => /^big\d+@example\.org$/.test(to))).toBe(true);

    const resolver = async (name: string, type: string) => {
      if (type === 'TXT' && name === 'mail._domainkey.assent.test') return [[DKIM_RECORD]];
      throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    };
    for (const mail of mails) {
      const { parsed } = mail;
      expect(parsed.messageId).toMatch(/^<.+@assent\.test>$/);
      expect(parsed.date).toBeInstanceOf(Date);
      const header = (name: string) => parsed.headerLines.find((line) => line.key === name)?.line.replace(/\r?\n\s+/g, ' ');
      expect(header('list-id')).toBe('List-ID: "Big News" <big.assent.test>');
      expect(header('list-unsubscribe')).toMatch(/^List-Unsubscribe: <https:\/\/assent\.test\/u\/[A-Za-z0-9_.-]+>$/);
      expect(header('list-unsubscribe-post')).toBe('List-Unsubscribe-Post: List-Unsubscribe=One-Click');
      expect(parsed.html).toContain('Example GmbH, Hauptstraße 1, 10115 Berlin');
      expect(parsed.html).toMatch(/href="https:\/\/assent\.test\/u\/[^"]+">Unsubscribe</);
      expect(parsed.html).toMatch(/href="https:\/\/assent\.test\/preferences\/[^"]+">Your data and preferences</);
      expect(parsed.text).toContain('Unsubscribe [https://assent.test/u/');
      expect(parsed.text).toContain('Hello there!');
    }
    for (const mail of mails) {
      const result = await authenticate(mail.raw, { resolver, trustReceived: false, sender: 'news@assent.test', ip: '127.0.0.1', helo: 'localhost', mta: 'test' });
      const signature = result.dkim.results[0] as unknown as { status: { result: string; comment?: string }; signingHeaders: { keys: string } };
      expect(signature.status.result, signature.status.comment).toBe('pass');
      expect(signature.signingHeaders.keys.toLowerCase()).toContain('list-unsubscribe-post');
      expect(signature.signingHeaders.keys.toLowerCase()).toContain('list-unsubscribe');
    }
  }, 90_000); // a thousand sends and DKIM checks: 30 s was not enough on two busy cores

  it('pause stops new mails, resume finishes, cancel leaves the rest skipped', async () => {
    await t.tdb.query(`insert into lists (slug, name) values ('pause', 'Pause')`);
    await t.tdb.query(`insert into list_consent_versions (list_id, version, text) select id, 1, 'x' from lists where slug = 'pause'`);
    await seedConfirmed(t.tdb, 'pause', 60, { prefix: 'pause' });
    const worker = new CampaignWorker({ ...t.service.deps, sender: smtpSender(t.smtp.url, {}) }, { batchSize: 10 });
    const { id } = await draft(t.service, { list: 'pause' });
    await t.service.api('POST', `/api/v1/campaigns/${id}/send`);
    expect(await worker.runOnce()).toBe(10);
    expect((await t.service.api('POST', `/api/v1/campaigns/${id}/pause`)).status).toBe(200);
    const before = t.smtp.received.length;
    expect(await worker.runOnce()).toBe(0);
    expect(t.smtp.received.length).toBe(before);
    expect(await statusOf(id)).toMatchObject({ status: 'paused', counts: { sent: 10, queued: 50 } });
    expect((await t.service.api('POST', `/api/v1/campaigns/${id}/pause`)).status).toBe(409);
    expect((await t.service.api('POST', `/api/v1/campaigns/${id}/resume`)).status).toBe(200);
    await sendAll(worker);
    expect(await statusOf(id)).toMatchObject({ status: 'sent', counts: { sent: 60, queued: 0 } });

    const second = await draft(t.service, { list: 'pause' });
    await t.service.api('POST', `/api/v1/campaigns/${second.id}/send`);
    expect(await worker.runOnce()).toBe(10);
    expect((await t.service.api('POST', `/api/v1/campaigns/${second.id}/cancel`)).status).toBe(200);
    expect(await worker.runOnce()).toBe(0);
    expect(await statusOf(second.id)).toMatchObject({ status: 'cancelled', counts: { sent: 10, skipped: 50, queued: 0 } });
    for (const action of ['send', 'pause', 'resume', 'cancel']) {
      const response = await t.service.api('POST', `/api/v1/campaigns/${second.id}/${action}`);
      expect(response.status, action).toBe(409);
    }
  });

  it('answers 404 for unknown campaigns and lists campaigns newest first', async () => {
    expect((await t.service.api('GET', '/api/v1/campaigns/999999')).status).toBe(404);
    expect((await t.service.api('POST', '/api/v1/campaigns/abc/send')).status).toBe(404);
    const page = await (await t.service.api('GET', '/api/v1/campaigns?limit=2')).json();
    expect(page.data).toHaveLength(2);
    expect(Number(page.data[0].id)).toBeGreaterThan(Number(page.data[1].id));
    const next = await (await t.service.api('GET', `/api/v1/campaigns?limit=2&cursor=${page.next_cursor}`)).json();
    expect(Number(next.data[0].id)).toBeLessThan(Number(page.data[1].id));
  });
});

describe('SEND_RATE', () => {
  it('hands out at most one second of tokens, shared by every worker', async () => {
    const first = await takeSendTokens(t.tdb.db, 10, 100);
    const second = await takeSendTokens(t.tdb.db, 10, 100);
    expect(first).toBeLessThanOrEqual(10);
    expect(first + second).toBeLessThanOrEqual(11);
    const rated = await createTestService(t.tdb.db, { smtpUrl: t.smtp.url, env: { SEND_RATE: '5' } });
    expect(rated.deps.config.sendRate).toBe(5);
    rated.close();
  });
});
