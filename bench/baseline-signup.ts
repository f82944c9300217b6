// The signup baseline: the least a JSON signup endpoint on this stack can do. A bare Hono
// route on @hono/node-server, the same pool (createDatabase) on the same database, one
// transaction with one INSERT. What the service does beyond this (validation, the consent
// event and its evidence, the rendered confirmation mail, the throttles, logs and metrics)
// is what the ratio prices.
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { sql } from 'kysely';
import { createDatabase } from '../src/db/database.js';

const db = createDatabase(process.env.DATABASE_URL!);
await sql`create table if not exists bench_baseline_signups (
  id bigint generated always as identity primary key,
  email text not null unique,
  list text not null,
  created_at timestamptz not null default now()
)`.execute(db);

const app = new Hono();
app.post('/subscribe', async (c) => {
  const body = await c.req.json<{ email?: unknown; list?: unknown }>();
  if (typeof body.email !== 'string' || typeof body.list !== 'string') return c.json({ error: 'bad request' }, 400);
  const { email, list } = body;
  await db.transaction().execute(async (trx) => {
    await sql`insert into bench_baseline_signups (email, list) values (${email}, ${list})`.execute(trx);
  });
  return c.json({ status: 'pending' }, 202);
});

const server = serve({ fetch: app.fetch, port: Number(process.env.PORT), hostname: '127.0.0.1' }, () => process.send!({ ready: true }));
process.on('SIGTERM', () => server.close(() => { void db.destroy().then(() => process.exit(0)); }));
