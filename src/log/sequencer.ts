// The sequencer: gives committed consent events their leaf in the log, keeps the tree's
// tiles, and signs checkpoints. Any process may run it; an advisory lock makes it one at a
// time. Before each checkpoint it checks that what the database holds still is the tree it
// signed before (docs/consent-log.md): if not, it stops signing for good and says why.
import type { Logger } from 'pino';
import type { Database, Trx } from '../db/database.js';
import { leafHash, rootHash } from './merkle.js';
import { formatCheckpoint, type SignerKey, signNote } from './note.js';
import * as store from './store.js';
import { appendLeaves, entriesAt, perfectRoot, rightEdge, TILE_WIDTH, tileName, tileNodeReader } from './tiles.js';

export interface SequencerOptions {
  /** The log's name, first line of every checkpoint (c2sp.org/tlog-checkpoint). */
  origin: string;
  signer: SignerKey;
  /** At most one checkpoint this often; a new one once new leaves wait this long. */
  checkpointIntervalMs: number;
  /**
   * How long before the newest checkpoint an event may be dated and still be taken: a
   * transaction dates its events when it starts, and may commit a while later. An event
   * older than that is refused as backdated.
   */
  lateEventToleranceMs: number;
  /** Leaves tiled per statement round when catching up. */
  tileChunk: number;
  /** Leaves checked against their events before each checkpoint (the newest first, then in turn). */
  auditChunk: number;
}

export const DEFAULT_SEQUENCER_OPTIONS = {
  checkpointIntervalMs: 30_000,
  lateEventToleranceMs: 15 * 60_000,
  tileChunk: 20_000,
  auditChunk: 100_000,
} satisfies Partial<SequencerOptions>;

export class LogHalted extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'LogHalted';
  }
}

export interface SequencerRound {
  /** Leaves added in this round. */
  appended: number;
  /** The checkpoint signed in this round, if any. */
  signed?: { size: number; note: string };
  /** Set when the log is halted (now or before). */
  halted?: string;
}

const tiles = (db: Database | Trx) => tileNodeReader((keys) => store.readTiles(db, keys));

export class ConsentLogSequencer {
  /** Where the rolling audit goes on from (a leaf index), beyond the newest leaves. */
  private auditFrom = 0;
  /** When the stored tree was last checked (and a checkpoint signed if it grew). */
  private lastAudit = Number.NEGATIVE_INFINITY;

  constructor(private readonly db: Database, private readonly log: Logger, private readonly options: SequencerOptions) {}

  /** Sequences what has committed, and signs a checkpoint when one is due. */
  async runOnce(now = Date.now(), options: { forceCheckpoint?: boolean } = {}): Promise<SequencerRound> {
    const state = await store.readState(this.db);
    if (state.haltedReason) return { appended: 0, halted: state.haltedReason };
    try {
      const appended = await this.sequence();
      const signed = await this.checkpointIfDue(now, options.forceCheckpoint ?? false);
      return { appended, ...(signed && { signed }) };
    } catch (error) {
      if (!(error instanceof LogHalted)) throw error;
      await store.halt(this.db, error.reason);
      this.log.error({ reason: error.reason }, 'consent log halted: no further checkpoint will be signed');
      return { appended: 0, halted: error.reason };
    }
  }

  /** Appends every newly committed event and tiles every entry not yet tiled; returns how many leaves were added. */
  private async sequence(): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      if (!(await store.trySequencerLock(trx))) return 0;
      const state = await store.readState(trx);
      const { events, horizon } = await store.findUnloggedEvents(trx, state.horizon);
      const last = await store.latestCheckpoint(trx);
      if (last && events.length > 0) {
        const oldest = events.reduce((a, b) => (a.occurredAt < b.occurredAt ? a : b));
        if (oldest.occurredAt.getTime() < last.signedAt.getTime() - this.options.lateEventToleranceMs) {
          throw new LogHalted(`event ${oldest.id} is dated ${oldest.occurredAt.toISOString()}, before checkpoint ${last.size} `
            + `was signed (${last.signedAt.toISOString()}), yet it was not in the log: written afterwards with an earlier date`);
        }
      }
      const size = events.length > 0 ? await store.appendEntries(trx, events.map((e) => e.id)) : await store.countEntries(trx);
      let tiled = state.tiledSize;
      while (tiled < size) {
        const leaves = await store.readLeaves(trx, tiled, Math.min(size, tiled + this.options.tileChunk));
        const missing = leaves.find((leaf) => leaf.eventHash === null);
        if (missing) throw new LogHalted(`leaf ${missing.logIndex}: event ${missing.eventId} is gone from the database`);
        if (leaves.length === 0 || leaves[0]!.logIndex !== tiled) throw new LogHalted(`leaf ${tiled} is gone from the database`);
        const edge = await store.readTiles(trx, rightEdge(tiled));
        const changed = appendLeaves(tiled, edge, leaves.map((leaf) => leafHash(leaf.eventHash!)));
        await store.writeTiles(trx, [...changed.values()]);
        tiled += leaves.length;
      }
      await store.saveProgress(trx, { tiledSize: tiled, horizon });
      return tiled - state.tiledSize;
    });
  }

  private async checkpointIfDue(now: number, force: boolean): Promise<{ size: number; note: string } | undefined> {
    return this.db.transaction().execute(async (trx) => {
      if (!(await store.trySequencerLock(trx))) return undefined;
      const { tiledSize: size } = await store.readState(trx);
      const last = await store.latestCheckpoint(trx);
      if (!force && now - this.lastAudit < this.options.checkpointIntervalMs) return undefined;
      // Checked every interval, new leaves or not, so a rewrite is noticed while the log is quiet too.
      await this.audit(trx, size, last);
      this.lastAudit = now;
      if (last && last.size === size) return undefined;
      const root = await rootHash(size, tiles(trx));
      const note = signNote(formatCheckpoint({ origin: this.options.origin, size, root, extensions: [] }), this.options.signer);
      await store.insertCheckpoint(trx, { size, root, note });
      this.log.info({ size }, 'consent log checkpoint signed');
      return { size, note };
    });
  }

  /**
   * That the stored tree still extends the last checkpoint: its tiles give the same root at
   * that size, and the leaves checked here still are their events' hashes (the newest
   * `auditChunk` leaves, then the same number of older ones in turn, so every leaf is
   * checked again and again). A full recomputation is `assent log verify`.
   */
  private async audit(trx: Trx, size: number, last: store.StoredCheckpoint | undefined): Promise<void> {
    if (last) {
      const root = await rootHash(last.size, tiles(trx));
      if (!root.equals(last.root)) throw new LogHalted(`the stored tree no longer gives checkpoint ${last.size}'s root`);
    }
    const chunk = this.options.auditChunk;
    const ranges: [number, number][] = [[Math.max(0, size - chunk), size]];
    if (size > chunk) {
      if (this.auditFrom >= size - chunk) this.auditFrom = 0;
      ranges.push([this.auditFrom, Math.min(size - chunk, this.auditFrom + chunk)]);
      this.auditFrom += chunk;
    }
    for (const [from, to] of ranges) await auditLeaves(trx, from, to);
  }
}

/**
 * Checks leaves [from, to) against the events they stand for, and each full tile among them
 * against the entry it gave the level above. Throws LogHalted naming the first difference.
 */
export async function auditLeaves(db: Database | Trx, from: number, to: number): Promise<void> {
  const start = Math.floor(from / TILE_WIDTH) * TILE_WIDTH;
  const leaves = await store.readLeaves(db, start, to);
  const tileKeys = new Map<string, { level: number; index: number }>();
  for (let index = start / TILE_WIDTH; index * TILE_WIDTH < to; index += 1) {
    tileKeys.set(tileName({ level: 0, index }), { level: 0, index });
    const above = { level: 1, index: Math.floor(index / TILE_WIDTH) };
    tileKeys.set(tileName(above), above);
  }
  const stored = await store.readTiles(db, [...tileKeys.values()]);
  for (let i = 0; i < to - start; i += 1) {
    const leaf = leaves[i];
    const position = start + i;
    if (!leaf || leaf.logIndex !== position) throw new LogHalted(`leaf ${position} is gone from the database`);
    if (!leaf.eventHash) throw new LogHalted(`leaf ${position}: event ${leaf.eventId} is gone from the database`);
    const tile = stored.get(tileName({ level: 0, index: Math.floor(position / TILE_WIDTH) }));
    const offset = (position % TILE_WIDTH) * 32;
    if (!tile || !leafHash(leaf.eventHash).equals(tile.subarray(offset, offset + 32))) {
      throw new LogHalted(`leaf ${position}: event ${leaf.eventId} is not what the log holds for it`);
    }
  }
  for (let index = start / TILE_WIDTH; (index + 1) * TILE_WIDTH <= to && entriesAt(to, 1) > index; index += 1) {
    const tile = stored.get(tileName({ level: 0, index }))!;
    const above = stored.get(tileName({ level: 1, index: Math.floor(index / TILE_WIDTH) }));
    const offset = (index % TILE_WIDTH) * 32;
    if (!above || !perfectRoot(tile, 0, TILE_WIDTH).equals(above.subarray(offset, offset + 32))) {
      throw new LogHalted(`tile 0/${index} is not what the level above holds for it`);
    }
  }
}
