// Operations endpoints, and what a request gets while the database is away.
import { describe, expect, it } from 'vitest';
import { createDatabase } from '../src/db/database.js';
import { freePort } from '../src/db/embedded.js';
import { useTestService } from './helpers/fixture.js';
import { postForm, postJson } from './helpers/http.js';
import { createTestService } from './helpers/service.js';

const t = useTestService({ lists: ['news'] });

describe('operations', () => {
  it('answers /healthz and /readyz', async () => {
    expect(await (await t.service.app.request('/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await t.service.app.request('/readyz');
    expect(ready.status).toBe(200);
  });

  it('counts signups and confirmations in /metrics', async () => {
    await postJson(t.service, { email: 'metrics@example.org', list: 'news' });
    const text = await (await t.service.app.request('/metrics')).text();
    expect(text).toMatch(/assent_signups_total\{outcome="mailed"\} 1/);
    expect(text).toMatch(/assent_http_request_duration_seconds_count\{method="POST",route="\/subscribe",status="202"\} 1/);
  });
});

describe('without a database', () => {
  it('answers 503 with Retry-After, never 500, and /readyz says so', async () => {
    const port = await freePort();
    const gone = createDatabase(`postgres://nobody:x@127.0.0.1:${port}/none`, { max: 1 });
    const orphan = await createTestService(gone);
    try {
      const ready = await orphan.app.request('/readyz');
      expect(ready.status).toBe(503);
      const json = await postJson(orphan, { email: 'later@example.org', list: 'news' });
      expect(json.status).toBe(503);
      expect(json.headers.get('retry-after')).toBe('5');
      expect((await json.json()).error.code).toBe('unavailable');
      const form = await postForm(orphan, { email: 'later@example.org', list: 'news' });
      expect(form.status).toBe(503);
      expect(await form.text()).toContain('Nothing was lost');
    } finally {
      orphan.close();
      await gone.destroy();
    }
  });
});
