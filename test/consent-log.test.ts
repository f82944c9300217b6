// The consent log against whoever holds the database: every consent event gets a leaf,
// checkpoints are signed, and each way an operator with full rights (triggers off) could
// rewrite history makes the sequencer refuse to sign again.
import { randomBytes } from 'node:crypto';
import { Migrator } from 'kysely';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { leafHash, TreeBuilder } from '../src/log/merkle.js';
import { openNote, parseCheckpoint, signerFromSeed } from '../src/log/note.js';
import { ConsentLogSequencer, DEFAULT_SEQUENCER_OPTIONS } from '../src/log/sequencer.js';
import { verifyLog } from '../src/log/verify.js';
import { createTestDatabase, migrationFiles, type TestDatabase } from './helpers/db.js';
import { testLogger } from './helpers/logs.js';
import { testConfig } from './helpers/service.js';

const signer = signerFromSeed('assent.test/consent-log', randomBytes(32));
const log = testLogger(testConfig());

let tdb: TestDatabase;
beforeEach(async () => { tdb = await createTestDatabase(); });
afterEach(async () => { await tdb.drop(); });

function sequencer(options: Partial<typeof DEFAULT_SEQUENCER_OPTIONS> = {}) {
  return new ConsentLogSequencer(tdb.db, log, { ...DEFAULT_SEQUENCER_OPTIONS, ...options, origin: 'assent.test/consent-log', signer });
}

/** Events as real signups leave them: a chain per subscriber, hashed as the ledger does. */
async function seedEvents(people: number): Promise<string[]> {
  const { appendConsentEvent, chainHead } = await import('../src/consent/ledger.js');
  const ids: string[] = [];
  for (let i = 0; i < people; i += 1) {
    await tdb.db.transaction().execute(async (trx) => {
      const { rows } = await tdb.query<{ id: string }>(`insert into subscribers (email) values ($1) returning id`, [`p${i}.${randomBytes(3).toString('hex')}@example.org`]);
      const id = rows[0]!.id;
      ids.push(id);
      for (const kind of ['requested', 'confirmed'] as const) {
        await appendConsentEvent(trx, await chainHead(trx, id), { subscriberId: id, listId: null, kind, evidence: { n: i } });
      }
    });
  }
  return ids;
}

/** The tree recomputed from the events in leaf order, as `assent log verify` does. */
async function recomputedRoot(size: number): Promise<Buffer> {
  const { rows } = await tdb.query<{ hash: Buffer }>(`
    select e.hash from consent_log_entries l join consent_events e on e.id = l.event_id where l.log_index < $1 order by l.log_index`, [size]);
  const builder = new TreeBuilder();
  for (const row of rows) builder.push(leafHash(row.hash));
  return builder.root();
}

/** SQL as an operator with full rights runs it: triggers and foreign keys off. */
const asOperator = (statements: string) => tdb.query(`begin; set local session_replication_role = replica; ${statements}; commit;`);

describe('a database that held events before the log existed', () => {
  it('has them appended by the migration, in id order, and signed in the first checkpoint', async () => {
    const migrator = new Migrator({ db: tdb.db, provider: { getMigrations: migrationFiles } });
    expect((await migrator.migrateTo('0005_create_preferences_link_requests')).error).toBeUndefined();
    // Events as the old code wrote them: no txid column yet.
    const { rows } = await tdb.query<{ id: string }>(`insert into subscribers (email) values ('early@example.org'), ('earlier@example.org') returning id`);
    for (const [i, { id }] of rows.entries()) {
      for (const kind of ['requested', 'confirmed']) {
        await tdb.query(`insert into consent_events (subscriber_id, list_id, kind, occurred_at, evidence_hash, hash) values ($1, null, $2, now(), $3, $3)`,
          [id, kind, Buffer.alloc(32, i * 2 + (kind === 'confirmed' ? 1 : 0))]);
      }
    }
    expect((await migrator.migrateToLatest()).error).toBeUndefined();
    const entries = await tdb.query('select log_index::int as i, event_id from consent_log_entries order by log_index');
    const events = await tdb.query('select id from consent_events order by id');
    expect(entries.rows.map((r) => r.event_id)).toEqual(events.rows.map((r) => r.id));
    expect(entries.rows.map((r) => r.i)).toEqual([0, 1, 2, 3]);
    await seedEvents(1); // and what is written after the migration follows them
    const round = await sequencer().runOnce(Date.now(), { forceCheckpoint: true });
    expect(round).toMatchObject({ appended: 6, signed: { size: 6 } });
    expect(parseCheckpoint(openNote(round.signed!.note, [signer]).text).root.equals(await recomputedRoot(6))).toBe(true);
  });
});

describe('sequencing and checkpoints', () => {
  it('gives every committed event a leaf in order and signs a checkpoint of the tree they make', async () => {
    await seedEvents(5);
    const seq = sequencer();
    const round = await seq.runOnce(Date.now(), { forceCheckpoint: true });
    expect(round).toMatchObject({ appended: 10, signed: { size: 10 } });
    const { text } = openNote(round.signed!.note, [signer]);
    const checkpoint = parseCheckpoint(text);
    expect(checkpoint).toMatchObject({ origin: 'assent.test/consent-log', size: 10 });
    expect(checkpoint.root.equals(await recomputedRoot(10))).toBe(true);
    const { rows } = await tdb.query(`select l.log_index::int as i, e.id from consent_log_entries l join consent_events e on e.id = l.event_id order by l.log_index`);
    expect(rows.map((r) => r.id)).toEqual([...rows.map((r) => r.id)].sort((a, b) => Number(a) - Number(b)));

    const intact = await verifyLog(tdb.db, [], { key: signer, lateEventToleranceMs: DEFAULT_SEQUENCER_OPTIONS.lateEventToleranceMs });
    expect(intact).toMatchObject({ ok: true, size: 10, checked: 1, unlogged: { count: 0 } });
    await seedEvents(3);
    const next = await seq.runOnce(Date.now(), { forceCheckpoint: true });
    expect(next).toMatchObject({ appended: 6, signed: { size: 16 } });
    expect(parseCheckpoint(openNote(next.signed!.note, [signer]).text).root.equals(await recomputedRoot(16))).toBe(true);
  });

  it('waits for a transaction still open, and gives its events leaves once it commits, after the ones committed before', async () => {
    await seedEvents(1);
    const seq = sequencer();
    expect((await seq.runOnce()).appended).toBe(2);
    // A transaction that wrote an event (a lower id) and has not committed yet.
    const slow = new pg.Client({ connectionString: tdb.url });
    await slow.connect();
    await slow.query('begin');
    const { rows } = await slow.query<{ id: string }>(`
      insert into consent_events (subscriber_id, list_id, kind, occurred_at, evidence_hash, hash)
      select id, null, 'requested', now(), $1, $1 from subscribers limit 1 returning id`, [Buffer.alloc(32, 7)]);
    const slowId = rows[0]!.id;
    await seedEvents(1);
    expect((await seq.runOnce()).appended).toBe(2);
    await slow.query('commit');
    await slow.end();
    expect((await seq.runOnce()).appended).toBe(1);
    const order = await tdb.query<{ event_id: string }>('select event_id from consent_log_entries order by log_index');
    expect(order.rows.map((r) => r.event_id).at(-1)).toBe(slowId);
    expect(Number(slowId)).toBeLessThan(Number(order.rows.at(-2)!.event_id));
  });

  it('signs at most once per interval, and only when the tree grew', async () => {
    await seedEvents(1);
    const seq = sequencer({ checkpointIntervalMs: 60_000 });
    const start = Date.now();
    expect((await seq.runOnce(start)).signed?.size).toBe(2);
    await seedEvents(1);
    expect((await seq.runOnce(start + 1_000)).signed).toBeUndefined();
    expect((await seq.runOnce(start + 61_000)).signed?.size).toBe(4);
    expect((await seq.runOnce(start + 200_000)).signed).toBeUndefined();
  });
});

describe('an operator with full database rights rewriting history', () => {
  /** Five people's events, logged and checkpointed; then one more event so a checkpoint is due again. */
  async function loggedHistory() {
    const people = await seedEvents(5);
    const seq = sequencer();
    const first = await seq.runOnce(Date.now(), { forceCheckpoint: true });
    expect(first.signed?.size).toBe(10);
    return { people, seq };
  }

  async function expectHalted(seq: ConsentLogSequencer, reason: RegExp) {
    // An auditor's copy of checkpoint 10, kept outside the database, also tells.
    const kept = (await tdb.query('select note from consent_log_checkpoints where size = 10')).rows[0].note as string;
    const verification = await verifyLog(tdb.db, [{ source: 'kept.txt', checkpoint: parseCheckpoint(openNote(kept, [signer]).text) }],
      { key: signer, lateEventToleranceMs: DEFAULT_SEQUENCER_OPTIONS.lateEventToleranceMs });
    expect(verification.ok).toBe(false);
    expect(verification.parted?.size ?? verification.backdated).toBeTruthy();
    if (verification.parted) expect(verification.parted.size).toBe(10);
    await seedEvents(1); // honest work goes on meanwhile
    const round = await seq.runOnce(Date.now(), { forceCheckpoint: true });
    expect(round.signed).toBeUndefined();
    expect(round.halted).toMatch(reason);
    const { rows } = await tdb.query('select max(size)::int as size from consent_log_checkpoints');
    expect(rows[0].size).toBe(10);
    // It stays halted: a later round signs nothing either.
    expect((await seq.runOnce(Date.now(), { forceCheckpoint: true })).signed).toBeUndefined();
  }

  it('deleting the last event of a chain stops the signing', async () => {
    const { people, seq } = await loggedHistory();
    await asOperator(`delete from consent_events where id = (select max(id) from consent_events where subscriber_id = '${people[2]}')`);
    await expectHalted(seq, /is gone from the database/);
  });

  it('rewriting an event and re-hashing the whole chain stops the signing', async () => {
    const { people, seq } = await loggedHistory();
    const { eventHash, evidenceHash } = await import('../src/consent/ledger.js');
    const { rows } = await tdb.query(`select id, subscriber_id, list_id, kind, occurred_at from consent_events where subscriber_id = $1 order by id`, [people[1]]);
    let prev: Buffer | null = null;
    for (const [i, row] of rows.entries()) {
      const evidence = { n: i === 0 ? 'rewritten' : 1, time: row.occurred_at.toISOString() };
      const evHash = evidenceHash(evidence);
      const hash = eventHash({ subscriberId: row.subscriber_id, listId: row.list_id, kind: row.kind, occurredAt: row.occurred_at, evidenceHash: evHash, prevHash: prev });
      await asOperator(`update consent_events set evidence_hash = '\\x${evHash.toString('hex')}', prev_hash = ${prev ? `'\\x${prev.toString('hex')}'` : 'null'}, hash = '\\x${hash.toString('hex')}' where id = ${row.id}`);
      prev = hash;
    }
    await expectHalted(seq, /is not what the log holds/);
  });

  it('deleting a whole subscriber with their events stops the signing', async () => {
    const { people, seq } = await loggedHistory();
    await asOperator(`delete from consent_evidence where event_id in (select id from consent_events where subscriber_id = '${people[0]}');
      delete from consent_events where subscriber_id = '${people[0]}'; delete from subscribers where id = '${people[0]}'`);
    await expectHalted(seq, /is gone from the database/);
  });

  it('reordering two events stops the signing, whether the events or their leaves are swapped', async () => {
    const { seq } = await loggedHistory();
    await asOperator(`
      update consent_log_entries set event_id = -event_id where log_index in (3, 4);
      update consent_log_entries l set event_id = (select -event_id from consent_log_entries where log_index = 7 - l.log_index) where log_index in (3, 4)`);
    await expectHalted(seq, /is not what the log holds/);
  });

  it('re-tiling the tree after a rewrite stops the signing: it no longer extends the checkpoint', async () => {
    const { people, seq } = await loggedHistory();
    await asOperator(`delete from consent_log_entries where log_index >= 8; delete from consent_log_tiles;
      delete from consent_events where subscriber_id = '${people[4]}'; update consent_log_state set tiled_size = 0`);
    await expectHalted(seq, /no longer gives checkpoint 10/);
  });

  it('inserting a fabricated event dated in the past stops the signing', async () => {
    const { people, seq } = await loggedHistory();
    const { eventHash, evidenceHash } = await import('../src/consent/ledger.js');
    const { rows } = await tdb.query(`select hash from consent_events where subscriber_id = $1 order by id desc limit 1`, [people[3]]);
    const occurredAt = new Date(Date.now() - 30 * 24 * 3600_000);
    const evidence = { ip: '203.0.113.9', time: occurredAt.toISOString() };
    const hash = eventHash({ subscriberId: people[3]!, listId: null, kind: 'confirmed', occurredAt, evidenceHash: evidenceHash(evidence), prevHash: rows[0].hash });
    await tdb.query(`insert into consent_events (subscriber_id, list_id, kind, occurred_at, evidence_hash, prev_hash, hash) values ($1, null, 'confirmed', $2, $3, $4, $5)`,
      [people[3], occurredAt, evidenceHash(evidence), rows[0].hash, hash]);
    await expectHalted(seq, /written afterwards with an earlier date/);
  });
});
