// Webhooks over real HTTP to a real receiver that verifies every call with the
// `standardwebhooks` package, as a customer's server would: signatures, payload contents
// (the fields the list collects, never the evidence), order per subscriber, retries with
// growing delays, disabling after three days, the delivery log, a hanging or resetting
// receiver that holds nobody up, SSRF refused when the endpoint is made and at delivery,
// and bad input.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WebhookWorker } from '../src/workers/webhooks.js';
import { useTestService } from './helpers/fixture.js';
import { confirmLink, createList, pathOf } from './helpers/http.js';
import { createTestService } from './helpers/service.js';
import { until } from './helpers/wait.js';

const t = useTestService({ smtp: true, lists: ['news'] });
const DAY = 24 * 3600_000;

interface Call {
  path: string;
  headers: IncomingHttpHeaders;
  body: { type: string; timestamp: string; data: Record<string, unknown> };
  raw: string;
  /** What `standardwebhooks` said: null when the signature verified. */
  verifyError: string | null;
}

/** The customer's server: answers by path, and checks each call's signature with the library. */
class Receiver {
  readonly calls: Call[] = [];
  readonly secrets = new Map<string, string>();
  /** path -> how to answer: a status, 'hang' (never), 'reset' (close the socket). */
  readonly behaviour = new Map<string, number | 'hang' | 'reset' | ((call: Call) => number)>();
  private server!: Server;

  async start(): Promise<this> {
    this.server = createServer((request, response) => {
      let raw = '';
      request.on('data', (chunk: Buffer) => { raw += chunk.toString('utf8'); });
      request.on('end', () => {
        const path = request.url ?? '/';
        let verifyError: string | null = null;
        try {
          new Webhook(this.secrets.get(path) ?? 'whsec_AAAA').verify(raw, request.headers as Record<string, string>);
        } catch (error) {
          verifyError = String(error);
        }
        const call: Call = { path, headers: request.headers, body: JSON.parse(raw) as Call['body'], raw, verifyError };
        this.calls.push(call);
        const how = this.behaviour.get(path) ?? 200;
        if (how === 'hang') return;
        if (how === 'reset') { request.socket.destroy(); return; }
        response.statusCode = typeof how === 'function' ? how(call) : how;
        response.end('ok');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}${path}`;
  }

  to(path: string): Call[] {
    return this.calls.filter((call) => call.path === path);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

const receiver = new Receiver();
let worker: WebhookWorker;

beforeAll(async () => {
  await receiver.start();
  // The receiver checks webhook-timestamp against its own clock (5 minutes' tolerance).
  t.service.clock.now = Date.now();
});
beforeEach(() => {
  worker = new WebhookWorker(t.service.deps, { pollMs: 20, timeoutMs: 1_000 });
});
afterEach(async () => {
  await worker.stop();
  await t.tdb.query('delete from webhook_endpoints');
});
afterAll(() => receiver.stop());

async function addWebhook(path: string, body: Record<string, unknown> = {}) {
  const response = await t.service.api('POST', '/api/v1/webhooks', {
    url: receiver.url(path), events: ['subscription.requested', 'subscription.confirmed', 'subscription.unsubscribed', 'subscriber.erased'], ...body,
  });
  expect(response.status, await response.clone().text()).toBe(201);
  const endpoint = await response.json() as { id: string; secret: string };
  receiver.secrets.set(path, endpoint.secret);
  return endpoint;
}

const signup = (email: string, extra: Record<string, unknown> = {}) =>
  t.service.api('POST', '/api/v1/subscribers', { email, list: 'news', ...extra });

/** One round of the worker, and every call it started answered. */
async function deliver(): Promise<void> {
  await worker.runOnce();
  await worker.settle();
}

describe('webhook endpoints', () => {
  it('are made with a secret shown once, listed without it, and deleted', async () => {
    const endpoint = await addWebhook('/crud');
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const listed = await (await t.service.api('GET', '/api/v1/webhooks')).json() as { data: Record<string, unknown>[] };
    expect(listed.data).toEqual([expect.objectContaining({ id: endpoint.id, url: receiver.url('/crud'), status: 'enabled', lists: null })]);
    expect(JSON.stringify(listed)).not.toContain(endpoint.secret);
    expect((await t.service.api('DELETE', `/api/v1/webhooks/${endpoint.id}`)).status).toBe(204);
    expect((await t.service.api('DELETE', `/api/v1/webhooks/${endpoint.id}`)).status).toBe(404);
    expect((await t.service.api('GET', '/api/v1/webhooks/not-a-uuid/deliveries')).status).toBe(404);
  });
});

describe('a delivery', () => {
  it('is signed as Standard Webhooks says, and carries only what the list collects, never the evidence', async () => {
    await addWebhook('/signed');
    await signup('hook@example.org', { first_name: 'Ada', ip: '203.0.113.7', user_agent: 'UA-Secret', page: 'https://www.example.com/secret-page' });
    await deliver();
    const [requested] = receiver.to('/signed');
    expect(requested!.verifyError).toBeNull();
    expect(requested!.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(requested!.headers['webhook-id']).toMatch(/^msg_\d+$/);
    expect(requested!.body).toEqual({
      type: 'subscription.requested', timestamp: expect.any(String),
      data: { subscriber_id: expect.any(String), event_id: expect.any(String), list: 'news', email: 'hook@example.org' },
    });

    const since = t.smtp.received.length;
    await t.service.worker.runOnce();
    const mail = await t.smtp.waitForMailTo('hook@example.org', since);
    await t.service.app.request(pathOf(confirmLink(mail.parsed.text)), { method: 'POST', headers: { 'user-agent': 'UA-Secret' } });
    await deliver();
    const confirmed = receiver.to('/signed')[1]!;
    expect(confirmed.verifyError).toBeNull();
    expect(confirmed.body.type).toBe('subscription.confirmed');
    expect(confirmed.body.data).toMatchObject({ list: 'news', email: 'hook@example.org', first_name: 'Ada' });
    for (const call of receiver.to('/signed')) {
      for (const secret of ['203.0.113.7', 'UA-Secret', 'secret-page', 'Send me news', 'token', 'evidence']) expect(call.raw).not.toContain(secret);
    }
  });

  it('fails verification when the body is altered: the receiver can tell', async () => {
    const endpoint = await addWebhook('/tamper');
    await signup('tamper@example.org');
    await deliver();
    const [call] = receiver.to('/tamper');
    expect(call!.verifyError).toBeNull();
    const altered = call!.raw.replace('tamper@example.org', 'other@example.org');
    expect(() => new Webhook(endpoint.secret).verify(altered, call!.headers as Record<string, string>)).toThrow();
  });

  it('leaves out the names of a list that does not collect them, and sends an erasure without the address', async () => {
    await createList(t.service, 'nameless', { fields: [] });
    await addWebhook('/nameless', { lists: ['nameless'] });
    await signup('plain@example.org', { list: 'nameless', first_name: 'Grace' });
    await signup('elsewhere@example.org', { first_name: 'Other' }); // on news: not this endpoint's list
    await deliver();
    expect(receiver.to('/nameless').map((call) => call.body.data.email)).toEqual(['plain@example.org']);
    const id = receiver.to('/nameless')[0]!.body.data.subscriber_id as string;
    expect((await t.service.api('DELETE', `/api/v1/subscribers/${id}`)).status).toBe(204);
    await deliver();
    const erased = receiver.to('/nameless')[1]!;
    expect(erased.body).toMatchObject({ type: 'subscriber.erased', data: { subscriber_id: id } });
    expect(erased.body.data.email).toBeUndefined();
    expect(erased.verifyError).toBeNull();
  });
});

describe('order, retries and disabling', () => {
  it('keeps each subscriber\'s events in order while a failed one waits, and lets others pass', async () => {
    await addWebhook('/order');
    await signup('first@example.org');
    await signup('second@example.org');
    const first = (await t.tdb.query(`select id from subscribers where email = 'first@example.org'`)).rows[0].id as string;
    let failFirst = true;
    receiver.behaviour.set('/order', (call) => {
      if (failFirst && call.body.data.subscriber_id === first) { failFirst = false; return 500; }
      return 204;
    });
    await t.service.api('DELETE', `/api/v1/subscribers/${first}`); // a second event for first@, behind the failed one
    await deliver();
    // first@'s request failed; its erasure waits behind it; second@ went through.
    expect(receiver.to('/order').map((call) => [call.body.type, call.body.data.subscriber_id === first])).toEqual([
      ['subscription.requested', true], ['subscription.requested', false],
    ]);
    await deliver();
    expect(receiver.to('/order'), 'not due yet: the retry waits 5 s').toHaveLength(2);
    t.service.clock.advance(5_000);
    await deliver(); // the retry of first@'s request …
    await deliver(); // … and only after it, the erasure
    const forFirst = receiver.to('/order').filter((call) => call.body.data.subscriber_id === first).map((call) => call.body.type);
    expect(forFirst).toEqual(['subscription.requested', 'subscription.requested', 'subscriber.erased']);
    t.service.clock.now = Date.now();
  });

  it('retries with growing delays, is disabled after three days of failing, and logs every attempt', async () => {
    const endpoint = await addWebhook('/down');
    receiver.behaviour.set('/down', 500);
    await signup('retry@example.org');
    const start = t.service.clock.now;
    await deliver();
    const attemptTimes = [t.service.clock.now];
    // Step through time a minute at a time for the first hour, and note when each attempt came.
    for (let minute = 0; minute < 60; minute += 1) {
      t.service.clock.advance(5_000);
      const before = receiver.to('/down').length;
      await deliver();
      if (receiver.to('/down').length > before) attemptTimes.push(t.service.clock.now);
    }
    const gaps = attemptTimes.slice(1).map((time, i) => time - attemptTimes[i]!);
    expect(gaps.slice(0, 5)).toEqual([5_000, 10_000, 20_000, 40_000, 80_000]);
    let status = await (await t.service.api('GET', '/api/v1/webhooks')).json() as { data: { status: string }[] };
    expect(status.data[0]!.status).toBe('failing');

    t.service.clock.now = start + 3 * DAY + 1_000;
    await deliver();
    status = await (await t.service.api('GET', '/api/v1/webhooks')).json() as { data: { status: string; disabled_at: string | null }[] };
    expect(status.data[0]).toMatchObject({ status: 'disabled', disabled_at: expect.any(String) });
    const calls = receiver.to('/down').length;
    await signup('after-disable@example.org');
    t.service.clock.advance(DAY);
    await deliver();
    expect(receiver.to('/down')).toHaveLength(calls);

    const log = await (await t.service.api('GET', `/api/v1/webhooks/${endpoint.id}/deliveries`)).json() as { data: Record<string, unknown>[] };
    expect(log.data).toHaveLength(calls);
    expect(log.data[0]).toMatchObject({ type: 'subscription.requested', response_status: 500, delivery_status: 'failed', attempted_at: expect.any(String) });
    t.service.clock.now = Date.now();
  });

  it('gets a success after failures: the endpoint is healthy again and the delivery logged as delivered', async () => {
    const endpoint = await addWebhook('/flaky');
    let failures = 2;
    receiver.behaviour.set('/flaky', () => (failures-- > 0 ? 503 : 200));
    await signup('flaky@example.org');
    for (let i = 0; i < 3; i += 1) {
      await deliver();
      t.service.clock.advance(60_000);
    }
    const log = await (await t.service.api('GET', `/api/v1/webhooks/${endpoint.id}/deliveries`)).json() as { data: { response_status: number; delivery_status: string }[] };
    expect(log.data.map((a) => a.response_status)).toEqual([200, 503, 503]);
    expect(log.data.every((a) => a.delivery_status === 'delivered')).toBe(true);
    const listed = await (await t.service.api('GET', '/api/v1/webhooks')).json() as { data: { status: string }[] };
    expect(listed.data[0]!.status).toBe('enabled');
    t.service.clock.now = Date.now();
  });
});

describe('a receiver that hangs or resets', () => {
  it('gets retries and holds up neither other endpoints nor signups', async () => {
    const hang = await addWebhook('/hang');
    const reset = await addWebhook('/reset');
    await addWebhook('/fine');
    receiver.behaviour.set('/hang', 'hang');
    receiver.behaviour.set('/reset', 'reset');
    worker.start();
    const started = Date.now();
    for (let i = 0; i < 3; i += 1) {
      const answer = await signup(`busy${i}@example.org`);
      expect(answer.status).toBe(202);
    }
    // The fine endpoint has all three well before the hanging one's first call times out (1 s here, 10 s in service).
    await until('the fine endpoint got every event', () => receiver.to('/fine').length >= 3, 5_000);
    expect(Date.now() - started).toBeLessThan(1_000);
    await until('the hanging call timed out and was logged', async () => {
      const log = await (await t.service.api('GET', `/api/v1/webhooks/${hang.id}/deliveries`)).json() as { data: { error: string | null }[] };
      return log.data.some((a) => a.error?.includes('no answer within'));
    }, 5_000);
    const resetLog = await (await t.service.api('GET', `/api/v1/webhooks/${reset.id}/deliveries`)).json() as { data: { error: string | null; response_status: number | null }[] };
    expect(resetLog.data.length).toBeGreaterThan(0);
    expect(resetLog.data[0]).toMatchObject({ response_status: null, error: expect.stringMatching(/socket hang up|ECONNRESET/) });
    const { rows } = await t.tdb.query(`select status, attempts from webhook_deliveries where endpoint_id = $1`, [hang.id]);
    expect(rows.every((row) => row.status === 'pending' && row.attempts >= 1)).toBe(true);
  });
});

describe('refused input', () => {
  it('answers 422 for a URL that is not http(s), 400 for bad events, 404 for an unknown list, and makes nothing', async () => {
    const cases: [Record<string, unknown>, number][] = [
      [{ url: 'ftp://example.org/hook', events: ['subscription.confirmed'] }, 422],
      [{ url: 'file:///etc/passwd', events: ['subscription.confirmed'] }, 422],
      [{ url: 'not a url', events: ['subscription.confirmed'] }, 422],
      [{ url: 'https://user:pw@example.org/', events: ['subscription.confirmed'] }, 422],
      [{ url: 'https://example.org/', events: [] }, 400],
      [{ url: 'https://example.org/', events: ['subscription.stolen'] }, 400],
      [{ url: 'https://example.org/', events: ['subscription.confirmed'], secret: 'mine' }, 400],
      [{ url: 'https://example.org/', events: ['subscription.confirmed'], lists: ['nope'] }, 404],
    ];
    for (const [body, status] of cases) {
      const response = await t.service.api('POST', '/api/v1/webhooks', body);
      expect(response.status, JSON.stringify(body)).toBe(status);
      expect(await response.json()).toMatchObject({ error: { code: expect.any(String) } });
    }
    expect((await t.tdb.query('select count(*)::int as n from webhook_endpoints')).rows[0].n).toBe(0);
  });

  it('refuses private, loopback and link-local URLs in production with 422, unless WEBHOOK_ALLOW_PRIVATE', async () => {
    const production = { NODE_ENV: 'production', DATABASE_URL: t.tdb.url, SMTP_URL: t.smtp.url };
    const strict = await createTestService(t.tdb.db, { env: production });
    const allowing = await createTestService(t.tdb.db, { env: { ...production, WEBHOOK_ALLOW_PRIVATE: '1' } });
    try {
      for (const url of ['http://127.0.0.1:8080/', 'http://localhost/', 'http://[::1]/', 'http://169.254.169.254/latest/meta-data',
        'http://10.1.2.3/', 'http://192.168.0.10/', 'http://[::ffff:127.0.0.1]/', 'http://0.0.0.0/', 'http://[fe80::1]/']) {
        const response = await strict.api('POST', '/api/v1/webhooks', { url, events: ['subscription.confirmed'] });
        expect(response.status, url).toBe(422);
        expect(await response.json()).toMatchObject({ error: { code: 'webhook_url_refused', fields: { url: expect.any(String) } } });
      }
      expect((await t.tdb.query('select count(*)::int as n from webhook_endpoints')).rows[0].n).toBe(0);
      const allowed = await allowing.api('POST', '/api/v1/webhooks', { url: 'http://127.0.0.1:8080/', events: ['subscription.confirmed'] });
      expect(allowed.status).toBe(201);
    } finally {
      strict.close();
      allowing.close();
    }
  });

  it('refuses at delivery time too: an endpoint that reaches a private address gets no call', async () => {
    await addWebhook('/literal');
    const byName = await t.service.api('POST', '/api/v1/webhooks', {
      url: receiver.url('/by-name').replace('127.0.0.1', 'localhost'), events: ['subscription.requested'],
    });
    expect(byName.status).toBe(201);
    const production = { ...t.service.deps, config: { ...t.service.deps.config, webhookAllowPrivate: false } };
    const strictWorker = new WebhookWorker(production, { pollMs: 20, timeoutMs: 1_000 });
    await signup('ssrf@example.org');
    await strictWorker.runOnce();
    await strictWorker.settle();
    expect(receiver.to('/literal')).toHaveLength(0);
    expect(receiver.to('/by-name')).toHaveLength(0);
    const { rows } = await t.tdb.query(`select error from webhook_attempts order by id`);
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.error).toMatch(/^refused: .*private, loopback or link-local/);
    await strictWorker.stop();
  });
});
