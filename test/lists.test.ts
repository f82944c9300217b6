// Lists over the API: bearer key, create, read with counts, versioned consent wording.
import { describe, expect, it } from 'vitest';
import { useTestService } from './helpers/fixture.js';
import { postJson, snapshot } from './helpers/http.js';

const t = useTestService({});

describe('the API key', () => {
  it.each([undefined, 'Bearer wrong-key-0123456789', 'Basic dGVzdA==', `Bearer test-api-key-0123456789abcdeX`])(
    'refuses %s with 401 and changes nothing', async (authorization) => {
      const before = await snapshot(t.tdb);
      const response = await t.service.app.request('/api/v1/lists', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization && { authorization }) },
        body: JSON.stringify({ slug: 'x', name: 'X', consent_text: 'Yes.' }),
      });
      expect(response.status).toBe(401);
      expect((await response.json()).error.code).toBe('unauthorized');
      expect(await snapshot(t.tdb)).toEqual(before);
    });
});

describe('lists', () => {
  it('creates a list with its first consent version and default fields', async () => {
    const response = await t.service.api('POST', '/api/v1/lists', { slug: 'weekly', name: 'Weekly', consent_text: 'Mail me weekly.' });
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({
      slug: 'weekly', name: 'Weekly', fields: ['first_name', 'last_name'], consent_text: 'Mail me weekly.', consent_version: 1,
    });
  });

  it('refuses a taken slug with 409, and bad bodies with 400 naming the field', async () => {
    expect((await t.service.api('POST', '/api/v1/lists', { slug: 'weekly', name: 'Again', consent_text: 'x' })).status).toBe(409);
    const before = await snapshot(t.tdb);
    for (const [body, field] of [
      [{ slug: 'Bad Slug', name: 'x', consent_text: 'x' }, 'slug'],
      [{ slug: 'ok', name: '', consent_text: 'x' }, 'name'],
      [{ slug: 'ok', name: 'x' }, 'consent_text'],
      [{ slug: 'ok', name: 'x', consent_text: 'x', fields: ['password'] }, 'fields.0'],
      [{ slug: 'ok', name: 'x', consent_text: 'x', extra: 1 }, 'body'],
    ] as const) {
      const response = await t.service.api('POST', '/api/v1/lists', body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      const answer = await response.json();
      expect(answer.error.code).toBe('invalid_input');
      expect(Object.keys(answer.error.fields ?? {}).join(), JSON.stringify(body)).toContain(field === 'body' ? '' : field);
    }
    const malformed = await t.service.app.request('/api/v1/lists', {
      method: 'POST', headers: { authorization: 'Bearer test-api-key-0123456789abcdef', 'content-type': 'application/json' }, body: '{"slug":',
    });
    expect(malformed.status).toBe(400);
    expect((await malformed.json()).error.code).toBe('invalid_input');
    expect(await snapshot(t.tdb)).toEqual(before);
  });

  it('versions the consent text: a change makes a new version, the same text does not', async () => {
    const changed = await t.service.api('PATCH', '/api/v1/lists/weekly', { consent_text: 'Mail me weekly, and sometimes offers.' });
    expect(changed.status).toBe(200);
    expect(await changed.json()).toMatchObject({ consent_version: 2, consent_text: 'Mail me weekly, and sometimes offers.' });
    const same = await t.service.api('PATCH', '/api/v1/lists/weekly', { consent_text: 'Mail me weekly, and sometimes offers.', name: 'Weekly News' });
    expect(await same.json()).toMatchObject({ consent_version: 2, name: 'Weekly News' });
    const { rows } = await t.tdb.query(`select version, text from list_consent_versions v join lists l on l.id = v.list_id where l.slug = 'weekly' order by version`);
    expect(rows).toEqual([{ version: 1, text: 'Mail me weekly.' }, { version: 2, text: 'Mail me weekly, and sometimes offers.' }]);
    expect((await t.service.api('PATCH', '/api/v1/lists/nope', { name: 'x' })).status).toBe(404);
  });

  it('lists every list with its counts by status', async () => {
    await postJson(t.service, { email: 'count1@example.org', list: 'weekly' });
    await postJson(t.service, { email: 'count2@example.org', list: 'weekly' });
    await t.tdb.query(`update subscriptions set status = 'confirmed' where subscriber_id = (select id from subscribers where email = 'count2@example.org')`);
    const response = await t.service.api('GET', '/api/v1/lists');
    expect(response.status).toBe(200);
    const { data } = await response.json();
    expect(data).toEqual([expect.objectContaining({
      slug: 'weekly', counts: { pending: 1, confirmed: 1, unsubscribed: 0, bounced: 0, complained: 0 },
    })]);
  });

  it('serves the OpenAPI document', async () => {
    const response = await t.service.app.request('/api/openapi.json');
    expect(response.status).toBe(200);
    const doc = await response.json();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/lists', '/v1/lists/{slug}']));
  });
});
