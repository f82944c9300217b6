// Operations endpoints, and what a request gets while the database is away.
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.js';
import { createDatabase } from '../src/db/database.js';
import { freePort } from '../src/db/embedded.js';
import { addressTag } from '../src/log.js';
import { createLogger, type Role, type Service, startService } from '../src/main.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { useTestService } from './helpers/fixture.js';
import { confirmLink, pathOf, postForm, postJson, seedConfirmed } from './helpers/http.js';
import { API_KEY, createTestService, testConfig } from './helpers/service.js';

const t = useTestService({ smtp: true, lists: ['news', 'letters'] });

describe('operations', () => {
  it('answers /healthz and /readyz', async () => {
    expect(await (await t.service.app.request('/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await t.service.app.request('/readyz');
    expect(ready.status).toBe(200);
  });

  it('counts signups and confirmations in /metrics', async () => {
    await postJson(t.service, { email: 'metrics@example.org', list: 'news' });
    const text = await (await t.service.app.request('/metrics')).text();
    expect(text).toMatch(/assent_signups_total\{outcome="accepted"\} 1/);
    expect(text).toMatch(/assent_http_request_duration_seconds_count\{method="POST",route="\/subscribe",status="202"\} 1/);
  });
});

/** The value of one sample in a Prometheus text exposition, 0 when absent. */
function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

describe('metrics over a whole journey', () => {
  it('move after a signup, its confirmation, a campaign and a one-click unsubscribe', async () => {
    const scrape = async () => (await t.service.app.request('/metrics')).text();
    await t.service.worker.runOnce(); // the earlier tests' confirmation mails go first
    const before = await scrape();
    const since = t.smtp.received.length;

    await postJson(t.service, { email: 'journey@example.org', list: 'letters' });
    await t.service.worker.runOnce();
    const confirmation = await t.smtp.waitForMailTo('journey@example.org', since);
    expect((await t.service.app.request(pathOf(confirmLink(confirmation.parsed.text)), { method: 'POST' })).status).toBe(200);

    await seedConfirmed(t.tdb, 'letters', 20, { prefix: 'journey-seed' });
    const created = await t.service.api('POST', '/api/v1/campaigns', {
      name: 'Journey', list: 'letters', subject: 'Hi', mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>',
    });
    const { id } = await created.json();
    await t.service.api('POST', `/api/v1/campaigns/${id}/send`);
    await t.service.campaignWorker.runOnce();
    const mail = t.smtp.received.slice(since).find((m) => m.envelopeTo.includes('journey@example.org') && m.parsed.subject === 'Hi')!;
    const oneClick = /^List-Unsubscribe:\s+<([^>]+)>/m.exec(mail.raw.toString())![1]!;
    expect((await t.service.app.request(pathOf(oneClick), {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click',
    })).status).toBe(200);

    const after = await scrape();
    const moved = (name: string) => sample(after, name) - sample(before, name);
    expect(moved('assent_signups_total{outcome="accepted"}')).toBe(1);
    expect(moved('assent_confirmations_total')).toBe(1);
    expect(moved('assent_unsubscribes_total')).toBe(1);
    expect(moved('assent_mails_sent_total{kind="confirmation"}')).toBe(1);
    expect(moved('assent_mails_sent_total{kind="campaign"}')).toBe(21);
    expect(moved('assent_mail_send_seconds_count{kind="campaign"}')).toBe(21);
    expect(moved('assent_http_request_duration_seconds_count{method="POST",route="/u/:token",status="200"}')).toBe(1);
    expect(sample(after, 'assent_campaign_queued')).toBe(0);
  });
});

describe('logs and queue depth', () => {
  it('log one line per request with a request id and the route, never the address or the token', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write(chunk, _encoding, done) { lines.push(String(chunk)); done(); } }));
    const app = createApp({ ...t.service.deps, log });
    const response = await app.request('/subscribe', {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'req-abc.1' },
      body: JSON.stringify({ email: 'logged.person@example.org', list: 'news' }),
    });
    expect(response.headers.get('x-request-id')).toBe('req-abc.1');
    await app.request('/confirm/c2VjcmV0LXRva2Vu.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    const entries = lines.map((line) => JSON.parse(line));
    expect(entries).toContainEqual(expect.objectContaining({ req_id: 'req-abc.1', route: '/subscribe', status: 202, msg: 'request' }));
    expect(entries).toContainEqual(expect.objectContaining({ route: '/confirm/:token', status: 400 }));
    const all = lines.join('');
    expect(all).not.toContain('logged.person');
    expect(all).not.toContain('c2VjcmV0LXRva2Vu');
    expect((await app.request('/healthz')).headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('replace any address in a log line, even inside an error from elsewhere, by its keyed tag', () => {
    const lines: string[] = [];
    const config = { ...t.service.deps.config, logLevel: 'info' };
    const log = createLogger(config, new Writable({ write(chunk, _encoding, done) { lines.push(String(chunk)); done(); } }));
    const relayError = Object.assign(new Error('550 5.1.1 <Jürgen.Müller@bücher.example>: unknown'), { detail: 'Key (email)=(dup@example.org) exists' });
    log.warn({ err: relayError, to: 'plain@example.org' }, 'relay refused plain@example.org');
    const line = lines.join('');
    for (const address of ['Jürgen.Müller@bücher.example', 'dup@example.org', 'plain@example.org']) {
      expect(line).not.toContain(address);
      expect(line).toContain(addressTag(config.tokenSecrets![0]!, address));
    }
    expect(line).not.toMatch(/[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+\.[\p{L}\p{N}-]/u); // the error's message and its stack both held one
    // the tag is keyed: another secret gives another tag
    expect(addressTag('another-secret-0123456789abcdef0123456789', 'plain@example.org')).not.toBe(addressTag(config.tokenSecrets![0]!, 'plain@example.org'));
  });

  it('report the outbox and campaign queues in /metrics', async () => {
    await postJson(t.service, { email: 'queued.metrics@example.org', list: 'news' });
    const text = await (await t.service.app.request('/metrics')).text();
    const outbox = Number(/^assent_outbox_queued (\d+)$/m.exec(text)?.[1]);
    const { rows } = await t.tdb.query(`select count(*)::int as n from outbox where status = 'queued'`);
    expect(outbox).toBe(rows[0].n);
    expect(outbox).toBeGreaterThan(0);
    expect(text).toMatch(/^assent_campaign_queued 0$/m);
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

describe('who can read /metrics', () => {
  const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
  let tdb: TestDatabase;
  const running: Service[] = [];

  /** Production asks for the controller's settings (one warning each without): given here, so the warnings left are the metrics'. */
  const CONTROLLER = { CONTROLLER_NAME: 'Example Ltd', CONTROLLER_CONTACT: 'privacy@example.org', PRIVACY_URL: 'https://example.org/privacy' };

  /** `assent` listening for real, as in production, on a database of its own; its log lines kept. */
  async function listening(roles: Role[], env: Record<string, string> = {}) {
    tdb ??= await createTestDatabase();
    const config = testConfig({
      NODE_ENV: 'production', DATABASE_URL: tdb.url, SMTP_URL: t.smtp.url, PORT: '0', ...CONTROLLER, ...env,
    });
    const lines: string[] = [];
    const log = createLogger({ ...config, logLevel: 'info' }, new Writable({ write(chunk, _encoding, done) { lines.push(String(chunk)); done(); } }));
    const service = await startService(config, roles, log);
    running.push(service);
    const url = (server: Service['server'] | undefined) => server && `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    return { base: url(service.server)!, metricsBase: url(service.metricsServer), warnings: () => lines.filter((line) => JSON.parse(line).level === 40) };
  }
  const scrape = (base: string, token?: string) => fetch(`${base}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  afterAll(async () => {
    for (const service of running) await service.stop();
    await tdb?.drop();
  });

  it('in production without METRICS_PORT or METRICS_TOKEN, neither role serves /metrics, and one warning line says so', async () => {
    for (const role of ['serve', 'worker'] as const) {
      const { base, warnings } = await listening([role]);
      expect((await scrape(base)).status).toBe(404);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect(warnings()).toEqual([expect.stringContaining('GET /metrics is not served')]);
    }
  });

  it('with METRICS_PORT, /metrics is served there only, behind METRICS_TOKEN when set, with /healthz and /readyz on both ports', async () => {
    const { base, metricsBase, warnings } = await listening(['serve'], { METRICS_PORT: '0', METRICS_TOKEN });
    const json = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/api/v1/lists`, { method: 'POST', headers: json, body: JSON.stringify({ slug: 'scraped', name: 'Scraped', consent_text: 'Yes.' }) })).status).toBe(201);
    // A stranger signs up someone else's address on the public port, then tries to read what that did.
    const signup = await fetch(`${base}/subscribe`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'scraped@example.org' }) });
    expect(signup.status).toBe(202);
    expect((await scrape(base)).status).toBe(404);
    expect((await scrape(base, METRICS_TOKEN)).status).toBe(404);
    expect(metricsBase).toBeDefined();
    const refused = await scrape(metricsBase!);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await scrape(metricsBase!, 'metrics-token-0123456789abcdeX')).status).toBe(401);
    const scraped = await scrape(metricsBase!, METRICS_TOKEN);
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('assent_signups_total{outcome="accepted"} 1');
    for (const where of [base, metricsBase!]) {
      expect((await fetch(`${where}/healthz`)).status).toBe(200);
      expect((await fetch(`${where}/readyz`)).status).toBe(200);
    }
    expect((await fetch(`${metricsBase}/subscribe`, { method: 'POST' })).status).toBe(404);
    expect(warnings()).toEqual([]);
  });

  it('with METRICS_TOKEN alone, /metrics on the public port answers only the token, for either role', async () => {
    for (const role of ['serve', 'worker'] as const) {
      const { base, warnings } = await listening([role], { METRICS_TOKEN });
      expect((await scrape(base)).status).toBe(401);
      expect((await scrape(base, 'wrong')).status).toBe(401);
      expect((await scrape(base, METRICS_TOKEN)).status).toBe(200);
      expect(warnings()).toEqual([]);
    }
  });

  it('counts a signup for a confirmed address and one for a new address under the same label', async () => {
    const [id] = await seedConfirmed(t.tdb, 'news', 1, { prefix: 'labelled' });
    const { rows } = await t.tdb.query('select email from subscribers where id = $1', [id]);
    const read = async () => (await t.service.app.request('/metrics')).text();
    const signups = (text: string) => text.split('\n').filter((line) => line.startsWith('assent_signups_total{'));
    const before = await read();
    expect((await postJson(t.service, { email: rows[0].email, list: 'news' })).status).toBe(202);
    const afterConfirmed = await read();
    expect((await postJson(t.service, { email: 'label.new@example.org', list: 'news' })).status).toBe(202);
    const afterNew = await read();
    const moved = (from: string, to: string) => signups(to).filter((line) => !signups(from).includes(line)).map((line) => line.split(' ')[0]);
    expect(moved(before, afterConfirmed)).toEqual(['assent_signups_total{outcome="accepted"}']);
    expect(moved(afterConfirmed, afterNew)).toEqual(['assent_signups_total{outcome="accepted"}']);
  });
});

describe('who holds the data', () => {
  it('in production, a start without the controller settings says so, one warning line each', async () => {
    const tdb = await createTestDatabase();
    const lines: string[] = [];
    const config = testConfig({ NODE_ENV: 'production', DATABASE_URL: tdb.url, SMTP_URL: t.smtp.url, PORT: '0', METRICS_TOKEN: 'metrics-token-0123456789' });
    const log = createLogger({ ...config, logLevel: 'info' }, new Writable({ write(chunk, _encoding, done) { lines.push(String(chunk)); done(); } }));
    const service = await startService(config, ['serve'], log);
    try {
      const warnings = lines.map((line) => JSON.parse(line)).filter((line) => line.level === 40).map((line) => line.msg as string);
      expect(warnings).toEqual(['CONTROLLER_NAME', 'CONTROLLER_CONTACT', 'PRIVACY_URL'].map((name) => expect.stringMatching(new RegExp(`^${name} is not set`))));
    } finally {
      await service.stop();
      await tdb.drop();
    }
  });
});
