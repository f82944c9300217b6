// The consent log's SQL: one exported function per statement.
import { sql } from 'kysely';
import type { Database, Trx } from '../db/database.js';
import { type TileKey, tileName } from './tiles.js';

type Db = Database | Trx;

/** One sequencer at a time, in any process: a transaction-level advisory lock ("assent log"). */
const SEQUENCER_LOCK = 0x6173_7365_6e74_6c6fn;

export async function trySequencerLock(trx: Trx): Promise<boolean> {
  const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${SEQUENCER_LOCK}) as locked`.execute(trx);
  return rows[0]!.locked;
}

export interface LogState {
  tiledSize: number;
  horizon: string | null;
  haltedReason: string | null;
  haltedAt: Date | null;
}

export async function readState(db: Db): Promise<LogState> {
  const { rows } = await sql<{ tiled_size: string; horizon: string | null; halted_reason: string | null; halted_at: Date | null }>`
    select tiled_size, horizon::text as horizon, halted_reason, halted_at from consent_log_state where id = 1`.execute(db);
  const row = rows[0]!;
  return { tiledSize: Number(row.tiled_size), horizon: row.horizon, haltedReason: row.halted_reason, haltedAt: row.halted_at };
}

export interface NewLogEvent {
  id: string;
  occurredAt: Date;
}

/**
 * Every event committed since the last run that has no leaf yet, in id order, and the
 * horizon to remember: the oldest transaction still running. Any event written by a
 * transaction below it has ended up visible here or never will, so the next run only looks
 * at transactions from the horizon on. One statement, so both come from one snapshot.
 */
export async function findUnloggedEvents(trx: Trx, horizon: string | null): Promise<{ events: NewLogEvent[]; horizon: string }> {
  const { rows } = await sql<{ id: string | null; occurred_at: Date | null; xmin: string }>`
    with fresh as (
      select e.id, e.occurred_at from consent_events e
      where e.txid >= coalesce(${horizon}::xid8, '0'::xid8)
        and not exists (select 1 from consent_log_entries l where l.event_id = e.id)
    )
    select fresh.id, fresh.occurred_at, pg_snapshot_xmin(pg_current_snapshot())::text as xmin
    from (select 1) one left join fresh on true
    order by fresh.id`.execute(trx);
  return {
    events: rows.filter((row) => row.id !== null).map((row) => ({ id: row.id!, occurredAt: row.occurred_at! })),
    horizon: rows[0]!.xmin,
  };
}

/** Gives the events leaves after the last one, in the order given. Returns the log size after. */
export async function appendEntries(trx: Trx, eventIds: string[]): Promise<number> {
  const { rows } = await sql<{ size: string }>`
    with base as (select coalesce(max(log_index) + 1, 0) as next from consent_log_entries),
    added as (
      insert into consent_log_entries (log_index, event_id)
      select base.next + e.ord - 1, e.id from base, unnest(${eventIds}::bigint[]) with ordinality as e(id, ord)
      returning log_index
    )
    select coalesce((select max(log_index) + 1 from added), (select next from base)) as size`.execute(trx);
  return Number(rows[0]!.size);
}

export async function countEntries(db: Db): Promise<number> {
  const { rows } = await sql<{ size: string }>`select coalesce(max(log_index) + 1, 0) as size from consent_log_entries`.execute(db);
  return Number(rows[0]!.size);
}

export interface Leaf {
  logIndex: number;
  eventId: string;
  /** The event's hash as the database holds it now; null when the event is gone. */
  eventHash: Buffer | null;
}

/** The leaves [from, to) with their events' hashes, in log order. */
export async function readLeaves(db: Db, from: number, to: number): Promise<Leaf[]> {
  const { rows } = await sql<{ log_index: string; event_id: string; hash: Buffer | null }>`
    select l.log_index, l.event_id, e.hash
    from consent_log_entries l left join consent_events e on e.id = l.event_id
    where l.log_index >= ${from} and l.log_index < ${to}
    order by l.log_index`.execute(db);
  return rows.map((row) => ({ logIndex: Number(row.log_index), eventId: row.event_id, eventHash: row.hash }));
}

export async function readTiles(db: Db, keys: TileKey[]): Promise<Map<string, Buffer>> {
  if (keys.length === 0) return new Map();
  const { rows } = await sql<{ level: number; index: string; hashes: Buffer }>`
    select t.level, t.index, t.hashes from consent_log_tiles t
    join unnest(${keys.map((k) => k.level)}::smallint[], ${keys.map((k) => k.index)}::bigint[]) as k(level, index)
      on t.level = k.level and t.index = k.index`.execute(db);
  return new Map(rows.map((row) => [tileName({ level: row.level, index: Number(row.index) }), row.hashes]));
}

export async function writeTiles(trx: Trx, tiles: { key: TileKey; hashes: Buffer }[]): Promise<void> {
  if (tiles.length === 0) return;
  await sql`
    insert into consent_log_tiles (level, index, hashes)
    select * from unnest(${tiles.map((t) => t.key.level)}::smallint[], ${tiles.map((t) => t.key.index)}::bigint[], ${tiles.map((t) => t.hashes)}::bytea[])
    on conflict (level, index) do update set hashes = excluded.hashes`.execute(trx);
}

export async function saveProgress(trx: Trx, progress: { tiledSize: number; horizon?: string }): Promise<void> {
  await sql`
    update consent_log_state set tiled_size = ${progress.tiledSize}, horizon = coalesce(${progress.horizon ?? null}::xid8, horizon)
    where id = 1`.execute(trx);
}

export async function halt(db: Db, reason: string): Promise<void> {
  await sql`update consent_log_state set halted_reason = ${reason}, halted_at = now() where id = 1 and halted_reason is null`.execute(db);
}

export interface StoredCheckpoint {
  size: number;
  root: Buffer;
  note: string;
  signedAt: Date;
  timestamp: Buffer | null;
}

type CheckpointRow = { size: string; root: Buffer; note: string; signed_at: Date; token: Buffer | null };
const toCheckpoint = (row: CheckpointRow): StoredCheckpoint =>
  ({ size: Number(row.size), root: row.root, note: row.note, signedAt: row.signed_at, timestamp: row.token });

export async function latestCheckpoint(db: Db): Promise<StoredCheckpoint | undefined> {
  const { rows } = await sql<CheckpointRow>`
    select c.size, c.root, c.note, c.signed_at, t.token from consent_log_checkpoints c
    left join consent_log_timestamps t on t.size = c.size
    order by c.size desc limit 1`.execute(db);
  return rows[0] && toCheckpoint(rows[0]);
}

/** The checkpoint of exactly this size, or with `atLeast` the smallest one at least that large. */
export async function findCheckpoint(db: Db, size: number, options: { atLeast?: boolean } = {}): Promise<StoredCheckpoint | undefined> {
  const { rows } = await sql<CheckpointRow>`
    select c.size, c.root, c.note, c.signed_at, t.token from consent_log_checkpoints c
    left join consent_log_timestamps t on t.size = c.size
    where ${options.atLeast ? sql`c.size >= ${size}` : sql`c.size = ${size}`}
    order by c.size limit 1`.execute(db);
  return rows[0] && toCheckpoint(rows[0]);
}

export async function allCheckpoints(db: Db): Promise<{ size: number; root: Buffer; note: string }[]> {
  const { rows } = await sql<{ size: string; root: Buffer; note: string }>`
    select size, root, note from consent_log_checkpoints order by size`.execute(db);
  return rows.map((row) => ({ size: Number(row.size), root: row.root, note: row.note }));
}

export async function insertCheckpoint(trx: Trx, checkpoint: { size: number; root: Buffer; note: string }): Promise<Date> {
  const { rows } = await sql<{ signed_at: Date }>`
    insert into consent_log_checkpoints (size, root, note) values (${checkpoint.size}, ${checkpoint.root}, ${checkpoint.note})
    returning signed_at`.execute(trx);
  return rows[0]!.signed_at;
}

export async function insertTimestamp(db: Db, size: number, token: Buffer, stampedAt: Date): Promise<void> {
  await sql`insert into consent_log_timestamps (size, token, stamped_at) values (${size}, ${token}, ${stampedAt})
    on conflict (size) do nothing`.execute(db);
}

/** Checkpoints still waiting for a time-stamp token, newest first. */
export async function unstampedCheckpoints(db: Db, limit: number): Promise<{ size: number; note: string }[]> {
  const { rows } = await sql<{ size: string; note: string }>`
    select c.size, c.note from consent_log_checkpoints c
    where not exists (select 1 from consent_log_timestamps t where t.size = c.size)
    order by c.size desc limit ${limit}`.execute(db);
  return rows.map((row) => ({ size: Number(row.size), note: row.note }));
}

/** Each event's leaf index, for those that have one. */
export async function logIndexes(db: Db, eventIds: string[]): Promise<Map<string, number>> {
  if (eventIds.length === 0) return new Map();
  const { rows } = await sql<{ event_id: string; log_index: string }>`
    select event_id, log_index from consent_log_entries where event_id = any(${eventIds}::bigint[])`.execute(db);
  return new Map(rows.map((row) => [row.event_id, Number(row.log_index)]));
}

/** Events without a leaf yet, and the oldest one's time: what the sequencer has still to take. */
export async function countUnloggedEvents(db: Db): Promise<{ count: number; oldest: Date | null }> {
  const { rows } = await sql<{ count: string; oldest: Date | null }>`
    select count(*) as count, min(e.occurred_at) as oldest from consent_events e
    where not exists (select 1 from consent_log_entries l where l.event_id = e.id)`.execute(db);
  return { count: Number(rows[0]!.count), oldest: rows[0]!.oldest };
}

export interface SubscriberEvent {
  id: string;
  listId: string | null;
  listSlug: string | null;
  kind: string;
  occurredAt: Date;
  evidenceHash: Buffer;
  prevHash: Buffer | null;
  hash: Buffer;
  evidence: Record<string, unknown> | null;
  logIndex: number | null;
}

/** A subscriber's consent events as their hashes cover them, with the evidence still held and each leaf index: what a receipt is made of. */
export async function subscriberEvents(db: Db, subscriberId: string): Promise<SubscriberEvent[]> {
  const { rows } = await sql<{
    id: string; list_id: string | null; slug: string | null; kind: string; occurred_at: Date; evidence_hash: Buffer;
    prev_hash: Buffer | null; hash: Buffer; evidence: Record<string, unknown> | null; log_index: string | null;
  }>`
    select e.id, e.list_id, l.slug, e.kind, e.occurred_at, e.evidence_hash, e.prev_hash, e.hash, v.evidence, x.log_index
    from consent_events e
    left join lists l on l.id = e.list_id
    left join consent_evidence v on v.event_id = e.id
    left join consent_log_entries x on x.event_id = e.id
    where e.subscriber_id = ${subscriberId}
    order by e.id`.execute(db);
  return rows.map((row) => ({
    id: row.id, listId: row.list_id, listSlug: row.slug, kind: row.kind, occurredAt: row.occurred_at, evidenceHash: row.evidence_hash,
    prevHash: row.prev_hash, hash: row.hash, evidence: row.evidence, logIndex: row.log_index === null ? null : Number(row.log_index),
  }));
}
