// Operations: liveness, readiness (the database answers) and Prometheus metrics.
//
// Metrics say what happened to addresses: a signup for a new address moves the confirmation
// mail counter and the outbox gauge, one for a confirmed address moves neither, so a
// stranger who can scrape between two signups learns who subscribes (issue 15). No choice
// of labels hides that; only keeping the scrape out of the public's reach does. So /metrics
// is served on METRICS_PORT when set (and then never on PORT), behind METRICS_TOKEN wherever
// it is served, and in production on PORT only with a token. Development keeps the
// contract's open /metrics on PORT, which binds 127.0.0.1 by default.
import { Hono, type MiddlewareHandler } from 'hono';
import type { Config } from '../config.js';
import { pingDatabase } from '../db/database.js';
import type { Deps } from '../deps.js';
import { secretMatcher } from '../keys/keys.js';

/** Whether PORT, the public's port, serves /metrics. */
export function metricsOnPublicPort(config: Pick<Config, 'nodeEnv' | 'metricsPort' | 'metricsToken'>): boolean {
  if (config.metricsPort !== undefined) return false;
  return config.metricsToken !== undefined || config.nodeEnv !== 'production';
}

/** 401 unless `Authorization: Bearer <METRICS_TOKEN>`, when a token is set. */
function requireToken(token: string | undefined): MiddlewareHandler {
  const isToken = token === undefined ? undefined : secretMatcher(token);
  return async (c, next) => {
    const presented = /^Bearer\s+(\S{1,512})\s*$/i.exec(c.req.header('authorization') ?? '')?.[1];
    if (isToken && !(presented !== undefined && isToken(presented))) {
      // Answered here, not thrown: on METRICS_PORT this app stands alone, without the main error handler.
      c.header('WWW-Authenticate', 'Bearer realm="assent metrics"');
      return c.json({ error: { code: 'unauthorized', message: 'the metrics token is required: Authorization: Bearer <METRICS_TOKEN>' } }, 401);
    }
    await next();
  };
}

export function opsApp(deps: Pick<Deps, 'db' | 'metrics' | 'config' | 'consentLog'>, options: { metrics: boolean }): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    try {
      await pingDatabase(deps.db);
      // A halted consent log is an alarm for a person, not a reason to refuse traffic: signups
      // and withdrawals go on being recorded, and enter the log once it is sound again.
      const halted = await deps.consentLog.halted();
      return c.json({ status: 'ready', consent_log: halted ? { status: 'halted', reason: halted.reason, since: halted.at } : { status: 'signing' } });
    } catch {
      return c.json({ status: 'unavailable', reason: 'database unreachable' }, 503);
    }
  });
  if (options.metrics) {
    app.get('/metrics', requireToken(deps.config.metricsToken), async (c) =>
      c.body(await deps.metrics.registry.metrics(), 200, { 'content-type': deps.metrics.registry.contentType }));
  }
  return app;
}
