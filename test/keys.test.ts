// API keys: argon2id-hashed, found by prefix, remembered briefly, revocable; and the
// Idempotency-Key replay. Keys never reach the logs.
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.js';
import { createApiKey, VERIFIED_KEY_TTL_MS } from '../src/keys/keys.js';
import { revokeApiKey } from '../src/keys/store.js';
import { useTestService } from './helpers/fixture.js';
import { API_KEY, createTestService } from './helpers/service.js';

const t = useTestService({ lists: ['news'] });

const call = (key: string, method = 'GET', path = '/api/v1/lists', body?: unknown, headers: Record<string, string> = {}) =>
  t.service.app.request(path, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });

describe('API keys', () => {
  it('are stored as an argon2id hash with a public prefix, and work over the API', async () => {
    const created = await createApiKey(t.tdb.db, 'newsletter script');
    expect(created.key).toMatch(/^as_[a-z0-9]{10}_[A-Za-z0-9_-]{43}$/);
    const { rows } = await t.tdb.query('select name, prefix, secret_hash from api_keys where id = $1', [created.id]);
    expect(rows[0]).toMatchObject({ name: 'newsletter script', prefix: created.prefix, secret_hash: expect.stringMatching(/^\$argon2id\$/) });
    expect(JSON.stringify(rows)).not.toContain(created.key.slice('as_'.length + 10 + 1)); // the secret: it may itself hold '_'
    expect((await call(created.key)).status).toBe(200);
  });

  it('refuse a wrong secret behind a real prefix, and a malformed key', async () => {
    const created = await createApiKey(t.tdb.db, 'other');
    const wrong = `as_${created.prefix}_${'A'.repeat(43)}`;
    expect((await call(wrong)).status).toBe(401);
    expect((await call('as_short')).status).toBe(401);
  });

  it('keep last_used_at without writing it on every request', async () => {
    const created = await createApiKey(t.tdb.db, 'busy');
    for (let i = 0; i < 5; i += 1) expect((await call(created.key)).status).toBe(200);
    const deadline = Date.now() + 5_000;
    let lastUsed: Date | null = null;
    while (!lastUsed && Date.now() < deadline) {
      lastUsed = (await t.tdb.query('select last_used_at from api_keys where id = $1', [created.id])).rows[0].last_used_at;
    }
    expect(lastUsed).toBeInstanceOf(Date);
    await t.tdb.query('update api_keys set last_used_at = null where id = $1', [created.id]);
    await call(created.key);
    expect((await t.tdb.query('select last_used_at from api_keys where id = $1', [created.id])).rows[0].last_used_at).toBeNull();
  });

  it('stop working once revoked, within the verified-key memory at most', async () => {
    const created = await createApiKey(t.tdb.db, 'leaked');
    expect((await call(created.key)).status).toBe(200);
    expect(await revokeApiKey(t.tdb.db, created.prefix)).toBe(true);
    // a fresh process has nothing remembered: refused at once
    const fresh = createApp(t.service.deps);
    expect((await fresh.request('/api/v1/lists', { headers: { authorization: `Bearer ${created.key}` } })).status).toBe(401);
    // this one remembered it; past the memory's time it is refused too
    t.service.clock.advance(VERIFIED_KEY_TTL_MS + 1);
    expect((await call(created.key)).status).toBe(401);
  });
});

describe('failed authentications', () => {
  it('past API_AUTH_FAILURE_LIMIT a client gets 429 with Retry-After, and no key is verified for it, until it may try again', async () => {
    const limited = await createTestService(t.tdb.db, { env: { API_AUTH_FAILURE_LIMIT: '3/min' } });
    try {
      const from = (ip: string, key: string) => limited.app.request('/api/v1/lists', { headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': ip } });
      const busy = await createApiKey(t.tdb.db, 'busy script');
      const fresh = await createApiKey(t.tdb.db, 'fresh script');
      const guess = `as_${fresh.prefix}_${'G'.repeat(43)}`; // a real prefix: each guess would cost argon2
      // Successes never count: a busy honest client keeps every try for its mistakes.
      for (let i = 0; i < 10; i += 1) expect((await from('198.51.100.7', busy.key)).status).toBe(200);
      for (let i = 0; i < 3; i += 1) expect((await from('198.51.100.7', guess)).status).toBe(401);
      const refused = await from('198.51.100.7', guess);
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect((await refused.json()).error.code).toBe('rate_limited');
      // The right key, never verified here, is refused too: nothing is verified for this client now.
      expect((await from('198.51.100.7', fresh.key)).status).toBe(429);
      // A key this process verified lately, and the environment's key, need no argon2 and still pass.
      expect((await from('198.51.100.7', busy.key)).status).toBe(200);
      expect((await from('198.51.100.7', API_KEY)).status).toBe(200);
      // Another client is not affected.
      expect((await from('198.51.100.8', guess)).status).toBe(401);
      limited.clock.advance(Number(refused.headers.get('retry-after')) * 1000);
      expect((await from('198.51.100.7', fresh.key)).status).toBe(200);
    } finally {
      limited.close();
    }
  });
});

describe('Idempotency-Key', () => {
  it('returns the first answer to a retry, and 422 for the same key with another body', async () => {
    const body = { slug: 'idem', name: 'Idem', consent_text: 'Yes.' };
    const first = await call('test-api-key-0123456789abcdef', 'POST', '/api/v1/lists', body, { 'idempotency-key': 'k-1' });
    expect(first.status).toBe(201);
    const firstBody = await first.text();
    const retry = await call('test-api-key-0123456789abcdef', 'POST', '/api/v1/lists', body, { 'idempotency-key': 'k-1' });
    expect(retry.status).toBe(201);
    expect(await retry.text()).toBe(firstBody);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    // without the key the same POST is a new request: the slug is taken
    expect((await call('test-api-key-0123456789abcdef', 'POST', '/api/v1/lists', body)).status).toBe(409);
    const other = await call('test-api-key-0123456789abcdef', 'POST', '/api/v1/lists', { ...body, slug: 'idem2' }, { 'idempotency-key': 'k-1' });
    expect(other.status).toBe(422);
    expect((await other.json()).error.code).toBe('idempotency_key_reused');
    const { rows } = await t.tdb.query(`select count(*)::int as n from lists where slug like 'idem%'`);
    expect(rows[0].n).toBe(1);
  });

  it('keeps keys apart per API key', async () => {
    const created = await createApiKey(t.tdb.db, 'second');
    const body = { slug: 'per-key', name: 'Per key', consent_text: 'Yes.' };
    expect((await call('test-api-key-0123456789abcdef', 'POST', '/api/v1/lists', body, { 'idempotency-key': 'shared' })).status).toBe(201);
    expect((await call(created.key, 'POST', '/api/v1/lists', body, { 'idempotency-key': 'shared' })).status).toBe(409);
  });
});

describe('logs', () => {
  it('never contain a key, right or wrong', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk, _encoding, done) { lines.push(String(chunk)); done(); } });
    const log = pino({ level: 'trace' }, sink);
    const app = createApp({ ...t.service.deps, log });
    const created = await createApiKey(t.tdb.db, 'logged');
    for (const key of [created.key, 'as_0123456789_wrongwrongwrongwrongwrongwrongwrongwrongwro', 'test-api-key-0123456789abcdef']) {
      await app.request('/api/v1/lists', { headers: { authorization: `Bearer ${key}` } });
      await app.request('/api/v1/nope', { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: '{' });
    }
    const all = lines.join('');
    expect(all).not.toContain(created.key.slice(14));
    expect(all).not.toContain('wrongwrong');
    expect(all).not.toContain('test-api-key');
  });
});

describe('API docs', () => {
  it('serves a readable page listing every call', async () => {
    const response = await t.service.app.request('/api/docs');
    expect(response.status).toBe(200);
    const html = await response.text();
    for (const call of ['POST /api/v1/lists', 'GET /api/v1/subscribers', 'GET /api/v1/subscribers/{id}/consent', 'DELETE /api/v1/subscribers/{id}']) {
      expect(html).toContain(call);
    }
  });
});
