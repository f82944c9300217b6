// The consent ledger: an append-only chain of hashes per subscriber, with the evidence kept
// beside it. Each event's hash covers its own fields, the SHA-256 of its evidence and the
// previous event's hash, so changing, removing or reordering any event, or editing any
// evidence still held, breaks verification. Erasure deletes evidence rows only; the chain
// of hashes still verifies without them.
import { createHash } from 'node:crypto';
import { type ExpressionBuilder, sql } from 'kysely';
import { type Database, precompiled, type Trx } from '../db/database.js';
import type { DB } from '../db/schema.js';
import type { ConsentEventKind } from '../domain.js';
import { tokenHash } from '../links/tokens.js';
import { subscriberIdsAfter } from './subscriber-store.js';

export type Evidence = Record<string, unknown>;

/** JSON with keys sorted at every depth: jsonb does not keep key order, the hash must not depend on it. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest();

export function evidenceHash(evidence: Evidence): Buffer {
  return sha256(canonicalJson(evidence));
}

interface ChainFields {
  subscriberId: string;
  listId: string | null;
  kind: ConsentEventKind;
  occurredAt: Date;
  evidenceHash: Buffer;
  prevHash: Buffer | null;
}

export function eventHash(fields: ChainFields): Buffer {
  return sha256(canonicalJson({
    subscriber_id: fields.subscriberId,
    list_id: fields.listId,
    kind: fields.kind,
    occurred_at: fields.occurredAt.toISOString(),
    evidence_hash: fields.evidenceHash.toString('hex'),
    prev_hash: fields.prevHash?.toString('hex') ?? null,
  }));
}

/**
 * What stands for a link's token in evidence and in everything we hand out: its SHA-256, as
 * the confirmation records it (`token_sha256`), so the click is tied to the mail that carried
 * the link. The token itself would be a working link for anyone who reads the record: a
 * probe confirmed a pending person with an API key and a user agent of its choosing.
 */
export function tokenMarker(token: string): string {
  return `{token_sha256:${tokenHash(token)}}`;
}

/**
 * The confirmation mail as evidence of what the person was asked: its Message-ID, subject and
 * text part with the link's token replaced by its marker, and the SHA-256 of the text part as
 * sent (UTF-8, LF line ends), so that whoever holds the delivered mail can show it is this one.
 */
export function sentMailEvidence(mail: { messageId: string; subject: string; text: string }, token: string): Evidence {
  return {
    message_id: mail.messageId,
    subject: mail.subject,
    text: mail.text.replaceAll(token, () => tokenMarker(token)),
    text_sha256: sha256(mail.text).toString('hex'),
  };
}

// A token in one of our links (links/tokens.ts): `<base64url payload>.<43-character MAC>` after the path.
const LINK_TOKEN = /(\/(?:confirm|u|preferences|reconsent)\/)([A-Za-z0-9_-]{1,512}\.[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])/g;

/**
 * `value` with the token of every link of ours in every string replaced by its marker: for
 * what the API and exports hand out. Evidence written before tokenMarker held the mail with
 * its live link, and evidence rows are never rewritten, so they are shown this way instead;
 * their hashes, and `verified`, are still computed on the rows as stored.
 */
export function withoutLinkTokens<T>(value: T): T {
  if (typeof value === 'string') return value.replace(LINK_TOKEN, (_, path: string, token: string) => path + tokenMarker(token)) as T;
  if (Array.isArray(value)) return value.map(withoutLinkTokens) as T;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, withoutLinkTokens(v)])) as T;
  }
  return value;
}

/** jsonb cannot hold U+0000; evidence must read back exactly as it was hashed. */
function storable(evidence: Evidence): Evidence {
  return JSON.parse(JSON.stringify(evidence).replace(/\\u0000/g, '')) as Evidence;
}

/**
 * The database clock (evidence time comes from the server, not from this process) to the
 * millisecond, so that it survives the round trip through a JS Date exactly, and the last
 * hash of the subscriber's chain. The caller holds the subscriber's row lock, so no other
 * event can slip in between.
 */
/**
 * The head of a subscriber's chain as two select columns (the database clock to the
 * millisecond, the last event's hash), for chainHead and for statements that read more.
 */
export function chainHeadColumns(eb: ExpressionBuilder<DB, never>, subscriberId: string) {
  return [
    sql<Date>`date_trunc('milliseconds', now())`.as('now'),
    eb.selectFrom('consent_events').select('hash')
      .where('subscriber_id', '=', subscriberId).orderBy('id', 'desc').limit(1).as('prev_hash'),
  ] as const;
}

export async function chainHead(trx: Trx, subscriberId: string): Promise<{ now: Date; prevHash: Buffer | null }> {
  const row = await trx.selectNoFrom((eb) => chainHeadColumns(eb, subscriberId)).executeTakeFirstOrThrow();
  return { now: row.now, prevHash: row.prev_hash };
}

export interface NewConsentEvent {
  subscriberId: string;
  listId: string | null;
  kind: ConsentEventKind;
  evidence: Evidence;
}

const appendStatement = precompiled((db, args: {
  subscriberId: string; listId: string | null; kind: ConsentEventKind; occurredAt: Date;
  evidenceHash: Buffer; prevHash: Buffer | null; hash: Buffer; evidence: string;
}) => db
  .with('event', (db) => db
    .insertInto('consent_events')
    .values({
      subscriber_id: args.subscriberId,
      list_id: args.listId,
      kind: args.kind,
      occurred_at: args.occurredAt,
      evidence_hash: args.evidenceHash,
      prev_hash: args.prevHash,
      hash: args.hash,
    })
    .returning('id'))
  .insertInto('consent_evidence')
  .columns(['event_id', 'evidence'])
  .expression((db) => db.selectFrom('event').select(['event.id', sql<string>`${args.evidence}::jsonb`.as('evidence')]))
  .returning('event_id'));

/** An event as it will be stored: its evidence stamped with the database's time, and both hashes. */
function seal(head: { now: Date; prevHash: Buffer | null }, event: NewConsentEvent) {
  const evidence = storable({ ...event.evidence, time: head.now.toISOString() });
  const evHash = evidenceHash(evidence);
  const hash = eventHash({ ...event, occurredAt: head.now, evidenceHash: evHash, prevHash: head.prevHash });
  return { ...event, occurredAt: head.now, evidenceHash: evHash, prevHash: head.prevHash, hash, evidence: JSON.stringify(evidence) };
}

/** Appends one event and its evidence in one statement; returns the event's id. */
export async function appendConsentEvent(
  trx: Trx,
  head: { now: Date; prevHash: Buffer | null },
  event: NewConsentEvent,
): Promise<string> {
  const { rows } = await appendStatement(trx, seal(head, event));
  return rows[0]!.event_id;
}

/**
 * Appends one event each to many subscribers' chains in one statement (an import's batch),
 * each on the head the caller read under its locks: at most one event per subscriber, since
 * a second would have to chain onto the first.
 */
export async function appendConsentEventsOnePerSubscriber(
  trx: Trx,
  events: { head: { now: Date; prevHash: Buffer | null }; event: NewConsentEvent }[],
): Promise<void> {
  if (events.length === 0) return;
  const sealed = events.map(({ head, event }) => seal(head, event));
  if (new Set(sealed.map((e) => e.subscriberId)).size !== sealed.length) throw new Error('one event per subscriber in a batch append');
  const column = <T>(pick: (e: (typeof sealed)[number]) => T) => sealed.map(pick);
  await sql`
    with event as (
      insert into consent_events (subscriber_id, list_id, kind, occurred_at, evidence_hash, prev_hash, hash)
      select * from unnest(${column((e) => e.subscriberId)}::uuid[], ${column((e) => e.listId)}::bigint[], ${column((e) => e.kind)}::text[],
        ${column((e) => e.occurredAt)}::timestamptz[], ${column((e) => e.evidenceHash)}::bytea[], ${column((e) => e.prevHash)}::bytea[],
        ${column((e) => e.hash)}::bytea[])
      returning id, subscriber_id)
    insert into consent_evidence (event_id, evidence)
    select event.id, given.evidence from event
    join unnest(${column((e) => e.subscriberId)}::uuid[], ${column((e) => e.evidence)}::jsonb[]) as given(subscriber_id, evidence)
      on given.subscriber_id = event.subscriber_id`.execute(trx);
}

/** The heads of many subscribers' chains in one statement (chainHead for each); the caller holds their locks. */
export async function chainHeads(trx: Trx, subscriberIds: readonly string[]): Promise<Map<string, { now: Date; prevHash: Buffer | null }>> {
  const { rows } = await sql<{ id: string; now: Date; prev_hash: Buffer | null }>`
    select given.id, date_trunc('milliseconds', now()) as now,
      (select hash from consent_events where subscriber_id = given.id order by id desc limit 1) as prev_hash
    from unnest(${[...subscriberIds]}::uuid[]) as given(id)`.execute(trx);
  return new Map(rows.map((row) => [row.id, { now: row.now, prevHash: row.prev_hash }]));
}

export interface VerifiedEvent {
  id: string;
  listId: string | null;
  kind: ConsentEventKind;
  occurredAt: Date;
  hash: string;
  evidence: Evidence | null;
  /** This event's hash, link and (where still held) evidence all check out. */
  verified: boolean;
}

export interface ChainVerification {
  verified: boolean;
  events: VerifiedEvent[];
}

/** Recomputes a subscriber's chain from the stored rows. */
export async function verifyChain(db: Database | Trx, subscriberId: string): Promise<ChainVerification> {
  const rows = await db
    .selectFrom('consent_events as e')
    .leftJoin('consent_evidence as v', 'v.event_id', 'e.id')
    .select(['e.id', 'e.list_id', 'e.kind', 'e.occurred_at', 'e.evidence_hash', 'e.prev_hash', 'e.hash', 'v.evidence'])
    .where('e.subscriber_id', '=', subscriberId)
    .orderBy('e.id')
    .execute();
  let previous: Buffer | null = null;
  const events = rows.map((row): VerifiedEvent => {
    const linked = previous === null ? row.prev_hash === null : row.prev_hash !== null && previous.equals(row.prev_hash);
    const recomputed = eventHash({
      subscriberId, listId: row.list_id, kind: row.kind, occurredAt: row.occurred_at,
      evidenceHash: row.evidence_hash, prevHash: row.prev_hash,
    });
    const evidenceHolds = row.evidence === null || evidenceHash(row.evidence).equals(row.evidence_hash);
    previous = row.hash;
    return {
      id: row.id, listId: row.list_id, kind: row.kind, occurredAt: row.occurred_at, hash: row.hash.toString('hex'),
      evidence: row.evidence, verified: linked && recomputed.equals(row.hash) && evidenceHolds,
    };
  });
  return { verified: events.every((event) => event.verified), events };
}

/** Every subscriber's chain recomputed, the erased too, in id order: a page of ids at a time, never all in memory. */
export async function* verifyEveryChain(db: Database): AsyncGenerator<{ subscriberId: string; verified: boolean }> {
  for (let after = '00000000-0000-0000-0000-000000000000'; ;) {
    const page = await subscriberIdsAfter(db, after, 500);
    if (page.length === 0) return;
    for (const subscriberId of page) yield { subscriberId, verified: (await verifyChain(db, subscriberId)).verified };
    after = page.at(-1)!;
  }
}
