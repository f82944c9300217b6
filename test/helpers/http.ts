import type { TestDatabase } from './db.js';
import type { TestService } from './service.js';

let nextIp = 1;
/** A client address of its own per call, so the per-IP limit only bites where a test wants it. */
export function freshIp(): string {
  nextIp += 1;
  return `198.51.100.${nextIp % 250}`;
}

export function postForm(service: TestService, fields: Record<string, string>, headers: Record<string, string> = {}) {
  return service.app.request('/subscribe', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': freshIp(), ...headers },
    body: new URLSearchParams(fields).toString(),
  });
}

export function postJson(service: TestService, body: unknown, headers: Record<string, string> = {}) {
  return service.app.request('/subscribe', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': freshIp(), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Everything a signup or confirmation could change, to show that a refused request changed nothing. */
export async function snapshot(tdb: TestDatabase): Promise<unknown> {
  const { rows } = await tdb.query(`
    select (select coalesce(json_agg(s order by id), '[]') from subscribers s) as subscribers,
           (select coalesce(json_agg(x order by subscriber_id, list_id), '[]') from subscriptions x) as subscriptions,
           (select count(*) from consent_events) as events,
           (select count(*) from consent_evidence) as evidence,
           (select count(*) from affinity_events) as affinity,
           (select count(*) from outbox) as outbox,
           (select coalesce(json_agg(l order by id), '[]') from lists l) as lists`);
  return rows[0];
}

export async function createList(service: TestService, slug = 'news', extra: Record<string, unknown> = {}) {
  const response = await service.api('POST', '/api/v1/lists', {
    slug, name: `The ${slug}`, consent_text: `Send me ${slug} by mail, about once a week.`, ...extra,
  });
  if (response.status !== 201) throw new Error(`list not created: ${response.status} ${await response.text()}`);
  return response.json() as Promise<{ slug: string; consent_version: number }>;
}

/** The confirm link in a mail's text part. */
export function confirmLink(text: string | undefined): string {
  const match = /https:\/\/assent\.test\/confirm\/[A-Za-z0-9_.-]+/.exec(text ?? '');
  if (!match) throw new Error(`no confirm link in: ${text}`);
  return match[0];
}

export const pathOf = (url: string) => new URL(url).pathname;

/**
 * Confirmed subscribers made in SQL, as a past of real signups would leave them (subscription
 * confirmed, affinity recorded): campaign tests need hundreds, and signup is tested elsewhere.
 */
export async function seedConfirmed(tdb: TestDatabase, list: string, count: number, options: {
  prefix?: string; level?: 'confirmed' | 'known' | 'engaged'; firstName?: string;
} = {}): Promise<string[]> {
  const { rows } = await tdb.query<{ id: string }>(`
    with people as (
      insert into subscribers (email, first_name, locale)
      select $2 || n || '@example.org', $4, 'en' from generate_series(1, $3::int) n
      returning id
    ), subscribed as (
      insert into subscriptions (subscriber_id, list_id, status, consent_version, confirmed_at)
      select id, (select id from lists where slug = $1), 'confirmed', 1, now() from people
    ), affinity as (
      insert into affinity_events (subscriber_id, level, reason)
      select id, v.level, v.reason from people
      cross join (values (1, 'confirmed', 'confirmed a signup'), (2, $5, 'test')) v(step, level, reason)
      where v.step = 1 or $5 <> 'confirmed'
      order by v.step
    )
    select id from people`, [list, options.prefix ?? 'seed', count, options.firstName ?? null, options.level ?? 'confirmed']);
  return rows.map((row) => row.id);
}

/**
 * A digest of every row of every table (migrations' bookkeeping aside): equal before and
 * after a request means the request wrote nothing anywhere, whichever table it could reach.
 */
export async function snapshotAllTables(tdb: TestDatabase): Promise<Record<string, string>> {
  const { rows: tables } = await tdb.query<{ name: string }>(`
    select quote_ident(tablename) as name from pg_tables where schemaname = 'public' and tablename not like 'kysely_%' order by 1`);
  const { rows } = await tdb.query<{ name: string; digest: string }>(tables.map(({ name }) =>
    `select '${name}' as name, count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as digest from ${name} t`)
    .join(' union all '));
  return Object.fromEntries(rows.map((row) => [row.name, row.digest]));
}
