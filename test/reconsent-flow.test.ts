// Re-consent as its people meet it (issue 20): after a material change, each person on the
// old wording gets one mail (old and new side by side, in their language) through a real SMTP
// peer; its link opens a page that changes nothing, whose button POSTs the agreement as a
// `reconsented` consent event; after it, the next campaign reaches exactly who agreed.
import { describe, expect, it } from 'vitest';
import { TokenSigner } from '../src/links/tokens.js';
import { claimDueReconsents } from '../src/workers/reconsent-message-store.js';
import { useTestService } from './helpers/fixture.js';
import { createTestService } from './helpers/service.js';
import { until } from './helpers/wait.js';
import { pathOf, seedConfirmed, snapshotAllTables } from './helpers/http.js';
import type { ReceivedMail } from './helpers/smtp.js';

const t = useTestService({ smtp: true, lists: ['terms', 'plain'] });

const OLD = 'Send me terms by mail, about once a week.';
const NEW = 'Send me terms, and share my address with partners.';
const MJML = '<mjml><mj-body><mj-section><mj-column><mj-text>Hello from {{ list.name }}</mj-text></mj-column></mj-section></mj-body></mjml>';

async function drain(worker: { runOnce(): Promise<number> }): Promise<void> {
  while ((await worker.runOnce()) > 0);
}

/** Starts a campaign on `list`, sends it through the SMTP peer, and says who got it. */
async function campaignReaches(list: string): Promise<string[]> {
  const created = await t.service.api('POST', '/api/v1/campaigns', { name: 'c', list, subject: 'Hello', mjml: MJML });
  const { id } = await created.json() as { id: string };
  const before = t.smtp.received.length;
  expect((await t.service.api('POST', `/api/v1/campaigns/${id}/send`)).status).toBe(202);
  await drain(t.service.campaignWorker);
  return t.smtp.received.slice(before).flatMap((mail) => mail.envelopeTo).sort();
}

function reconsentLink(mail: ReceivedMail): string {
  const match = /https:\/\/assent\.test\/reconsent\/[A-Za-z0-9_.-]+/.exec(mail.parsed.text ?? '');
  if (!match) throw new Error(`no re-consent link in: ${mail.parsed.text}`);
  return pathOf(match[0]);
}

const page = (path: string, method = 'GET', headers: Record<string, string> = {}) =>
  t.service.app.request(path, { method, headers: { 'x-forwarded-for': '203.0.113.7', 'user-agent': 'MailClient/1.0', ...headers } });

const listIdOf = async (slug: string) =>
  (await t.tdb.query<{ id: string }>('select id::text from lists where slug = $1', [slug])).rows[0]!.id;

const reconsentedEvents = async () => (await t.tdb.query<{ id: string; subscriber_id: string; evidence: Record<string, any> }>(`
  select e.id, e.subscriber_id, v.evidence from consent_events e join consent_evidence v on v.event_id = e.id
  where e.kind = 'reconsented' order by e.id`)).rows;

describe('re-consent after a material change', () => {
  let people: string[] = [];
  const mails = new Map<string, ReceivedMail>();

  it('refuses a re-consent run for a list with no material change (409) and queues nothing', async () => {
    const before = await snapshotAllTables(t.tdb);
    const response = await t.service.api('POST', '/api/v1/lists/plain/reconsent');
    expect(response.status).toBe(409);
    expect((await response.json()).error.code).toBe('no_material_change');
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('mails everyone on the old wording once per version, in their language, old and new side by side, nothing else', async () => {
    people = await seedConfirmed(t.tdb, 'terms', 3, { prefix: 'rc' });
    await t.tdb.query(`update subscribers set locale = 'de' where id = $1`, [people[2]]);
    expect((await t.service.api('PATCH', '/api/v1/lists/terms', { consent_text: NEW, reconsent: true })).status).toBe(200);

    const started = await t.service.api('POST', '/api/v1/lists/terms/reconsent');
    expect(started.status).toBe(202);
    expect(await started.json()).toEqual({ version: 2, queued: 3 });
    // A second run, before or after sending, adds nobody: once per person and version.
    expect(await (await t.service.api('POST', '/api/v1/lists/terms/reconsent')).json()).toEqual({ version: 2, queued: 0 });

    const queued = async () => Number(/^assent_reconsent_queued (\d+)$/m.exec(await (await t.service.app.request('/metrics')).text())?.[1]);
    expect(await queued()).toBe(3);

    const before = t.smtp.received.length;
    await drain(t.service.reconsentWorker);
    expect(await queued()).toBe(0);
    expect(await (await t.service.api('POST', '/api/v1/lists/terms/reconsent')).json()).toEqual({ version: 2, queued: 0 });
    await drain(t.service.reconsentWorker);
    const received = t.smtp.received.slice(before);
    expect(received.flatMap((m) => m.envelopeTo).sort()).toEqual(['rc1@example.org', 'rc2@example.org', 'rc3@example.org']);
    for (const mail of received) mails.set(mail.envelopeTo[0]!, mail);

    const en = mails.get('rc1@example.org')!;
    expect(en.parsed.subject).toBe('The terms of The terms have changed: do you agree?');
    expect(en.parsed.text).toContain(OLD);
    expect(en.parsed.text).toContain(NEW);
    // No advertising: the only link is the one that asks.
    const hrefs = [...(en.parsed.html || '').matchAll(/href="([^"]+)"/g)].map((m) => m[1]);
    expect(new Set(hrefs)).toEqual(new Set([`https://assent.test${reconsentLink(en)}`]));
    expect(mails.get('rc3@example.org')!.parsed.subject).toMatch(/^Die Bedingungen von The terms/);

    const { rows } = await t.tdb.query(`select status, count(*)::int as n from reconsent_messages group by status`);
    expect(rows).toEqual([{ status: 'sent', n: 3 }]);
  });

  it('the link opens a page that shows both wordings and changes nothing; its button POSTs', async () => {
    const link = reconsentLink(mails.get('rc1@example.org')!);
    const before = await snapshotAllTables(t.tdb);
    const response = await page(link);
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain(OLD);
    expect(html).toContain(NEW);
    expect(html).toMatch(/<form method="post" action="">/);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('the POST records a reconsented event with full evidence, a leaf of the consent log; a second POST is harmless', async () => {
    const mail = mails.get('rc1@example.org')!;
    const link = reconsentLink(mail);
    const agreed = await page(link, 'POST', { origin: 'https://assent.test' });
    expect(agreed.status).toBe(200);
    expect(await agreed.text()).toContain('you have agreed to the new wording of The terms');

    const events = await reconsentedEvents();
    expect(events).toHaveLength(1);
    expect(events[0]!.subscriber_id).toBe(people[0]);
    expect(events[0]!.evidence).toMatchObject({
      ip: '203.0.113.7', user_agent: 'MailClient/1.0', page: 'https://assent.test',
      list: { slug: 'terms' }, consent: { version: 2, text: NEW }, previous_consent: { version: 1, text: OLD },
      mail_message_id: mail.parsed.messageId,
    });
    expect(events[0]!.evidence.token_sha256).toMatch(/^[0-9a-f]{64}$/);
    const { rows: [subscription] } = await t.tdb.query(
      `select consent_version from subscriptions where subscriber_id = $1 and list_id = (select id from lists where slug = 'terms')`, [people[0]]);
    expect(subscription).toEqual({ consent_version: 2 });

    const after = await snapshotAllTables(t.tdb);
    const again = await page(link, 'POST', { origin: 'https://assent.test' });
    expect(again.status).toBe(200);
    expect(await again.text()).toContain('You have already agreed to this wording');
    expect(await snapshotAllTables(t.tdb)).toEqual(after);

    await t.service.consentLogWorker.runOnce({ forceCheckpoint: true });
    const { rows: leaves } = await t.tdb.query('select log_index from consent_log_entries where event_id = $1', [events[0]!.id]);
    expect(leaves).toHaveLength(1);
  });

  it('the next campaign reaches exactly who agreed', async () => {
    expect(await campaignReaches('terms')).toEqual(['rc1@example.org']);
  });

  it('a forged, altered or foreign token gets 400 and a page, GET or POST, and changes nothing', async () => {
    const link = reconsentLink(mails.get('rc2@example.org')!);
    const token = link.slice('/reconsent/'.length);
    const [payload] = token.split('.');
    const list = await listIdOf('terms');
    const claims = { subscriberId: people[1]!, listId: list, version: 2, expiresAt: t.service.clock.now + 3600_000 };
    const bad = [
      `${link.slice(0, -1)}${link.endsWith('A') ? 'B' : 'A'}`,
      `/reconsent/${Buffer.from(Buffer.from(payload!, 'base64url').toString().replace(people[1]!, people[0]!)).toString('base64url')}.${token.split('.')[1]}`,
      `/reconsent/${new TokenSigner(['another-secret-of-at-least-32-characters!']).signReconsent(claims)}`,
      // Signed by us for confirming, in the very shape of a re-consent token for version 2.
      `/reconsent/${t.service.deps.signer.signConfirm({ subscriberId: people[1]!, listId: list, issuedAt: 2, expiresAt: claims.expiresAt })}`,
      `/reconsent/${t.service.deps.signer.signPreferences({ subscriberId: people[1]!, expiresAt: claims.expiresAt })}`,
      '/reconsent/not-a-token',
    ];
    const before = await snapshotAllTables(t.tdb);
    for (const path of bad) {
      for (const method of ['GET', 'POST']) {
        const response = await page(path, method);
        expect(response.status, `${method} ${path}`).toBe(400);
        expect(await response.text()).toContain('This link is not valid');
      }
    }
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('an expired link gets 410 and the way to a fresh preferences link, GET or POST, and changes nothing', async () => {
    const list = await listIdOf('terms');
    const expired = `/reconsent/${t.service.deps.signer.signReconsent({ subscriberId: people[1]!, listId: list, version: 2, expiresAt: t.service.clock.now - 1 })}`;
    const before = await snapshotAllTables(t.tdb);
    for (const method of ['GET', 'POST']) {
      const response = await page(expired, method);
      expect(response.status, method).toBe(410);
      const html = await response.text();
      expect(html).toContain('This link has expired');
      expect(html).toContain('action="/manage"');
    }
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('the preferences page shows the pending wording with the same button, and its POST brings the person back', async () => {
    const preferences = `/preferences/${t.service.deps.signer.signPreferences({ subscriberId: people[1]!, expiresAt: t.service.clock.now + 3600_000 })}`;
    const before = await snapshotAllTables(t.tdb);
    const html = await (await page(preferences)).text();
    expect(html).toContain('New wording waiting for your agreement:');
    expect(html).toContain(NEW);
    const action = /<form method="post" action="https:\/\/assent\.test(\/reconsent\/[^"]+)">/.exec(html)?.[1];
    expect(action).toBeDefined();
    expect(await snapshotAllTables(t.tdb)).toEqual(before);

    // Another site's page cannot press it in the person's name.
    expect((await page(action!, 'POST', { 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);

    expect((await page(action!, 'POST', { 'sec-fetch-site': 'same-origin' })).status).toBe(200);
    expect((await reconsentedEvents()).map((e) => e.subscriber_id)).toEqual([people[0], people[1]]);
    expect(await (await page(preferences)).text()).not.toContain('New wording waiting for your agreement:');
    expect(await campaignReaches('terms')).toEqual(['rc1@example.org', 'rc2@example.org']);
  });

  it('after the person left the list, the link offers nothing to agree to and its POST records nothing', async () => {
    const link = reconsentLink(mails.get('rc3@example.org')!);
    const unsubscribe = `/u/${t.service.deps.signer.signUnsubscribe({ subscriberId: people[2]!, listId: await listIdOf('terms') })}`;
    const left = await t.service.app.request(unsubscribe, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click',
    });
    expect(left.status).toBe(200);
    const before = await snapshotAllTables(t.tdb);
    const shown = await page(link);
    expect(shown.status).toBe(200);
    const html = await shown.text();
    expect(html).not.toContain('<form');
    expect(html).toContain('nicht mehr');
    expect((await page(link, 'POST')).status).toBe(200);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('a run interrupted by a dead worker is taken over once its claim runs out', async () => {
    // Confirmed before wordings were versioned: no wording on record to show beside the new one.
    const [late] = await seedConfirmed(t.tdb, 'terms', 1, { prefix: 'late' });
    await t.tdb.query('update subscriptions set consent_version = null where subscriber_id = $1', [late]);
    expect(await (await t.service.api('POST', '/api/v1/lists/terms/reconsent')).json()).toEqual({ version: 2, queued: 1 });
    // A worker claims the mail and dies before sending it.
    expect(await claimDueReconsents(t.service.deps.db, 'dead-worker', { limit: 10, leaseMs: 60_000 })).toHaveLength(1);
    await drain(t.service.reconsentWorker);
    expect(t.smtp.received.some((m) => m.envelopeTo.includes('late1@example.org'))).toBe(false);
    // Its lease runs out (moved into the past rather than waited for).
    await t.tdb.query(`update reconsent_messages set locked_until = now() - interval '1 second' where locked_by = 'dead-worker'`);
    const before = t.smtp.received.length;
    await drain(t.service.reconsentWorker);
    const sent = t.smtp.received.slice(before);
    expect(sent.flatMap((m) => m.envelopeTo)).toEqual(['late1@example.org']);
    expect(sent[0]!.parsed.text).toContain('(not recorded: you agreed before we kept each wording)');
    expect(sent[0]!.parsed.text).toContain(NEW);
  });

  it('does not mail someone who agreed (on the preferences page) before their mail went out', async () => {
    const [early] = await seedConfirmed(t.tdb, 'terms', 1, { prefix: 'prompt' });
    expect(await (await t.service.api('POST', '/api/v1/lists/terms/reconsent')).json()).toEqual({ version: 2, queued: 1 });
    const preferences = `/preferences/${t.service.deps.signer.signPreferences({ subscriberId: early!, expiresAt: t.service.clock.now + 3600_000 })}`;
    const action = /action="https:\/\/assent\.test(\/reconsent\/[^"]+)"/.exec(await (await page(preferences)).text())![1]!;
    expect((await page(action, 'POST')).status).toBe(200);
    const before = t.smtp.received.length;
    await drain(t.service.reconsentWorker);
    expect(t.smtp.received.length).toBe(before);
    const { rows } = await t.tdb.query('select status, last_error from reconsent_messages where subscriber_id = $1', [early]);
    expect(rows).toEqual([{ status: 'skipped', last_error: 'already agreed' }]);
  });

  it('is paced by SEND_RATE when its worker runs by itself', async () => {
    await seedConfirmed(t.tdb, 'plain', 12, { prefix: 'paced' });
    expect((await t.service.api('PATCH', '/api/v1/lists/plain', { consent_text: 'Plain, and partners.', reconsent: true })).status).toBe(200);
    expect(await (await t.service.api('POST', '/api/v1/lists/plain/reconsent')).json()).toEqual({ version: 2, queued: 12 });
    const rated = await createTestService(t.tdb.db, { smtpUrl: t.smtp.url, env: { SEND_RATE: '5' } });
    const paced = () => t.smtp.received.filter((m) => m.envelopeTo[0]!.startsWith('paced'));
    rated.reconsentWorker.start();
    try {
      await until('12 paced re-consent mails', () => paced().length === 12, 20_000);
    } finally {
      await rated.reconsentWorker.stop();
      rated.close();
    }
    // At most about one second of tokens (5, and one refilled meanwhile) go at once; the rest
    // come at 5 a second, so 12 span at least a second (unpaced, they take a tenth of that).
    const times = paced().map((m) => m.rcptAt).sort((a, b) => a - b);
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(800);
  });
});
