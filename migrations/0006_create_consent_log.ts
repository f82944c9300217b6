// The consent log: every consent event becomes a leaf of one append-only Merkle tree
// (RFC 9162), whose signed checkpoints leave the operator's hands. docs/consent-log.md says
// why it is shaped so. Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // The transaction that wrote each event. Transaction ids only grow, and every transaction
  // below the oldest one still running has ended: so the sequencer can find every event
  // committed since its last run without gaps (docs/consent-log.md). Events written before
  // this column existed have none; they are appended below.
  await sql`alter table consent_events add column txid xid8`.execute(db);
  await sql`alter table consent_events alter column txid set default pg_current_xact_id()`.execute(db);
  await sql`create index consent_events_txid on consent_events (txid)`.execute(db);

  // The leaves, in log order: leaf i is the hash of event event_id.
  await sql`
    create table consent_log_entries (
      log_index bigint primary key check (log_index >= 0),
      event_id bigint not null unique references consent_events (id)
    )`.execute(db);
  await sql`
    create trigger consent_log_entries_append_only before update or delete on consent_log_entries
    for each row execute function refuse_change()`.execute(db);
  await sql`
    create trigger consent_log_entries_no_truncate before truncate on consent_log_entries
    for each statement execute function refuse_change()`.execute(db);

  // The tree, as tiles of up to 256 node hashes (c2sp.org/tlog-tiles): derived from the
  // entries, rewritten only at the right edge, recomputable at any time.
  await sql`
    create table consent_log_tiles (
      level smallint not null check (level >= 0),
      index bigint not null check (index >= 0),
      hashes bytea not null check (length(hashes) % 32 = 0 and length(hashes) between 32 and 8192),
      primary key (level, index)
    )`.execute(db);

  // Every signed checkpoint, kept for ever: each later one must be consistent with it.
  await sql`
    create table consent_log_checkpoints (
      size bigint primary key check (size >= 0),
      root bytea not null check (length(root) = 32),
      note text not null,
      signed_at timestamptz not null default now()
    )`.execute(db);
  await sql`
    create trigger consent_log_checkpoints_append_only before update or delete on consent_log_checkpoints
    for each row execute function refuse_change()`.execute(db);
  // RFC 3161 time-stamp tokens over checkpoints (TSA_URL), added once the authority answers.
  await sql`
    create table consent_log_timestamps (
      size bigint primary key references consent_log_checkpoints (size),
      token bytea not null,
      stamped_at timestamptz not null
    )`.execute(db);

  // The sequencer's place: how many entries are tiled, the transaction horizon below which
  // every event has an entry, and why it stopped signing, if it did.
  await sql`
    create table consent_log_state (
      id smallint primary key check (id = 1),
      tiled_size bigint not null default 0,
      horizon xid8,
      halted_reason text,
      halted_at timestamptz
    )`.execute(db);
  await sql`insert into consent_log_state (id) values (1)`.execute(db);

  // What was recorded before the log existed, appended now in id order. The ALTER above
  // locked consent_events, so no event can commit in between.
  await sql`
    insert into consent_log_entries (log_index, event_id)
    select row_number() over (order by id) - 1, id from consent_events order by id`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table consent_log_state, consent_log_timestamps, consent_log_checkpoints, consent_log_tiles, consent_log_entries`.execute(db);
  await sql`alter table consent_events drop column txid`.execute(db);
}
