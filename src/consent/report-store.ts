// The SQL of bounces and complaints (consent/reports.ts): finding the mail a report is
// about, keeping each report once, the soft-bounce count, and ending subscriptions.
import { sql } from 'kysely';
import type { Database, Trx } from '../db/database.js';
import type { InboundReportsTable } from '../db/schema.js';
import { OPEN_SUBSCRIPTION_STATUSES, type ReportEffect, type SubscriptionStatus } from '../domain.js';

type Db = Database | Trx;

/** A mail of ours a report may be about: only one the relay took (a mail never sent cannot bounce). */
export interface SentMail {
  subscriberId: string;
  campaignId: string | null;
  listId: string | null;
  outboxId: string | null;
  /** A re-consent mail's material version; its list is listId. */
  reconsentVersion: number | null;
}

export async function findSentOutboxMail(db: Db, where: { id: string } | { messageId: string }): Promise<SentMail | undefined> {
  const row = await db.selectFrom('outbox').select(['id', 'subscriber_id'])
    .$if('id' in where, (q) => q.where('id', '=', (where as { id: string }).id))
    .$if('messageId' in where, (q) => q.where('message_id', '=', (where as { messageId: string }).messageId))
    .where('status', '=', 'sent').where('subscriber_id', 'is not', null)
    .limit(1).executeTakeFirst();
  return row ? { subscriberId: row.subscriber_id!, campaignId: null, listId: null, outboxId: row.id, reconsentVersion: null } : undefined;
}

export async function findSentCampaignMessage(
  db: Db, where: { campaignId: string; subscriberId: string } | { messageId: string },
): Promise<SentMail | undefined> {
  const row = await db.selectFrom('campaign_messages as m').innerJoin('campaigns as c', 'c.id', 'm.campaign_id')
    .select(['m.campaign_id', 'm.subscriber_id', 'c.list_id'])
    .$if('campaignId' in where, (q) => {
      const key = where as { campaignId: string; subscriberId: string };
      return q.where('m.campaign_id', '=', key.campaignId).where('m.subscriber_id', '=', key.subscriberId);
    })
    .$if('messageId' in where, (q) => q.where('m.message_id', '=', (where as { messageId: string }).messageId))
    .where('m.status', '=', 'sent')
    .limit(1).executeTakeFirst();
  return row ? { subscriberId: row.subscriber_id, campaignId: row.campaign_id, listId: row.list_id, outboxId: null, reconsentVersion: null } : undefined;
}

export async function findSentReconsentMessage(
  db: Db, where: { listId: string; version: number; subscriberId: string } | { messageId: string },
): Promise<SentMail | undefined> {
  const row = await db.selectFrom('reconsent_messages').select(['list_id', 'version', 'subscriber_id'])
    .$if('listId' in where, (q) => {
      const key = where as { listId: string; version: number; subscriberId: string };
      return q.where('list_id', '=', key.listId).where('version', '=', key.version).where('subscriber_id', '=', key.subscriberId);
    })
    .$if('messageId' in where, (q) => q.where('message_id', '=', (where as { messageId: string }).messageId))
    .where('status', '=', 'sent')
    .limit(1).executeTakeFirst();
  return row ? { subscriberId: row.subscriber_id, campaignId: null, listId: row.list_id, outboxId: null, reconsentVersion: row.version } : undefined;
}

export async function isReportKnown(db: Db, reportId: string): Promise<boolean> {
  return (await db.selectFrom('inbound_reports').select('report_id').where('report_id', '=', reportId).executeTakeFirst()) !== undefined;
}

/** Keeps a report the first time it comes; false when it was kept before (handled once). */
export async function insertReport(trx: Trx, report: Omit<InboundReportsTable, 'received_at' | 'effect'>): Promise<boolean> {
  const row = await trx.insertInto('inbound_reports').values({ ...report, effect: 'none' })
    .onConflict((oc) => oc.column('report_id').doNothing())
    .returning('report_id').executeTakeFirst();
  return row !== undefined;
}

export async function setReportEffect(trx: Trx, reportId: string, effect: ReportEffect): Promise<void> {
  await trx.updateTable('inbound_reports').set({ effect }).where('report_id', '=', reportId).execute();
}

/**
 * Temporary failures of the subscriber's mail in the window, counted since the last report of
 * a delivery (a delivery in between starts the count again).
 */
export async function countSoftBounces(trx: Trx, subscriberId: string, windowMs: number): Promise<number> {
  const { rows } = await sql<{ count: string }>`
    select count(*) as count from inbound_reports
    where subscriber_id = ${subscriberId} and kind = 'temporary'
      and received_at > now() - make_interval(secs => ${windowMs / 1000})
      and received_at >= coalesce((select max(received_at) from inbound_reports
        where subscriber_id = ${subscriberId} and kind = 'delivered'), '-infinity')
  `.execute(trx);
  return Number(rows[0]!.count);
}

/** The subscriber's open subscriptions (all lists, or the given one), locked for the change. */
export async function lockOpenSubscriptions(trx: Trx, subscriberId: string, options: { listId?: string | null; statuses?: readonly SubscriptionStatus[] } = {}) {
  return trx.selectFrom('subscriptions as x').innerJoin('lists as l', 'l.id', 'x.list_id')
    .select(['x.list_id', 'x.status', 'l.slug', 'l.name'])
    .where('x.subscriber_id', '=', subscriberId)
    .where('x.status', 'in', options.statuses ?? OPEN_SUBSCRIPTION_STATUSES)
    .$if(options.listId != null, (q) => q.where('x.list_id', '=', options.listId!))
    .orderBy('x.list_id')
    .forUpdate('x')
    .execute();
}

export async function markSubscriptionEnded(trx: Trx, key: { subscriberId: string; listId: string }, status: 'bounced' | 'complained', at: Date): Promise<void> {
  await trx.updateTable('subscriptions')
    .set({ status, unsubscribed_at: at, pending_since: null, pending_fields: null, pending_consent_version: null, updated_at: sql`now()` })
    .where('subscriber_id', '=', key.subscriberId).where('list_id', '=', key.listId)
    .execute();
}

/** Reports' raw copies older than `days`, cleared; returns how many. */
export async function clearOldRawReports(db: Db, days: number): Promise<number> {
  const result = await db.updateTable('inbound_reports').set({ raw: null })
    .where('raw', 'is not', null).where('received_at', '<', sql<Date>`now() - make_interval(days => ${days})`)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Erasure: the raw reports and the remote servers' words about the person go; counts stay. */
export async function scrubReportsAbout(trx: Trx, subscriberId: string): Promise<void> {
  await trx.updateTable('inbound_reports').set({ raw: null, diagnostic: null })
    .where('subscriber_id', '=', subscriberId).execute();
}
