// Imports over HTTP into a real database: rows with their consent (confirmed, with an
// `imported` event holding what the row said, the file's hash and the key), rows without
// (the confirmation mail), suppressed and erased addresses never added back, confirmed ones
// never downgraded, bad rows reported by line while the rest goes on, a missing email column
// refused before anything is written, the same file twice importing nothing new, listmonk's
// and Mailchimp's columns, NDJSON, and a 100 MB body streamed.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyChain } from '../src/consent/ledger.js';
import { useTestService } from './helpers/fixture.js';
import { createList, snapshot } from './helpers/http.js';
import { API_KEY } from './helpers/secrets.js';
import { until } from './helpers/wait.js';

const t = useTestService({ lists: ['news'] });

interface ImportView {
  id: string; status: string; rows_read: number; imported: number; pending: number; unchanged: number; rejected: number;
  rejections: { line: number; reason: string }[]; file_sha256: string;
}

function postImport(body: string | ReadableStream<Uint8Array>, type = 'text/csv', list = 'news') {
  return t.service.app.request(`/api/v1/lists/${list}/imports`, {
    method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': type }, body,
    ...(typeof body !== 'string' && { duplex: 'half' }),
  } as RequestInit);
}

async function runImport(body: string, type = 'text/csv', list = 'news'): Promise<ImportView> {
  const response = await postImport(body, type, list);
  expect(response.status, await response.clone().text()).toBe(202);
  const { id } = await response.json() as { id: string };
  return until('the import finished', async () => {
    const view = await (await t.service.api('GET', `/api/v1/imports/${id}`)).json() as ImportView;
    return view.status === 'finished' ? view : undefined;
  }, 60_000);
}

const statusOf = async (email: string, list = 'news') => (await t.tdb.query(`select x.status from subscribers s
  join subscriptions x on x.subscriber_id = s.id join lists l on l.id = x.list_id where lower(s.email) = lower($1) and l.slug = $2`, [email, list])).rows[0]?.status;

describe('an import', () => {
  it('confirms rows with consent, mails rows without, reports bad rows by line and goes on', async () => {
    const csv = [
      'email,first_name,last_name,consented_at,consent_ip,consent_source,consent_text,attributes.plan',
      'with@example.org,Ada,Lovelace,2024-03-01T10:00:00Z,203.0.113.5,old-site signup form,Send me news,pro',
      'without@example.org,Grace,,,,,,',
      'not-an-address,,,,,,,',
      'baddate@example.org,,,yesterday,,,,',
      'future@example.org,,,2999-01-01T00:00:00Z,,,,',
      // An unterminated quote runs to the end of the file (CSV cannot tell where it ends): last, so it is its own rejection.
      '"broken@example.org,unterminated',
    ].join('\n');
    const view = await runImport(csv);
    expect(view).toMatchObject({ rows_read: 6, imported: 1, pending: 1, unchanged: 0, rejected: 4 });
    expect(view.file_sha256).toBe(createHash('sha256').update(csv).digest('hex'));
    expect(view.rejections.map((r) => r.line)).toEqual([4, 5, 6, 7]);
    expect(view.rejections[0]!.reason).toMatch(/email/);
    expect(view.rejections[1]!.reason).toMatch(/consented_at/);
    expect(view.rejections[2]!.reason).toMatch(/future/);
    expect(view.rejections[3]!.reason).toMatch(/CSV/);

    expect(await statusOf('with@example.org')).toBe('confirmed');
    expect(await statusOf('without@example.org')).toBe('pending');
    const { rows: [imported] } = await t.tdb.query(`select e.kind, e.subscriber_id, v.evidence from consent_events e join consent_evidence v on v.event_id = e.id
      join subscribers s on s.id = e.subscriber_id where s.email = 'with@example.org'`);
    expect(imported.kind).toBe('imported');
    expect(imported.evidence).toMatchObject({
      row: { email: 'with@example.org', consented_at: '2024-03-01T10:00:00.000Z', consent_ip: '203.0.113.5', consent_source: 'old-site signup form', consent_text: 'Send me news' },
      import: { id: view.id, file_sha256: view.file_sha256, line: 2 },
      api_key: { name: expect.any(String) },
      consent: { version: 1 },
    });
    expect((await verifyChain(t.tdb.db, imported.subscriber_id)).verified).toBe(true);
    const { rows: [person] } = await t.tdb.query(`select first_name, last_name, attributes from subscribers where email = 'with@example.org'`);
    expect(person).toEqual({ first_name: 'Ada', last_name: 'Lovelace', attributes: { plan: 'pro' } });
    const { rows: mails } = await t.tdb.query(`select kind, recipient from outbox where recipient in ('with@example.org', 'without@example.org')`);
    expect(mails).toEqual([{ kind: 'confirmation', recipient: 'without@example.org' }]);
    const { rows: [requested] } = await t.tdb.query(`select v.evidence from consent_events e join consent_evidence v on v.event_id = e.id
      join subscribers s on s.id = e.subscriber_id where s.email = 'without@example.org'`);
    expect(requested.evidence).toMatchObject({ import: { id: view.id, line: 3 }, api_key: { asserted: [] } });
  });

  it('imports nothing new from the same file twice, and counts duplicates as unchanged', async () => {
    const csv = 'email,consented_at\ntwice@example.org,2024-01-01T00:00:00Z\nnoconsent-twice@example.org,\ntwice@example.org,2024-01-01T00:00:00Z\n';
    const first = await runImport(csv);
    expect(first).toMatchObject({ imported: 1, pending: 1, unchanged: 1, rejected: 0 });
    const before = await snapshot(t.tdb);
    const second = await runImport(csv);
    expect(second).toMatchObject({ rows_read: 3, imported: 0, pending: 0, unchanged: 3, rejected: 0 });
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('never adds back a suppressed or erased address, never downgrades a confirmed one, never re-adds one who left', async () => {
    await runImport('email,consented_at\nerase-me@example.org,2024-01-01T00:00:00Z\nstays@example.org,2024-01-01T00:00:00Z\nleaves@example.org,2024-01-01T00:00:00Z');
    const erased = (await t.tdb.query(`select id from subscribers where email = 'erase-me@example.org'`)).rows[0].id;
    expect((await t.service.api('DELETE', `/api/v1/subscribers/${erased}`)).status).toBe(204);
    await t.tdb.query(`update subscriptions set status = 'unsubscribed' where subscriber_id = (select id from subscribers where email = 'leaves@example.org')`);
    const before = await snapshot(t.tdb);
    // stays@ twice: without consent (not sent a mail) and with a newer consent (not re-imported over its own).
    const view = await runImport('email,consented_at\nErase-Me@example.org,2024-02-02T00:00:00Z\nerase-me@example.org,\nstays@example.org,\nstays@example.org,2024-02-02T00:00:00Z\nleaves@example.org,2024-02-02T00:00:00Z\nleaves@example.org,');
    expect(view).toMatchObject({ imported: 0, pending: 0, unchanged: 2, rejected: 4 });
    expect(view.rejections.map((r) => [r.line, r.reason.split(' ')[0]])).toEqual([[2, 'suppressed'], [3, 'suppressed'], [6, 'unsubscribed'], [7, 'unsubscribed']]);
    expect(await statusOf('stays@example.org')).toBe('confirmed');
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('writes rows a batch at a time: lines, duplicates and counts hold across batches', async () => {
    const lines = ['email,first_name,consented_at'];
    for (let i = 0; i < 1_200; i += 1) {
      if (i % 400 === 7) lines.push(`not-an-address-${i},,`);
      else if (i % 100 === 3) lines.push(`batch${i}@example.org,,`);
      else lines.push(`batch${i}@example.org,B${i},2024-01-01T00:00:00Z`);
    }
    // Past the first batch: an address the first batch confirmed, and one it left pending, both again with consent.
    lines.push('batch0@example.org,,2024-06-01T00:00:00Z', 'batch3@example.org,,2024-06-01T00:00:00Z');
    const view = await runImport(lines.join('\n'));
    expect(view).toMatchObject({ rows_read: 1_202, imported: 1_200 - 3 - 12 + 1, pending: 12, unchanged: 1, rejected: 3 });
    expect(view.rejections.map((r) => r.line)).toEqual([9, 409, 809]);
    expect(await statusOf('batch3@example.org')).toBe('confirmed');
    const { rows: [counts] } = await t.tdb.query(`select
        (select count(*)::int from consent_events e join subscribers s on s.id = e.subscriber_id where s.email like 'batch%' and e.kind = 'imported') as imported,
        (select count(*)::int from outbox where recipient like 'batch%') as mails`);
    expect(counts).toEqual({ imported: 1_200 - 3 - 12 + 1, mails: 12 });
  }, 120_000);

  it('adds a known subscriber to another list on their own chain, keeping what the row does not say', async () => {
    await createList(t.service, 'second');
    await runImport('email,first_name,consented_at,attributes.plan\nknown@example.org,Kim,2024-01-01T00:00:00Z,basic');
    const view = await runImport('email,locale,consented_at,attributes.city\nKnown@example.org,de,2024-02-02T00:00:00Z,Berlin', 'text/csv', 'second');
    expect(view).toMatchObject({ imported: 1, rejected: 0 });
    const { rows: [person] } = await t.tdb.query(`select id, email, first_name, locale, attributes from subscribers where lower(email) = 'known@example.org'`);
    expect(person).toMatchObject({ email: 'known@example.org', first_name: 'Kim', locale: 'de', attributes: { plan: 'basic', city: 'Berlin' } });
    const chain = await verifyChain(t.tdb.db, person.id);
    expect(chain.verified).toBe(true);
    expect(chain.events.map((e) => e.kind)).toEqual(['imported', 'imported']);
    expect(await statusOf('known@example.org', 'second')).toBe('confirmed');
    expect((await t.tdb.query('select count(*)::int as n from affinity_events where subscriber_id = $1', [person.id])).rows[0].n).toBe(1);
  });

  it('rejects a row whose mailbox was just sent a confirmation under another spelling, writing nothing for it, and goes on', async () => {
    const before = (await t.tdb.query('select count(*)::int as n from subscribers')).rows[0].n;
    const view = await runImport('email\nspel.ling@gmail.com\nspelling+news@gmail.com\nafter-throttle@example.org\n');
    expect(view).toMatchObject({ pending: 2, rejected: 1 });
    expect(view.rejections).toEqual([{ line: 3, reason: expect.stringMatching(/^throttled/) }]);
    expect((await t.tdb.query('select count(*)::int as n from subscribers')).rows[0].n).toBe(before + 2);
    expect(await statusOf('spelling+news@gmail.com')).toBeUndefined();
    expect(await statusOf('after-throttle@example.org')).toBe('pending');
  });

  it('refuses a file without an email column with 422 before any row is written', async () => {
    const before = await snapshot(t.tdb);
    const imports = (await t.tdb.query('select count(*)::int as n from imports')).rows[0].n;
    const csv = await postImport('mail,first_name\nsomeone@example.org,Ada\n');
    expect(csv.status).toBe(422);
    expect(await csv.json()).toMatchObject({ error: { code: 'import_invalid' } });
    const ndjson = await postImport('{"mail":"someone@example.org"}\n', 'application/x-ndjson');
    expect(ndjson.status).toBe(422);
    expect((await postImport('email\na@example.org', 'application/json')).status).toBe(415);
    expect((await postImport('email\na@example.org', 'text/csv', 'no-such-list')).status).toBe(404);
    expect((await t.service.app.request('/api/v1/lists/news/imports', { method: 'POST', headers: { 'content-type': 'text/csv' }, body: 'email\n' })).status).toBe(401);
    expect((await t.service.api('GET', '/api/v1/imports/not-a-uuid')).status).toBe(404);
    expect(await snapshot(t.tdb)).toEqual(before);
    expect((await t.tdb.query('select count(*)::int as n from imports')).rows[0].n).toBe(imports);
  });

  it('reads NDJSON, reporting a line that is not JSON and going on', async () => {
    const view = await runImport([
      '{"email":"nd1@example.org","first_name":"Nd","consented_at":"2024-05-05T05:05:05Z","attributes":{"tier":"gold"}}',
      '{"email": "nd2@example.org"',
      '',
      '{"email":"nd3@example.org"}',
      '[1,2]',
    ].join('\n'), 'application/x-ndjson');
    expect(view).toMatchObject({ rows_read: 4, imported: 1, pending: 1, rejected: 2 });
    expect(view.rejections).toEqual([{ line: 2, reason: 'not valid JSON' }, { line: 5, reason: 'not a JSON object' }]);
    const { rows: [person] } = await t.tdb.query(`select first_name, attributes from subscribers where email = 'nd1@example.org'`);
    expect(person).toEqual({ first_name: 'Nd', attributes: { tier: 'gold' } });
  });

  it('takes listmonk\'s and Mailchimp\'s export columns as they are', async () => {
    await createList(t.service, 'migrated');
    const listmonk = [
      'uuid,email,name,attributes,status,created_at,updated_at',
      'a1b2,lm1@example.org,Linus Monk,"{""city"": ""Bengaluru""}",enabled,2023-01-01 00:00:00,2023-01-01 00:00:00',
      'a1b3,lm2@example.org,Blocked Person,{},blocklisted,2023-01-01 00:00:00,2023-01-01 00:00:00',
    ].join('\n');
    const lm = await runImport(listmonk, 'text/csv', 'migrated');
    expect(lm).toMatchObject({ pending: 1, rejected: 1 });
    expect(lm.rejections[0]!.reason).toMatch(/blocklisted/);
    const mailchimp = [
      '"Email Address","First Name","Last Name",MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS',
      'mc1@example.org,Mail,Chimp,2,"2022-06-01 09:00:00",198.51.100.1,"2022-06-01 09:05:00",198.51.100.2,,,,,,,,"2022-06-01 09:05:00",1,abc,,',
    ].join('\n');
    const mc = await runImport(mailchimp, 'text/csv', 'migrated');
    expect(mc).toMatchObject({ imported: 1, rejected: 0 });
    const { rows: [event] } = await t.tdb.query(`select v.evidence from consent_events e join consent_evidence v on v.event_id = e.id
      join subscribers s on s.id = e.subscriber_id where s.email = 'mc1@example.org'`);
    expect(event.evidence.row).toMatchObject({ consented_at: '2022-06-01T09:05:00.000Z', consent_ip: '198.51.100.2', first_name: 'Mail', last_name: 'Chimp' });
    expect(await statusOf('lm1@example.org', 'migrated')).toBe('pending');
    const { rows: [pendingFields] } = await t.tdb.query(`select x.pending_fields from subscriptions x join subscribers s on s.id = x.subscriber_id where s.email = 'lm1@example.org'`);
    expect(pendingFields.pending_fields).toMatchObject({ first_name: 'Linus', last_name: 'Monk', attributes: JSON.stringify({ city: 'Bengaluru' }) });
  });

  it('streams a 100 MB body: memory does not grow with the file', async () => {
    const chunk = new TextEncoder().encode(`${'\n'.repeat(1024 * 1024 - 1)}\n`);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      start(controller) { controller.enqueue(new TextEncoder().encode('email,consented_at\nbig@example.org,2024-01-01T00:00:00Z\n')); },
      pull(controller) {
        if (sent >= 100) { controller.enqueue(new TextEncoder().encode('big2@example.org,\n')); controller.close(); return; }
        sent += 1;
        controller.enqueue(chunk);
      },
    });
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    let heapPeak = heapBefore;
    const sampler = setInterval(() => { heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed); }, 20);
    try {
      const response = await postImport(body);
      expect(response.status).toBe(202);
      const { id } = await response.json() as { id: string };
      const view = await until('the big import finished', async () => {
        const v = await (await t.service.api('GET', `/api/v1/imports/${id}`)).json() as ImportView;
        return v.status === 'finished' ? v : undefined;
      }, 120_000);
      expect(view).toMatchObject({ rows_read: 2, imported: 1, pending: 1 });
    } finally {
      clearInterval(sampler);
    }
    expect(heapPeak - heapBefore).toBeLessThan(50 * 1024 * 1024);
  }, 180_000);
});
