import { describe, expect, it } from 'vitest';
import { parseConfig, parseDuration, parseRateLimit } from '../src/config.js';

describe('configuration', () => {
  it('has working defaults in development', () => {
    const result = parseConfig({});
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config).toMatchObject({
      port: 3000, host: '127.0.0.1', databasePoolSize: 10, databaseStatementTimeoutMs: 5_000, publicUrl: 'http://localhost:3000', dataDir: './.data',
      mailFrom: 'assent <no-reply@localhost>', subscribeRateLimit: { count: 20, windowMs: 60_000 }, sendRate: 0, trustProxy: false,
      metricsPort: undefined, metricsToken: undefined, apiAuthFailureLimit: { count: 10, windowMs: 60_000 },
    });
    expect(Object.isFrozen(result.config)).toBe(true);
  });

  it('refuses production without its five variables, one clear line each', () => {
    const result = parseConfig({ NODE_ENV: 'production' });
    expect(result).toEqual({ ok: false, problems: [
      expect.stringMatching(/^DATABASE_URL is required/),
      expect.stringMatching(/^SMTP_URL is required/),
      expect.stringMatching(/^PUBLIC_URL is required/),
      expect.stringMatching(/^TOKEN_SECRETS is required/),
      expect.stringMatching(/^CONSENT_LOG_KEY is required/),
    ] });
    const http = parseConfig({ NODE_ENV: 'production', DATABASE_URL: 'postgres://db/x', SMTP_URL: 'smtp://relay:25',
      PUBLIC_URL: 'http://insecure.example', TOKEN_SECRETS: 'x'.repeat(32), CONSENT_LOG_KEY: Buffer.alloc(32, 7).toString('base64') });
    expect(http).toEqual({ ok: false, problems: ['PUBLIC_URL must be https:// in production'] });
  });

  it('names the variable that is wrong', () => {
    expect(parseConfig({ PORT: 'eighty' })).toMatchObject({ ok: false, problems: [expect.stringContaining('PORT')] });
    expect(parseConfig({ SUBSCRIBE_RATE_LIMIT: 'lots' })).toMatchObject({ ok: false, problems: [expect.stringContaining('SUBSCRIBE_RATE_LIMIT')] });
    expect(parseConfig({ TOKEN_SECRETS: 'short' })).toMatchObject({ ok: false, problems: [expect.stringContaining('TOKEN_SECRETS')] });
    expect(parseConfig({ DKIM_DOMAIN: 'example.org' })).toMatchObject({ ok: false, problems: [expect.stringContaining('DKIM')] });
    expect(parseConfig({ DATABASE_POOL_SIZE: '1' })).toMatchObject({ ok: false, problems: [expect.stringContaining('DATABASE_POOL_SIZE')] });
    expect(parseConfig({ DATABASE_POOL_SIZE: '25' })).toMatchObject({ ok: true, config: { databasePoolSize: 25 } });
    expect(parseConfig({ METRICS_PORT: 'nine' })).toMatchObject({ ok: false, problems: [expect.stringContaining('METRICS_PORT')] });
    expect(parseConfig({ PORT: '8080', METRICS_PORT: '8080' })).toMatchObject({ ok: false, problems: [expect.stringContaining('METRICS_PORT must differ from PORT')] });
    expect(parseConfig({ METRICS_TOKEN: 'short' })).toMatchObject({ ok: false, problems: [expect.stringContaining('METRICS_TOKEN')] });
    expect(parseConfig({ METRICS_PORT: '9100', METRICS_TOKEN: 'scrape-token-0123456789' }))
      .toMatchObject({ ok: true, config: { metricsPort: 9100, metricsToken: 'scrape-token-0123456789' } });
    expect(parseConfig({ API_AUTH_FAILURE_LIMIT: 'lots' })).toMatchObject({ ok: false, problems: [expect.stringContaining('API_AUTH_FAILURE_LIMIT')] });
    expect(parseConfig({ API_AUTH_FAILURE_LIMIT: '0' })).toMatchObject({ ok: true, config: { apiAuthFailureLimit: undefined } });
    expect(parseConfig({ DATABASE_STATEMENT_TIMEOUT: '5' })).toMatchObject({ ok: false, problems: [expect.stringContaining('DATABASE_STATEMENT_TIMEOUT')] });
    expect(parseConfig({ DATABASE_STATEMENT_TIMEOUT: '30s' })).toMatchObject({ ok: true, config: { databaseStatementTimeoutMs: 30_000 } });
  });

  it('reads rate limits', () => {
    expect(parseRateLimit('0')).toBeUndefined();
    expect(parseRateLimit('5/s')).toEqual({ count: 5, windowMs: 1000 });
    expect(parseRateLimit('100/10min')).toEqual({ count: 100, windowMs: 600_000 });
    expect(parseRateLimit('x')).toBeInstanceOf(Error);
  });

  it('reads durations, with their unit', () => {
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('750ms')).toBe(750);
    expect(parseDuration('5s')).toBe(5_000);
    expect(parseDuration('2min')).toBe(120_000);
    expect(parseDuration('5')).toBeInstanceOf(Error); // seconds or milliseconds? say which
    expect(parseDuration('-1s')).toBeInstanceOf(Error);
  });
});
