// The campaigns module's SQL: one exported function per statement.
import { sql } from 'kysely';
import { anyOf, type Database, type Trx } from '../db/database.js';
import { reconsentFromSql } from '../lists/store.js';
import { AFFINITY_LEVELS, type AffinityLevel, type CampaignStatus, MESSAGE_STATUSES, type MessageStatus } from '../domain.js';

type Db = Database | Trx;

const campaignColumns = ['c.id', 'c.name', 'l.slug as list', 'l.name as list_name', 'c.list_id', 'c.subject', 'c.min_affinity', 'c.status',
  'c.created_at', 'c.send_at', 'c.sending_at', 'c.finished_at', 'c.segment', 'c.paused_reason'] as const;

export async function insertCampaign(db: Db, campaign: {
  name: string; listId: string; subject: string; mjml: string; htmlTemplate: string; textTemplate: string; minAffinity: AffinityLevel;
  sendAt?: Date | undefined; segment?: Segment | undefined;
}): Promise<string> {
  const row = await db.insertInto('campaigns').values({
    name: campaign.name, list_id: campaign.listId, subject: campaign.subject, mjml: campaign.mjml,
    html_template: campaign.htmlTemplate, text_template: campaign.textTemplate, min_affinity: campaign.minAffinity,
    ...(campaign.sendAt && { status: 'scheduled', send_at: campaign.sendAt }),
    ...(campaign.segment && { segment: JSON.stringify(campaign.segment) }),
  }).returning('id').executeTakeFirstOrThrow();
  return row.id;
}

export async function findCampaign(db: Db, id: string) {
  return db.selectFrom('campaigns as c').innerJoin('lists as l', 'l.id', 'c.list_id')
    .select(campaignColumns).where('c.id', '=', id).executeTakeFirst();
}

/** Newest first, keyset on id. */
export async function listCampaigns(db: Db, options: { before?: string | undefined; limit: number }) {
  return db.selectFrom('campaigns as c').innerJoin('lists as l', 'l.id', 'c.list_id')
    .select(campaignColumns)
    .$if(options.before !== undefined, (q) => q.where('c.id', '<', options.before!))
    .orderBy('c.id', 'desc').limit(options.limit + 1).execute();
}

/** What rendering needs: the templates and the list (the preview and the sender both). */
export async function findCampaignTemplates(db: Db, id: string) {
  return db.selectFrom('campaigns as c').innerJoin('lists as l', 'l.id', 'c.list_id')
    .select(['c.id', 'c.subject', 'c.html_template', 'c.text_template', 'c.list_id', 'l.slug as list_slug', 'l.name as list_name'])
    .where('c.id', '=', id).executeTakeFirst();
}

export type MessageCounts = Record<MessageStatus, number>;

/**
 * Messages by status, per campaign. One aggregate row per campaign with a filtered count per
 * status: grouping by status as well made PostgreSQL sort every message first (spilling to
 * disk at a million), and took 2–3 times as long (npm run bench).
 */
export async function countMessages(db: Db, campaignIds: string[]): Promise<Map<string, MessageCounts>> {
  if (campaignIds.length === 0) return new Map();
  const rows = await db.selectFrom('campaign_messages')
    .select((eb) => ['campaign_id', ...MESSAGE_STATUSES.map((status) => eb.fn.countAll<string>().filterWhere('status', '=', status).as(status))])
    .where('campaign_id', '=', anyOf(campaignIds, 'bigint')).groupBy('campaign_id').execute();
  return new Map(rows.map((row) => [row.campaign_id,
    Object.fromEntries(MESSAGE_STATUSES.map((status) => [status, Number(row[status])])) as MessageCounts]));
}

/** Moves a campaign between statuses; undefined when it was not in one of `from`. */
export async function transitionCampaign(db: Db, id: string, from: CampaignStatus[], to: CampaignStatus): Promise<{ id: string } | undefined> {
  return db.updateTable('campaigns')
    .set({
      status: to,
      paused_reason: null,
      updated_at: sql`now()`,
      ...(to === 'sending' && from.includes('draft') && { sending_at: sql`now()` }),
      ...((to === 'sent' || to === 'cancelled') && { finished_at: sql`now()` }),
    })
    .where('id', '=', id).where('status', 'in', from)
    .returning('id').executeTakeFirst();
}

/**
 * Fixes the audience in one statement, never in this process's memory: confirmed on the list,
 * not erased, not suppressed, at least `min_affinity` (the lower of the recorded level and the
 * person's cap). Once per campaign, in the transaction that moves it out of draft or
 * scheduled; the primary key refuses a second run, where ON CONFLICT DO NOTHING would have
 * cost a speculative insertion per row (a quarter of the time, on a million in psql).
 *
 * In primary-key order: a new campaign's keys then go in at the right edge of the index
 * instead of at random places in it, which made a million recipients about 20% faster
 * (npm run bench). The references are checked once for the statement (migration 0012), not per row.
 *
 * Levels rank by their place in AFFINITY_LEVELS (1-based in SQL). A person without a cap
 * ranks as the highest level, so only the recorded one counts.
 *
 * The terms rule (issue 20): after a material change of the list's wording, only those who
 * agreed to that version or a later one (`consent_version`, moved on by a re-consent). The
 * version is one uncorrelated subquery, evaluated once for the statement.
 */
export async function insertAudience(trx: Trx, campaign: AudienceSpec & { id: string }): Promise<number> {
  const rule = audienceRule(campaign);
  await planForWholeList(trx);
  const result = await sql`
    insert into campaign_messages (campaign_id, subscriber_id)
    select ${campaign.id}, x.subscriber_id
    ${rule.reachable}
      and ${rule.terms}
      and ${rule.segment}
      and (${rule.minRank} = 1 or ${rule.level} >= ${rule.minRank})
    order by x.subscriber_id
  `.execute(trx);
  return Number(result.numAffectedRows ?? 0n);
}

/**
 * For one statement over a whole list, local to the transaction: compiling it (JIT) cost
 * about a second of a million's count, and at the default work_mem sorting a million
 * recipients by id spilled to disk (EXPLAIN ANALYZE, README).
 */
async function planForWholeList(trx: Trx): Promise<void> {
  await sql`select set_config('jit', 'off', true), set_config('work_mem', '64MB', true)`.execute(trx);
}

/** Who a campaign may reach at all, and the three rules that narrow it: the terms, the segment, the affinity. */
export interface AudienceSpec {
  listId: string;
  minAffinity: AffinityLevel;
  segment: Segment | null;
}

/** Who among a list a campaign reaches (issue 20); every key must match. */
export interface Segment {
  attributes?: Record<string, unknown> | undefined;
  locales?: string[] | undefined;
  confirmed_before?: string | undefined;
  confirmed_after?: string | undefined;
}

/**
 * The audience's rules as SQL fragments over `subscriptions x`: the one place they are said,
 * for the INSERT … SELECT that fixes an audience and the count that previews it. What they ask
 * of the person is read from the copies on the subscription (migration 0013), so a list's
 * audience is one table's rows, not a join of a million to a million. The segment says only
 * the clauses it has, so the planner sees no dead ones.
 */
function audienceRule(spec: AudienceSpec) {
  const levels = sql`${AFFINITY_LEVELS}::text[]`;
  const segment = spec.segment ?? {};
  const clauses = [
    segment.attributes && sql`x.person_attributes @> ${JSON.stringify(segment.attributes)}::jsonb`,
    segment.locales && sql`x.person_locale = any(${segment.locales}::text[])`,
    segment.confirmed_before && sql`x.confirmed_at < ${segment.confirmed_before}::timestamptz`,
    segment.confirmed_after && sql`x.confirmed_at >= ${segment.confirmed_after}::timestamptz`,
  ].filter((clause) => clause !== undefined);
  return {
    reachable: sql`
      from subscriptions x
      where x.list_id = ${spec.listId}
        and x.status = 'confirmed'
        and x.person_reachable`,
    terms: sql`coalesce(x.consent_version, 0) >= coalesce(${reconsentFromSql(spec.listId)}, 0)`,
    segment: clauses.length === 0 ? sql`true` : sql`(${sql.join(clauses, sql` and `)})`,
    level: sql`least(
      array_position(${levels}, x.person_affinity_level),
      coalesce(array_position(${levels}, x.person_affinity_cap), cardinality(${levels})))`,
    minRank: sql`array_position(${levels}, ${spec.minAffinity}::text)`,
  };
}

export interface AudienceCount {
  total: number;
  by_affinity: Record<AffinityLevel, number>;
  left_out: { terms: number; segment: number; affinity: number };
}

/**
 * How many the campaign would reach now, by affinity level, and how many each rule leaves
 * out (each counted among those the earlier rules let through): one aggregate, in SQL.
 */
export async function countAudience(trx: Trx, spec: AudienceSpec): Promise<AudienceCount> {
  const rule = audienceRule(spec);
  await planForWholeList(trx);
  const { rows: [row] } = await sql<Record<string, string>>`
    select
      count(*) filter (where a.terms and a.segment and a.level >= a.min_rank) as total,
      ${sql.join(AFFINITY_LEVELS.map((level, i) =>
        sql`count(*) filter (where a.terms and a.segment and a.level >= a.min_rank and a.level = ${i + 1}) as ${sql.ref(level)}`))},
      count(*) filter (where not a.terms) as left_terms,
      count(*) filter (where a.terms and not a.segment) as left_segment,
      count(*) filter (where a.terms and a.segment and a.level < a.min_rank) as left_affinity
    from (
      select ${rule.terms} as terms, ${rule.segment} as segment, ${rule.minRank} as min_rank,
        ${rule.level} as level
      ${rule.reachable}
    ) a
  `.execute(trx);
  const n = (key: string) => Number(row?.[key] ?? 0);
  return {
    total: n('total'),
    by_affinity: Object.fromEntries(AFFINITY_LEVELS.map((level) => [level, n(level)])) as Record<AffinityLevel, number>,
    left_out: { terms: n('left_terms'), segment: n('left_segment'), affinity: n('left_affinity') },
  };
}

/**
 * Starts the scheduled campaign whose time (by `now`) came first, if any: the queue pattern,
 * so of several workers exactly one starts it (the others skip the locked row, and the status
 * check excludes it once started). The caller fixes the audience in the same transaction.
 */
export async function startDueCampaign(trx: Trx, now: Date) {
  const { rows } = await sql<{ id: string; list_id: string; min_affinity: AffinityLevel; segment: Segment | null }>`
    with due as (
      select id from campaigns where status = 'scheduled' and send_at <= ${now}
      order by send_at limit 1
      for update skip locked
    )
    update campaigns c set status = 'sending', sending_at = now(), updated_at = now()
    from due where c.id = due.id and c.status = 'scheduled'
    returning c.id::text as id, c.list_id::text as list_id, c.min_affinity, c.segment
  `.execute(trx);
  return rows[0];
}

export async function skipQueuedMessages(db: Db, campaignId: string): Promise<void> {
  await db.updateTable('campaign_messages').set({ status: 'skipped', last_error: 'campaign cancelled', locked_by: null, locked_until: null })
    .where('campaign_id', '=', campaignId).where('status', '=', 'queued').execute();
}

/** Marks a sending campaign sent once nothing of it is queued any more. */
export async function finishCampaignIfDone(db: Db, campaignId: string): Promise<void> {
  await sql`
    update campaigns set status = 'sent', finished_at = now(), updated_at = now()
    where id = ${campaignId} and status = 'sending'
      and not exists (select 1 from campaign_messages where campaign_id = ${campaignId} and status = 'queued')
  `.execute(db);
}

export interface RecipientRow {
  id: string;
  email: string | null;
  first_name: string | null;
  last_name: string | null;
  attributes: Record<string, unknown>;
  locale: string;
  affinity_cap: AffinityLevel | null;
  affinity: AffinityLevel | null;
}

/** The batch's recipients with their current recorded level, in one statement. */
export async function findRecipients(db: Database, ids: string[]): Promise<RecipientRow[]> {
  if (ids.length === 0) return [];
  return db.selectFrom('subscribers as s')
    .select(['s.id', 's.email', 's.first_name', 's.last_name', 's.attributes', 's.locale', 's.affinity_cap', 's.affinity_level as affinity'])
    .where('s.id', '=', anyOf(ids, 'uuid')).where('s.erased_at', 'is', null)
    .execute();
}

/** Bounced and complained per campaign, as its counts show them. */
export async function countCampaignReports(db: Db, campaignIds: string[]): Promise<Map<string, { bounced: number; complained: number }>> {
  if (campaignIds.length === 0) return new Map();
  const rows = await db.selectFrom('inbound_reports')
    .select((eb) => [
      'campaign_id',
      eb.fn.countAll<string>().filterWhere('effect', '=', 'bounced').as('bounced'),
      eb.fn.countAll<string>().filterWhere('effect', '=', 'complained').as('complained'),
    ])
    .where('campaign_id', 'in', campaignIds).where('effect', 'in', ['bounced', 'complained'])
    .groupBy('campaign_id').execute();
  return new Map(rows.map((row) => [row.campaign_id!, { bounced: Number(row.bounced), complained: Number(row.complained) }]));
}

/** The campaign's messages the relay took: the "delivered" that complaint and bounce rates divide by. */
export async function countSentMessages(db: Db, campaignId: string): Promise<number> {
  const row = await db.selectFrom('campaign_messages').select((eb) => eb.fn.countAll<string>().as('count'))
    .where('campaign_id', '=', campaignId).where('status', '=', 'sent').executeTakeFirstOrThrow();
  return Number(row.count);
}

/** Pauses a sending campaign with its reason; false when it was not sending. */
export async function pauseCampaignWithReason(db: Db, campaignId: string, reason: string): Promise<boolean> {
  const result = await db.updateTable('campaigns').set({ status: 'paused', paused_reason: reason, updated_at: sql`now()` })
    .where('id', '=', campaignId).where('status', '=', 'sending').executeTakeFirst();
  return result.numUpdatedRows > 0n;
}
