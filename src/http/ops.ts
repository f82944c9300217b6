// Operations: liveness, readiness (the database answers) and Prometheus metrics.
import { Hono } from 'hono';
import { sql } from 'kysely';
import type { Deps } from '../deps.js';

export function opsApp(deps: Pick<Deps, 'db' | 'metrics'>): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    try {
      await sql`select 1`.execute(deps.db);
      return c.json({ status: 'ready' });
    } catch {
      return c.json({ status: 'unavailable', reason: 'database unreachable' }, 503);
    }
  });
  app.get('/metrics', async (c) =>
    c.body(await deps.metrics.registry.metrics(), 200, { 'content-type': deps.metrics.registry.contentType }));
  return app;
}
