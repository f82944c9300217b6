// Table types for Kysely, written to match migrations/. `Generated` marks columns the
// database fills in.
import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type {
  AffinityLevel, CampaignStatus, ConsentEventKind, MessageStatus, OutboxMailKind, OutboxMailStatus, ReportEffect, SubscriptionStatus,
} from '../domain.js';
import type { ReportKind, ReportProvider } from '../inbound/types.js';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T> = ColumnType<T, string, string>;

export interface ListsTable {
  id: Generated<string>;
  slug: string;
  name: string;
  fields: ColumnType<string[], string[] | undefined, string[]>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface ListConsentVersionsTable {
  list_id: string;
  version: number;
  text: string;
  created_at: Generated<Date>;
  /** A material change (migration 0010): campaigns then reach only those who agreed to it or later. */
  material: Generated<boolean>;
}

export interface SubscribersTable {
  id: Generated<string>;
  email: string | null;
  first_name: string | null;
  last_name: string | null;
  attributes: ColumnType<Record<string, unknown>, string | undefined, string>;
  locale: string;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  erased_at: Date | null;
  affinity_cap: AffinityLevel | null;
  /** Which inbox the address reaches (migration 0004): the database computes it from `email`. */
  mailbox_key: ColumnType<string | null, never, never>;
  /** What suppressions are keyed by (migration 0012): a trigger computes it from `email`. */
  address_hash: ColumnType<Buffer | null, never, never>;
  /** The level of the latest affinity event and that event (migration 0012), kept by a trigger on affinity_events. */
  affinity_level: ColumnType<AffinityLevel | null, never, null>;
  affinity_event_id: ColumnType<string | null, never, null>;
}

export interface SubscriptionsTable {
  subscriber_id: string;
  list_id: string;
  status: SubscriptionStatus;
  pending_since: Date | null;
  pending_fields: ColumnType<Record<string, string> | null, string | null, string | null>;
  pending_consent_version: number | null;
  consent_version: number | null;
  requested_at: Date | null;
  confirmed_at: Date | null;
  unsubscribed_at: Date | null;
  last_confirmation_mail_at: Date | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  // The person's facts an audience reads, kept by triggers (migration 0013): never written here.
  person_locale: ColumnType<string, never, never>;
  person_attributes: ColumnType<Record<string, unknown>, never, never>;
  person_affinity_level: ColumnType<AffinityLevel | null, never, never>;
  person_affinity_cap: ColumnType<AffinityLevel | null, never, never>;
  person_reachable: ColumnType<boolean, never, never>;
}

export interface ConsentEventsTable {
  id: Generated<string>;
  subscriber_id: string;
  list_id: string | null;
  kind: ConsentEventKind;
  occurred_at: Date;
  evidence_hash: Buffer;
  prev_hash: Buffer | null;
  hash: Buffer;
}

export interface ConsentEvidenceTable {
  event_id: string;
  evidence: Json<Record<string, unknown>>;
}

export interface AffinityEventsTable {
  id: Generated<string>;
  subscriber_id: string;
  level: AffinityLevel;
  reason: string;
  recorded_by: string | null;
  occurred_at: Generated<Date>;
}

export interface SuppressionsTable {
  address_hash: Buffer;
  reason: string;
  created_at: Generated<Date>;
}

export interface OutboxTable {
  id: Generated<string>;
  kind: OutboxMailKind;
  subscriber_id: string | null;
  recipient: string | null;
  message_id: string;
  subject: string | null;
  html: string | null;
  text: string | null;
  status: Generated<OutboxMailStatus>;
  attempts: Generated<number>;
  run_at: Generated<Date>;
  locked_by: string | null;
  locked_until: Date | null;
  last_error: string | null;
  smtp_response: string | null;
  created_at: Timestamp;
  sent_at: Date | null;
}

export interface DB {
  lists: ListsTable;
  list_consent_versions: ListConsentVersionsTable;
  subscribers: SubscribersTable;
  subscriptions: SubscriptionsTable;
  consent_events: ConsentEventsTable;
  consent_evidence: ConsentEvidenceTable;
  affinity_events: AffinityEventsTable;
  suppressions: SuppressionsTable;
  outbox: OutboxTable;
  api_keys: ApiKeysTable;
  idempotency_keys: IdempotencyKeysTable;
  campaigns: CampaignsTable;
  campaign_messages: CampaignMessagesTable;
  send_rate_bucket: SendRateBucketTable;
  preferences_link_requests: PreferencesLinkRequestsTable;
  inbound_reports: InboundReportsTable;
  reconsent_messages: ReconsentMessagesTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  imports: ImportsTable;
  import_rejections: ImportRejectionsTable;
}

export type List = Selectable<ListsTable>;
export type Subscriber = Selectable<SubscribersTable>;
export type Subscription = Selectable<SubscriptionsTable>;
export type ConsentEvent = Selectable<ConsentEventsTable>;
export type OutboxMail = Selectable<OutboxTable>;
export type NewOutboxMail = Insertable<OutboxTable>;

export interface ApiKeysTable {
  id: Generated<string>;
  name: string;
  prefix: string;
  secret_hash: string;
  created_at: Generated<Date>;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

export interface IdempotencyKeysTable {
  key_owner: string;
  key: string;
  request_hash: Buffer;
  status: number | null;
  body: string | null;
  created_at: Generated<Date>;
}

export interface CampaignsTable {
  id: Generated<string>;
  name: string;
  list_id: string;
  subject: string;
  mjml: string;
  html_template: string;
  text_template: string;
  min_affinity: Generated<AffinityLevel>;
  status: Generated<CampaignStatus>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  sending_at: Date | null;
  finished_at: Date | null;
  /** When a scheduled campaign starts by itself (migration 0010). */
  send_at: Date | null;
  segment: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  /** Why it paused itself (migration 0008); null when a person paused it. */
  paused_reason: Generated<string | null>;
}

/** The columns of a queue of mails that workers claim, send and record (campaign_messages, reconsent_messages). */
interface QueuedMailColumns {
  status: Generated<MessageStatus>;
  attempts: Generated<number>;
  run_at: Generated<Date>;
  locked_by: string | null;
  locked_until: Date | null;
  message_id: string | null;
  smtp_response: string | null;
  last_error: string | null;
  sent_at: Date | null;
}

export interface CampaignMessagesTable extends QueuedMailColumns {
  campaign_id: string;
  subscriber_id: string;
}

export interface SendRateBucketTable {
  id: number;
  tokens: number;
  refilled_at: Date;
}

/** A "Lost your mail?" request until a worker handles it (and deletes it). */
export interface PreferencesLinkRequestsTable {
  id: Generated<string>;
  email: string;
  locale: string;
  requested_at: Date;
}

/** A re-consent mail: one per list, material version and person (migration 0010). */
export interface ReconsentMessagesTable extends QueuedMailColumns {
  list_id: string;
  version: number;
  subscriber_id: string;
  created_at: Generated<Date>;
}

/** A bounce or complaint that matched a mail of ours (migrations 0008, 0011), kept once per report_id. */
export interface InboundReportsTable {
  report_id: string;
  provider: ReportProvider;
  kind: ReportKind;
  effect: ReportEffect;
  subscriber_id: string;
  campaign_id: string | null;
  outbox_id: string | null;
  /** With reconsent_version and subscriber_id, the re-consent mail (migration 0011). */
  reconsent_list_id: string | null;
  reconsent_version: number | null;
  matched_by: 'verp' | 'message_id';
  status: string | null;
  diagnostic: string | null;
  /** The report as it came, for support: cleared after 30 days and on erasure. */
  raw: Buffer | null;
  received_at: Generated<Date>;
}

/** Migration 0009 (issue 19): webhooks fed from the consent ledger, and imports. */
export interface WebhookEndpointsTable {
  id: Generated<string>;
  url: string;
  secret: string;
  events: string[];
  list_ids: string[] | null;
  created_by: string | null;
  created_at: Generated<Date>;
  horizon: string | null;
  after_event_id: Generated<string>;
  failing_since: Date | null;
  disabled_at: Date | null;
  disabled_reason: string | null;
}

export interface WebhookDeliveriesTable {
  id: Generated<string>;
  endpoint_id: string;
  event_id: string;
  subscriber_id: string;
  type: string;
  status: Generated<'pending' | 'delivered' | 'failed'>;
  attempts: Generated<number>;
  run_at: Date;
  locked_by: string | null;
  locked_until: Date | null;
  created_at: Date;
  delivered_at: Date | null;
}

export interface WebhookAttemptsTable {
  id: Generated<string>;
  delivery_id: string;
  endpoint_id: string;
  attempted_at: Date;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

export interface ImportsTable {
  id: Generated<string>;
  list_id: string;
  created_by: string | null;
  format: 'csv' | 'ndjson';
  file_sha256: Buffer;
  status: Generated<'running' | 'finished' | 'failed'>;
  rows_read: Generated<number>;
  imported: Generated<number>;
  pending: Generated<number>;
  unchanged: Generated<number>;
  rejected: Generated<number>;
  error: string | null;
  created_at: Generated<Date>;
  finished_at: Date | null;
}

export interface ImportRejectionsTable {
  import_id: string;
  line: number;
  reason: string;
}
