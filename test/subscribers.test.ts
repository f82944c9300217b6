// The marketers' API for people: find, one, proof of consent, affinity, export, erasure.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { preferencesUrl } from '../src/links/urls.js';
import { appendConsentEvent, chainHead } from '../src/consent/ledger.js';
import { useTestService } from './helpers/fixture.js';
import { confirmLink, pathOf, postJson } from './helpers/http.js';

const t = useTestService({ smtp: true, lists: ['news', 'offers'] });

async function confirmedSubscriber(email: string, fields: Record<string, string> = {}, list = 'news'): Promise<string> {
  const count = t.smtp.received.length;
  expect((await postJson(t.service, { email, list, ...fields })).status).toBe(202);
  await t.service.worker.runOnce();
  const mail = await t.smtp.waitForMailTo(email, count);
  expect((await t.service.app.request(pathOf(confirmLink(mail.parsed.text)), { method: 'POST' })).status).toBe(200);
  const { rows } = await t.tdb.query('select id from subscribers where lower(email) = lower($1)', [email]);
  return rows[0].id;
}

const get = async (path: string) => {
  const response = await t.service.api('GET', path);
  return { status: response.status, body: await response.json() };
};

describe('finding subscribers', () => {
  it('pages through 250 subscribers, each exactly once, with a cursor', async () => {
    await t.tdb.query(`
      with people as (
        insert into subscribers (email, locale) select 'page' || n || '@example.org', 'en' from generate_series(1, 250) n returning id)
      insert into subscriptions (subscriber_id, list_id, status)
      select id, (select id from lists where slug = 'offers'), 'confirmed' from people`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = `/api/v1/subscribers?list=offers&status=confirmed&limit=40${cursor ? `&cursor=${cursor}` : ''}`;
      const { status, body } = await get(query);
      expect(status).toBe(200);
      seen.push(...body.data.map((s: { email: string }) => s.email));
      cursor = body.next_cursor;
      pages += 1;
    } while (cursor);
    expect(pages).toBe(7);
    expect(seen).toHaveLength(250);
    expect(new Set(seen).size).toBe(250);
  });

  it('filters by address (normalised, any case), list and status', async () => {
    const id = await confirmedSubscriber('Find.Me@Example.org', { first_name: 'Finn' });
    const byEmail = await get('/api/v1/subscribers?email=%20find.me@EXAMPLE.org');
    expect(byEmail.body.data.map((s: { id: string }) => s.id)).toEqual([id]);
    expect(byEmail.body.data[0]).toMatchObject({
      email: 'Find.Me@example.org', first_name: 'Finn', affinity: 'confirmed',
      subscriptions: [{ list: 'news', status: 'confirmed', consent_version: 1, consent_text: 'Send me news by mail, about once a week.' }],
    });
    const pending = await get('/api/v1/subscribers?list=news&status=pending');
    expect(pending.body.data.map((s: { id: string }) => s.id)).not.toContain(id);
    expect((await get('/api/v1/subscribers?list=nope')).status).toBe(404);
    expect((await get('/api/v1/subscribers?email=not-an-address')).status).toBe(400);
    expect((await get('/api/v1/subscribers?status=happy')).status).toBe(400);
    expect((await get('/api/v1/subscribers?cursor=garbage')).status).toBe(400);
    expect((await get('/api/v1/subscribers?limit=100000')).status).toBe(400);
  });

  it('gets one with subscriptions and affinity; unknown and malformed ids are 404', async () => {
    const id = await confirmedSubscriber('one@example.org');
    const { status, body } = await get(`/api/v1/subscribers/${id}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ id, email: 'one@example.org', affinity: 'confirmed', locale: 'en' });
    expect((await get('/api/v1/subscribers/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await get('/api/v1/subscribers/not-a-uuid')).status).toBe(404);
    expect((await get('/api/v1/subscribers/not-a-uuid/consent')).body.error.code).toBe('subscriber_not_found');
  });
});

describe('the proof of consent', () => {
  it('lists every event with its evidence and says the chain verifies, until evidence is tampered with', async () => {
    const id = await confirmedSubscriber('proof@example.org');
    const record = await get(`/api/v1/subscribers/${id}/consent`);
    expect(record.status).toBe(200);
    expect(record.body.verified).toBe(true);
    expect(record.body.events.map((e: { kind: string }) => e.kind)).toEqual(['requested', 'confirmed']);
    expect(record.body.events[1]).toMatchObject({ list: 'news', verified: true, evidence: { consent: { version: 1 } } });

    await t.tdb.query(`begin; alter table consent_evidence disable trigger consent_evidence_no_update;
      update consent_evidence set evidence = jsonb_set(evidence, '{consent,text}', '"Anything goes."')
      where event_id = (select min(id) from consent_events where subscriber_id = '${id}');
      alter table consent_evidence enable trigger consent_evidence_no_update; commit;`);
    const tampered = await get(`/api/v1/subscribers/${id}/consent`);
    expect(tampered.body.verified).toBe(false);
    expect(tampered.body.events.map((e: { verified: boolean }) => e.verified)).toEqual([false, true]);
  });
});

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** What the API and the person's download hand out about someone: the record, the export, the download. */
async function handedOut(id: string): Promise<Record<string, string>> {
  const download = await t.service.app.request(`${new URL(preferencesUrl(t.service.deps, id)).pathname}/export`, { method: 'POST' });
  expect(download.status).toBe(200);
  return {
    consent: await (await t.service.api('GET', `/api/v1/subscribers/${id}/consent`)).text(),
    export: await (await t.service.api('GET', `/api/v1/subscribers/${id}/export`)).text(),
    download: await download.text(),
  };
}

/**
 * Plays every confirm link found in `bodies`, as whoever read them would, with a user agent
 * of their choosing: none may confirm, none may verify.
 */
async function expectNoWorkingConfirmLink(bodies: Record<string, string>, id: string, token: string): Promise<void> {
  for (const [name, body] of Object.entries(bodies)) {
    expect(body, name).not.toContain(token);
    const found = [...body.matchAll(/\/confirm\/([^\s"\\]+)/g)].map((match) => match[1]!);
    expect(found.length, `${name} keeps the mail's link, as its hash`).toBeGreaterThan(0);
    for (const candidate of found) {
      expect(t.service.deps.signer.verifyConfirm(candidate, t.service.clock.now).ok, candidate).toBe(false);
      const forged = await t.service.app.request(`/confirm/${candidate}`, { method: 'POST', headers: { 'user-agent': 'Forger/1.0' } });
      expect(forged.status, candidate).not.toBe(200);
    }
  }
  const { rows } = await t.tdb.query('select status from subscriptions where subscriber_id = $1', [id]);
  expect(rows).toEqual([{ status: 'pending' }]);
}

describe('no link handed out', () => {
  it('the record, the export and the download hold no working confirm link; the mail stays provable by its token\'s hash', async () => {
    const email = 'no-forgery@example.org';
    const count = t.smtp.received.length;
    expect((await postJson(t.service, { email, list: 'news' })).status).toBe(202);
    await t.service.worker.runOnce();
    const { parsed } = await t.smtp.waitForMailTo(email, count);
    const link = confirmLink(parsed.text);
    const token = pathOf(link).slice('/confirm/'.length);
    const { rows: [{ id }] } = await t.tdb.query('select id from subscribers where email = $1', [email]);

    const bodies = await handedOut(id);
    await expectNoWorkingConfirmLink(bodies, id, token);
    // The mail as delivered is the one recorded: its text with the token replaced by the
    // token's hash, and the hash of that text.
    const marker = `{token_sha256:${sha256(token)}}`;
    const requested = JSON.parse(bodies.consent!).events[0].evidence;
    expect(requested.mail).toEqual({
      message_id: parsed.messageId, subject: parsed.subject, text: parsed.text!.replaceAll(token, marker), text_sha256: sha256(parsed.text!),
    });

    // The person clicks the real link in the real mail: the confirmation names the same hash.
    const clicked = await t.service.app.request(pathOf(link), { method: 'POST', headers: { 'user-agent': 'Person Browser/1.0' } });
    expect(clicked.status).toBe(200);
    const record = (await get(`/api/v1/subscribers/${id}/consent`)).body;
    expect(record.verified).toBe(true);
    const hashInMail = /\{token_sha256:([0-9a-f]{64})\}/.exec(record.events[0].evidence.mail.text)![1];
    expect(record.events[1]).toMatchObject({ kind: 'confirmed', evidence: { token_sha256: hashInMail, user_agent: 'Person Browser/1.0' } });
  });

  it('shows a request recorded before with its live link as the token\'s hash too, and verifies it as stored', async () => {
    const email = 'old-record@example.org';
    expect((await postJson(t.service, { email, list: 'offers' })).status).toBe(202);
    const { rows: [queued] } = await t.tdb.query(`select s.id, o.message_id, o.subject, o.text from outbox o
      join subscribers s on s.id = o.subscriber_id where s.email = $1`, [email]);
    const token = pathOf(confirmLink(queued.text)).slice('/confirm/'.length);
    expect(t.service.deps.signer.verifyConfirm(token, t.service.clock.now).ok).toBe(true);
    // A request as recorded before the token was kept out of the evidence: the mail's text, live link and all.
    const { rows: [list] } = await t.tdb.query(`select id from lists where slug = 'offers'`);
    await t.tdb.db.transaction().execute(async (trx) => appendConsentEvent(trx, await chainHead(trx, queued.id), {
      subscriberId: queued.id, listId: list.id, kind: 'requested',
      evidence: { ip: null, user_agent: null, page: null, mail: { message_id: queued.message_id, subject: queued.subject, text: queued.text } },
    }));
    const { rows: [stored] } = await t.tdb.query(`select v.evidence from consent_evidence v join consent_events e on e.id = v.event_id
      where e.subscriber_id = $1 order by e.id desc limit 1`, [queued.id]);
    expect(stored.evidence.mail.text).toContain(token);

    const bodies = await handedOut(queued.id);
    await expectNoWorkingConfirmLink(bodies, queued.id, token);
    const record = JSON.parse(bodies.consent!);
    expect(record.verified).toBe(true);
    expect(record.events.at(-1).evidence.mail.text).toBe(queued.text.replaceAll(token, `{token_sha256:${sha256(token)}}`));
  });
});

describe('affinity', () => {
  it('records levels as append-only events with reason and the key that recorded them', async () => {
    const id = await confirmedSubscriber('close@example.org');
    const response = await t.service.api('POST', `/api/v1/subscribers/${id}/affinity`, { level: 'known', reason: 'replied to a mail' });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ subscriber_id: id, level: 'known', reason: 'replied to a mail', recorded_by: 'ASSENT_API_KEY' });
    expect((await get(`/api/v1/subscribers/${id}`)).body.affinity).toBe('known');
    await t.service.api('POST', `/api/v1/subscribers/${id}/affinity`, { level: 'engaged', reason: 'bought twice' });
    expect((await get(`/api/v1/subscribers/${id}`)).body.affinity).toBe('engaged');
    const { rows } = await t.tdb.query('select level from affinity_events where subscriber_id = $1 order by id', [id]);
    expect(rows.map((row) => row.level)).toEqual(['confirmed', 'known', 'engaged']);
  });

  it('refuses a bad level (400), an unknown subscriber (404) and one who never confirmed (409)', async () => {
    const id = await confirmedSubscriber('refuse@example.org');
    expect((await t.service.api('POST', `/api/v1/subscribers/${id}/affinity`, { level: 'best-friend', reason: 'x' })).status).toBe(400);
    expect((await t.service.api('POST', `/api/v1/subscribers/${id}/affinity`, { level: 'known' })).status).toBe(400);
    expect((await t.service.api('POST', '/api/v1/subscribers/00000000-0000-4000-8000-000000000000/affinity', { level: 'known', reason: 'x' })).status).toBe(404);
    await postJson(t.service, { email: 'unconfirmed@example.org', list: 'news' });
    const { rows } = await t.tdb.query(`select id from subscribers where email = 'unconfirmed@example.org'`);
    const response = await t.service.api('POST', `/api/v1/subscribers/${rows[0].id}/affinity`, { level: 'known', reason: 'x' });
    expect(response.status).toBe(409);
    expect((await response.json()).error.code).toBe('not_confirmed');
  });
});

describe('export', () => {
  it('hands out everything held: the person, subscriptions, consent with evidence, affinity, mails', async () => {
    const id = await confirmedSubscriber('export@example.org', { first_name: 'Ex', last_name: 'Port' });
    await t.service.api('POST', `/api/v1/subscribers/${id}/affinity`, { level: 'known', reason: 'asked a question' });
    const { status, body } = await get(`/api/v1/subscribers/${id}/export`);
    expect(status).toBe(200);
    expect(body.subscriber).toMatchObject({ id, email: 'export@example.org', first_name: 'Ex', last_name: 'Port', affinity: 'known' });
    expect(body.consent).toMatchObject({ verified: true, events: [{ kind: 'requested' }, { kind: 'confirmed' }] });
    expect(body.consent.events[0].evidence.mail.text).toContain('/confirm/');
    expect(body.affinity_events.map((e: { level: string }) => e.level)).toEqual(['confirmed', 'known']);
    expect(body.mails).toEqual([expect.objectContaining({ kind: 'confirmation', status: 'sent' })]);
  });
});

describe('erasure', () => {
  it('removes every personal datum, keeps a suppression hash and a chain that still verifies', async () => {
    const email = 'Erase.Me@example.org';
    const id = await confirmedSubscriber(email, { first_name: 'Eraseable', last_name: 'Personname' });
    await t.service.api('POST', `/api/v1/subscribers/${id}/affinity`, { level: 'known', reason: 'told us about Personname family' });
    await t.tdb.query(`update subscribers set attributes = '{"city":"Atlantis-Personname"}' where id = $1`, [id]);

    const response = await t.service.api('DELETE', `/api/v1/subscribers/${id}`);
    expect(response.status).toBe(204);

    const { rows: tables } = await t.tdb.query(`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`);
    for (const { table_name: table } of tables) {
      const { rows } = await t.tdb.query(`select count(*)::int as n from "${table}" t where t::text ilike any($1)`,
        [['%erase.me@example.org%', '%Eraseable%', '%Personname%']]);
      expect(rows[0].n, `${table} still holds personal data`).toBe(0);
    }
    expect((await get(`/api/v1/subscribers/${id}`)).status).toBe(404);
    expect((await get(`/api/v1/subscribers?email=${encodeURIComponent(email)}`)).body.data).toEqual([]);
    const { rows: suppressed } = await t.tdb.query(`select reason from suppressions where address_hash = sha256(convert_to(lower($1), 'UTF8'))`, [email]);
    expect(suppressed).toEqual([{ reason: 'erased' }]);

    const { verifyChain } = await import('../src/consent/ledger.js');
    const chain = await verifyChain(t.tdb.db, id);
    expect(chain.verified).toBe(true);
    expect(chain.events.map((e) => e.kind)).toEqual(['requested', 'confirmed', 'erased']);
    expect((await t.service.api('DELETE', `/api/v1/subscribers/${id}`)).status).toBe(404);
  });

  it('lets the address sign up again; the suppression is lifted only when the new signup is confirmed', async () => {
    const email = 'comeback@example.org';
    const first = await confirmedSubscriber(email);
    await t.service.api('DELETE', `/api/v1/subscribers/${first}`);
    const suppressed = async () => (await t.tdb.query(`select count(*)::int as n from suppressions where address_hash = sha256(convert_to($1, 'UTF8'))`, [email])).rows[0].n;
    expect(await suppressed()).toBe(1);
    const count = t.smtp.received.length;
    await postJson(t.service, { email, list: 'news' });
    expect(await suppressed()).toBe(1);
    await t.service.worker.runOnce();
    const mail = await t.smtp.waitForMailTo(email, count);
    await t.service.app.request(pathOf(confirmLink(mail.parsed.text)), { method: 'POST' });
    expect(await suppressed()).toBe(0);
    const { rows } = await t.tdb.query('select id from subscribers where email = $1', [email]);
    expect(rows[0].id).not.toBe(first);
  });

  it('takes queued mail to the person out of the queue', async () => {
    await postJson(t.service, { email: 'queued@example.org', list: 'news' });
    const { rows } = await t.tdb.query(`select id from subscribers where email = 'queued@example.org'`);
    // pending subscribers are found and erased like any other
    expect((await t.service.api('DELETE', `/api/v1/subscribers/${rows[0].id}`)).status).toBe(204);
    const before = t.smtp.received.length;
    await t.service.worker.runOnce();
    expect(t.smtp.received.length).toBe(before);
    const { rows: mails } = await t.tdb.query('select status, recipient, text from outbox where subscriber_id = $1', [rows[0].id]);
    expect(mails).toEqual([{ status: 'failed', recipient: null, text: null }]);
  });
});
