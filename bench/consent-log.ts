// The consent log at a million leaves: a million consent events written in one statement
// (the ceiling: PostgreSQL's own rate for those rows), the sequencer giving them their leaves,
// tiling and signing (events sequenced per second), then inclusion and consistency proofs on
// the tree of a million, beside the cheapest thing a proof could be: one primary-key read.
// Runs in this process against the run's database, as a worker's sequencer would.
import type pg from 'pg';
import pino from 'pino';
import { createDatabase } from '../src/db/database.js';
import { ConsentLog } from '../src/log/consent-log.js';
import { parseConsentLogKey } from '../src/log/keys.js';
import { DEFAULT_SEQUENCER_OPTIONS, ConsentLogSequencer } from '../src/log/sequencer.js';
import { BENCH_LOG_KEY } from './service.js';

const EVENTS = 1_000_000;
const PROOFS = 2_000;
const ORIGIN = 'assent.bench.example/consent-log';

export interface ConsentLogResult {
  events: number;
  insertSeconds: number;
  sequenceSeconds: number;
  treeSize: number;
  inclusionUs: number;
  consistencyUs: number;
  lookupUs: number;
}

const seconds = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e9;

async function perCallUs(count: number, call: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 50; i += 1) await call(i); // warm: statements prepared, pages cached
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i += 1) await call(i);
  return Number(process.hrtime.bigint() - started) / 1e3 / count;
}

/** Needs the million subscribers the audience part seeded (prefix `m-`): one event each. */
export async function benchConsentLog(databaseUrl: string, admin: pg.Pool): Promise<ConsentLogResult> {
  const signer = parseConsentLogKey(BENCH_LOG_KEY, ORIGIN);
  if (signer instanceof Error) throw signer;
  const db = createDatabase(databaseUrl, { max: 4 });
  try {
    const sequencer = new ConsentLogSequencer(db, pino({ level: 'silent' }), { ...DEFAULT_SEQUENCER_OPTIONS, origin: ORIGIN, signer });
    await sequencer.runOnce(Date.now(), { forceCheckpoint: true }); // what earlier parts left unlogged

    const insertStarted = process.hrtime.bigint();
    const { rowCount } = await admin.query(`
      insert into consent_events (subscriber_id, kind, occurred_at, evidence_hash, prev_hash, hash)
      select id, 'confirmed', now(), sha256(convert_to(id::text, 'UTF8')), null, sha256(convert_to(id::text || 'e', 'UTF8'))
      from subscribers where email like 'm-%' order by email limit $1`, [EVENTS]);
    const insertSeconds = seconds(insertStarted);

    const sequenceStarted = process.hrtime.bigint();
    let appended = 0;
    for (;;) {
      const round = await sequencer.runOnce(Date.now(), { forceCheckpoint: true });
      if (round.halted) throw new Error(`the log halted: ${round.halted}`);
      appended += round.appended;
      if (round.appended === 0) break;
    }
    const sequenceSeconds = seconds(sequenceStarted);
    if (appended < rowCount!) throw new Error(`sequenced ${appended} of ${rowCount} events`);

    const log = new ConsentLog(db, { origin: ORIGIN, signer });
    const size = await log.treeSize();
    const { rows: ids } = await admin.query<{ id: string }>('select id from consent_events order by random() limit $1', [PROOFS]);
    // A fixed stride over the tree, so every run asks for the same spread of leaves.
    const index = (i: number) => (i * 7_919 * 127) % size;
    const inclusionUs = await perCallUs(PROOFS, (i) => log.inclusionProof({ index: String(index(i)), size: String(size) }));
    const consistencyUs = await perCallUs(PROOFS, (i) => log.consistencyProof({ from: String(1 + index(i)), to: String(size) }));
    const lookupUs = await perCallUs(PROOFS, (i) => db.selectFrom('consent_events').select('hash').where('id', '=', ids[i % ids.length]!.id).executeTakeFirst());
    return { events: rowCount!, insertSeconds, sequenceSeconds, treeSize: size, inclusionUs, consistencyUs, lookupUs };
  } finally {
    await db.destroy();
  }
}
