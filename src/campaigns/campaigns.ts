// Campaigns: draft, preview, send, pause, resume, cancel. The words (campaign, message and
// their statuses) are in domain.ts's glossary.
import type { Deps } from '../deps.js';
import { allowLongStatements } from '../db/database.js';
import {
  type AffinityLevel, CAMPAIGN_REPORT_COUNTS, type CampaignStatus, MESSAGE_STATUSES, type MessageStatus, UUID, zeroCounts,
} from '../domain.js';
import { DomainError } from '../errors.js';
import { previewLinks } from '../links/urls.js';
import { getList } from '../lists/lists.js';
import { buildCampaignMail, campaignContext, campaignMailSource, hasAddress, type MessageDeps } from './message.js';
import * as store from './store.js';

export interface CampaignView {
  id: string;
  name: string;
  list: string;
  subject: string;
  min_affinity: AffinityLevel;
  status: CampaignStatus;
  created_at: Date;
  send_at: Date | null;
  segment: store.Segment | null;
  sending_at: Date | null;
  finished_at: Date | null;
  /** Why it paused itself (a complaint or bounce rate); null otherwise. */
  paused_reason: string | null;
  /** Messages by status, and the reports that bounced or complained about them. */
  counts: Record<MessageStatus | (typeof CAMPAIGN_REPORT_COUNTS)[number], number>;
}

// At most 18 digits: every such number fits a bigint, where 19 digits could pass 2^63 - 1 and
// make PostgreSQL refuse the comparison (a 500 found by test/hostile.test.ts).
const ID = /^[1-9]\d{0,17}$/;

const notFound = (id: string) => new DomainError('campaign_not_found', `there is no campaign ${id}`);

async function views(deps: Pick<Deps, 'db'>, rows: NonNullable<Awaited<ReturnType<typeof store.findCampaign>>>[]): Promise<CampaignView[]> {
  const ids = rows.map((row) => row.id);
  const [counts, reports] = await Promise.all([store.countMessages(deps.db, ids), store.countCampaignReports(deps.db, ids)]);
  return rows.map((row) => ({
    id: row.id, name: row.name, list: row.list, subject: row.subject, min_affinity: row.min_affinity, status: row.status,
    created_at: row.created_at, send_at: row.send_at, segment: row.segment, sending_at: row.sending_at, finished_at: row.finished_at,
    paused_reason: row.paused_reason,
    counts: { ...(counts.get(row.id) ?? zeroCounts(MESSAGE_STATUSES)), ...(reports.get(row.id) ?? zeroCounts(CAMPAIGN_REPORT_COUNTS)) },
  }));
}

export async function getCampaign(deps: Pick<Deps, 'db'>, id: string): Promise<CampaignView> {
  const row = ID.test(id) ? await store.findCampaign(deps.db, id) : undefined;
  if (!row) throw notFound(id);
  return (await views(deps, [row]))[0]!;
}

export async function listCampaigns(deps: Pick<Deps, 'db'>, page: { cursor?: string | undefined; limit: number }) {
  if (page.cursor !== undefined && !ID.test(page.cursor)) throw new DomainError('invalid_input', 'the cursor is not one we gave out', { cursor: 'not valid' });
  const rows = await store.listCampaigns(deps.db, { before: page.cursor, limit: page.limit });
  const shown = rows.slice(0, page.limit);
  return { data: await views(deps, shown), next_cursor: rows.length > page.limit ? shown.at(-1)!.id : null };
}

/** A made-up recipient at the highest level, so that a trial render reaches every field a mail may use. */
const SAMPLE_RECIPIENT = {
  email: 'sample@example.org', first_name: 'Sample', last_name: 'Recipient', attributes: {}, locale: 'en', affinity: 'engaged', affinity_cap: null,
} as const;

/**
 * The sample's context, built as every mail's is (message.ts). The render itself happens in
 * the sandbox's thread, which takes data only, so it cannot take the whole mail's path.
 */
function sampleContext(deps: MessageDeps, list: { name: string }): Record<string, unknown> {
  return campaignContext(deps, SAMPLE_RECIPIENT, list, previewLinks(deps.config)).context;
}

/**
 * Refuses (422) a template that does not compile, or does not render for the sample
 * recipient within the render limits; compiles and tries it in the sandbox's thread.
 */
export async function createCampaign(deps: Pick<Deps, 'db' | 'templateSandbox' | 'clock'> & MessageDeps, input: {
  name: string; list: string; subject: string; mjml: string; minAffinity?: AffinityLevel | undefined; sendAt?: string | undefined;
  segment?: store.Segment | undefined;
}): Promise<CampaignView> {
  const sendAt = input.sendAt === undefined ? undefined : scheduledTime(deps.clock(), input.sendAt);
  checkSegment(input.segment);
  const list = await getList(deps, input.list);
  const compiled = await deps.templateSandbox.compile({ subject: input.subject, mjml: input.mjml, sample: sampleContext(deps, list) });
  const id = await store.insertCampaign(deps.db, {
    name: input.name, listId: list.id, subject: input.subject, mjml: input.mjml, ...compiled, minAffinity: input.minAffinity ?? 'confirmed', sendAt, segment: input.segment,
  });
  return getCampaign(deps, id);
}

const SEGMENT_KEYS = new Set(['attributes', 'locales', 'confirmed_before', 'confirmed_after']);

/** 422 for a key we do not know: ignored, a misspelt key would widen the audience unseen. */
function checkSegment(segment: store.Segment | undefined): void {
  const unknown = Object.keys(segment ?? {}).filter((key) => !SEGMENT_KEYS.has(key));
  if (unknown.length > 0) {
    throw new DomainError('segment_invalid', `unknown segment keys: ${unknown.join(', ')}`, Object.fromEntries(unknown.map((key) => [key, 'unknown'])));
  }
}

/** How many the campaign would reach now, by affinity level, and what the terms, the segment and the level leave out. */
export async function campaignAudience(deps: Pick<Deps, 'db'>, id: string): Promise<store.AudienceCount> {
  const campaign = ID.test(id) ? await store.findCampaign(deps.db, id) : undefined;
  if (!campaign) throw notFound(id);
  // Counting reads the whole list, as fixing it does: on a million that is past the pool's
  // statement timeout on a busy machine (npm run bench answered 503), so it gets the same allowance.
  return deps.db.transaction().execute(async (trx) => {
    await allowLongStatements(trx, { timeoutMs: AUDIENCE_TIMEOUT_MS });
    return store.countAudience(trx, { listId: campaign.list_id, minAffinity: campaign.min_affinity, segment: campaign.segment });
  });
}

const MAX_SCHEDULE_MS = 365 * 24 * 3600_000;

/** A send_at (RFC 3339, parsed at the edge) that is in the future, at most a year ahead; else 422. */
function scheduledTime(now: number, sendAt: string): Date {
  const at = Date.parse(sendAt);
  if (!(at > now && at <= now + MAX_SCHEDULE_MS)) {
    throw new DomainError('send_at_out_of_range', 'send_at must be in the future and at most a year ahead');
  }
  return new Date(at);
}

/**
 * Starts every scheduled campaign whose time has come, each in its own transaction that
 * fixes its audience at that moment; resolves with the ids this caller started.
 */
export async function startDueCampaigns(deps: Pick<Deps, 'db' | 'clock'>): Promise<string[]> {
  const started: string[] = [];
  for (;;) {
    const id = await deps.db.transaction().execute(async (trx) => {
      await allowLongStatements(trx, { timeoutMs: AUDIENCE_TIMEOUT_MS });
      const campaign = await store.startDueCampaign(trx, new Date(deps.clock()));
      if (campaign) await store.insertAudience(trx, { id: campaign.id, listId: campaign.list_id, minAffinity: campaign.min_affinity, segment: campaign.segment });
      return campaign?.id;
    });
    if (id === undefined) return started;
    started.push(id);
  }
}

/** The mail one person would get, and which of their fields their affinity keeps out of it. */
export async function previewCampaign(deps: Pick<Deps, 'db'> & MessageDeps, id: string, subscriberId: string) {
  const campaign = ID.test(id) ? await store.findCampaignTemplates(deps.db, id) : undefined;
  if (!campaign) throw notFound(id);
  const [recipient] = UUID.test(subscriberId) ? await store.findRecipients(deps.db, [subscriberId]) : [];
  if (!recipient || !hasAddress(recipient)) throw new DomainError('subscriber_not_found', `there is no subscriber ${subscriberId}`);
  const { mail, level, withheld } = buildCampaignMail(deps, campaignMailSource(campaign), recipient, previewLinks(deps.config));
  return { subject: mail.subject, html: mail.html, text: mail.text, affinity: level, withheld };
}

// A million recipients take about 15 s to fix (npm run bench), past DATABASE_STATEMENT_TIMEOUT;
// this leaves room for twenty times that and still ends a send whose database froze.
const AUDIENCE_TIMEOUT_MS = 5 * 60_000;

/** Fixes the audience and starts sending, in one transaction; 409 unless a draft. */
export async function sendCampaign(deps: Pick<Deps, 'db' | 'wakeCampaigns'>, id: string): Promise<CampaignView> {
  if (!ID.test(id)) throw notFound(id);
  await deps.db.transaction().execute(async (trx) => {
    await allowLongStatements(trx, { timeoutMs: AUDIENCE_TIMEOUT_MS });
    const campaign = await store.findCampaign(trx, id);
    if (!campaign) throw notFound(id);
    if (!(await store.transitionCampaign(trx, id, ['draft'], 'sending'))) {
      throw new DomainError('campaign_not_draft', `campaign ${id} is ${campaign.status}, not a draft`);
    }
    await store.insertAudience(trx, { id, listId: campaign.list_id, minAffinity: campaign.min_affinity, segment: campaign.segment });
  });
  deps.wakeCampaigns();
  return getCampaign(deps, id);
}

const TRANSITIONS = {
  pause: { from: ['sending'], to: 'paused' },
  resume: { from: ['paused'], to: 'sending' },
  cancel: { from: ['draft', 'scheduled', 'sending', 'paused'], to: 'cancelled' },
} as const satisfies Record<string, { from: CampaignStatus[]; to: CampaignStatus }>;

export async function changeCampaignStatus(deps: Pick<Deps, 'db' | 'wakeCampaigns'>, id: string, action: keyof typeof TRANSITIONS): Promise<CampaignView> {
  const current = await getCampaign(deps, id);
  // A scheduled campaign can be cancelled until it starts, not after (the contract).
  const { from, to } = action === 'cancel' && current.send_at !== null ? { from: ['scheduled'], to: 'cancelled' } as const : TRANSITIONS[action];
  await deps.db.transaction().execute(async (trx) => {
    if (!(await store.transitionCampaign(trx, id, [...from], to))) {
      throw new DomainError('campaign_state', `cannot ${action} a campaign that is ${current.status}`);
    }
    if (action === 'cancel') await store.skipQueuedMessages(trx, id);
  });
  if (action === 'resume') deps.wakeCampaigns();
  return getCampaign(deps, id);
}
