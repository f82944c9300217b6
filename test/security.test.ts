// Claims of docs/security.md that no other file shows: markup a person or a marketer typed
// never becomes markup on our pages, and SQL typed into any field stays data.
import { describe, expect, it } from 'vitest';
import { preferencesUrl } from '../src/links/urls.js';
import { useTestService } from './helpers/fixture.js';
import { confirmLink, pathOf, postForm, snapshot } from './helpers/http.js';

const t = useTestService({ smtp: true });
const MARKUP = '<img src=x onerror=alert(1)>';
const SCRIPT = '<script>alert(1)</script>';

describe('markup typed by people and marketers', () => {
  it('is shown as text on the confirm, confirmed and preferences pages', async () => {
    const list = await t.service.api('POST', '/api/v1/lists', {
      slug: 'xss', name: `News ${MARKUP}`, consent_text: `I agree ${SCRIPT} "quoted" & more`, fields: ['first_name', 'last_name'],
    });
    expect(list.status).toBe(201);
    const since = t.smtp.received.length;
    expect((await postForm(t.service, { email: 'xss@example.org', list: 'xss', first_name: SCRIPT, last_name: `"><svg onload=alert(1)>` })).status).toBe(303);
    await t.service.worker.runOnce();
    const mail = await t.smtp.waitForMailTo('xss@example.org', since);
    expect(mail.parsed.html).not.toMatch(/<img src=x|<script>alert/);
    const path = pathOf(confirmLink(mail.parsed.text));

    const pages = [await (await t.service.app.request(path)).text(), await (await t.service.app.request(path, { method: 'POST' })).text()];
    const { rows: [person] } = await t.tdb.query(`select id from subscribers where email = 'xss@example.org'`);
    await t.tdb.query(`update subscribers set attributes = $2 where id = $1`, [person.id, JSON.stringify({ [MARKUP]: SCRIPT })]);
    pages.push(await (await t.service.app.request(pathOf(preferencesUrl(t.service.deps, person.id)))).text());

    for (const html of pages) {
      expect(html).not.toContain('<img src=x');
      expect(html).not.toContain('<script>alert');
      expect(html).not.toContain('<svg onload');
    }
    expect(pages[0]).toContain('News &lt;img src=x onerror=alert(1)&gt;');
    expect(pages[2]).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(pages[2]).toMatch(/(&quot;|&#34;)&gt;&lt;svg onload=alert\(1\)&gt;/);
  });

  it('is not echoed raw by an error page', async () => {
    const response = await postForm(t.service, { email: `${SCRIPT}@example.org`, list: `x${MARKUP}` });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    const html = await response.text();
    expect(html).not.toContain('<script>alert');
    expect(html).not.toContain('<img src=x');
  });
});

describe('headers', () => {
  it('every page forbids scripts, framing and posting elsewhere; no response may be sniffed', async () => {
    for (const path of ['/manage', '/confirm/not-a-token', '/api/docs', '/subscribe/check-inbox']) {
      const response = await t.service.app.request(path);
      expect(response.headers.get('content-type')).toMatch(/^text\/html/);
      const policy = response.headers.get('content-security-policy');
      expect(policy).toContain("default-src 'none'");
      expect(policy).not.toMatch(/script-src/);
      expect(policy).toContain("frame-ancestors 'none'");
      expect(policy).toContain("form-action 'self'");
      expect(response.headers.get('x-frame-options')).toBe('DENY');
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    }
    expect((await t.service.app.request('/healthz')).headers.get('x-content-type-options')).toBe('nosniff');
  });
});

describe('SQL typed into fields and parameters', () => {
  it('stays data: filters find nothing, a signup stores the text as typed, nothing else changes', async () => {
    const injections = [`' or '1'='1`, `'; drop table subscribers; --`, `x' union select password from pg_authid --`];
    for (const text of injections) {
      const found = await t.service.api('GET', `/api/v1/subscribers?email=${encodeURIComponent(`${text}@example.org`)}`);
      expect([200, 400]).toContain(found.status);
      if (found.status === 200) expect((await found.json()).data).toEqual([]);
      expect((await t.service.api('GET', `/api/v1/subscribers?list=${encodeURIComponent(text)}`)).status).toBeLessThan(500);
      expect((await t.service.api('GET', `/api/v1/subscribers/${encodeURIComponent(text)}`)).status).toBe(404);
      expect((await t.service.api('GET', `/api/v1/campaigns/${encodeURIComponent(text)}`)).status).toBe(404);
    }
    await t.service.api('POST', '/api/v1/lists', { slug: 'sqli', name: 'SQL', consent_text: 'ok', fields: ['first_name'] });
    const before = await snapshot(t.tdb);
    expect((await postForm(t.service, { email: 'bobby@example.org', list: 'sqli', first_name: injections[1]! })).status).toBe(303);
    const { rows } = await t.tdb.query(`select x.pending_fields->>'first_name' as first_name from subscribers s
      join subscriptions x on x.subscriber_id = s.id where s.email = 'bobby@example.org'`);
    expect(rows).toEqual([{ first_name: injections[1] }]);
    const after = (await snapshot(t.tdb)) as { subscribers: unknown[]; lists: unknown[] };
    expect(after.subscribers).toHaveLength((before as { subscribers: unknown[] }).subscribers.length + 1);
    expect(after.lists).toEqual((before as { lists: unknown[] }).lists);
  });
});
