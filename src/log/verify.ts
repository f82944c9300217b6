// `assent log verify`: the whole tree recomputed from the events in the database, in leaf
// order, and compared with every stored checkpoint and every checkpoint kept elsewhere (a
// file an auditor saved, a receipt's). What the sequencer checks in slices, this checks at
// once, in constant memory (TreeBuilder keeps only the tree's right edge).
import type { Database } from '../db/database.js';
import { leafHash, TreeBuilder } from './merkle.js';
import { type Checkpoint, NoteError, openNote, parseCheckpoint, type VerifierKey } from './note.js';
import * as store from './store.js';
import { TILE_WIDTH, type TileKey, tileName } from './tiles.js';

const tilesCovering = (from: number, to: number): TileKey[] => {
  const keys: TileKey[] = [];
  for (let index = Math.floor(from / TILE_WIDTH); index * TILE_WIDTH < to; index += 1) keys.push({ level: 0, index });
  return keys;
};

export interface TrustedCheckpoint {
  /** Where it came from, for the report: "stored", a file name, "receipt". */
  source: string;
  checkpoint: Checkpoint;
}

export interface LogVerification {
  ok: boolean;
  size: number;
  /** The first checkpoint the database no longer gives, and why; undefined when all hold. */
  parted?: { size: number; source: string; reason: string };
  /** The first leaf that is not what the database holds for it, when one was found. */
  firstBadLeaf?: { index: number; reason: string };
  /** Events the log has not taken yet (the sequencer's next round), and the oldest one's time. */
  unlogged: { count: number; oldest: Date | null };
  /** An event not in the log, dated before the newest checkpoint was signed: written afterwards, backdated. */
  backdated?: string;
  checked: number;
}

/** Opens checkpoint notes under `key`; a note that fails is a problem of its own, named by its source. */
export function openCheckpoints(notes: { source: string; note: string }[], key: VerifierKey): { trusted: TrustedCheckpoint[]; problems: string[] } {
  const trusted: TrustedCheckpoint[] = [];
  const problems: string[] = [];
  for (const { source, note } of notes) {
    try {
      trusted.push({ source, checkpoint: parseCheckpoint(openNote(note, [key]).text) });
    } catch (error) {
      problems.push(`${source}: ${error instanceof NoteError ? error.message : String(error)}`);
    }
  }
  return { trusted, problems };
}

export async function verifyLog(db: Database, extra: TrustedCheckpoint[], options: { key: VerifierKey; chunk?: number; lateEventToleranceMs: number }): Promise<LogVerification> {
  const stored = openCheckpoints((await store.allCheckpoints(db)).map((c) => ({ source: `stored checkpoint ${c.size}`, note: c.note })), options.key);
  if (stored.problems.length > 0) {
    return { ok: false, size: 0, parted: { size: 0, source: 'stored checkpoints', reason: stored.problems[0]! }, unlogged: { count: 0, oldest: null }, checked: 0 };
  }
  const targets = [...stored.trusted, ...extra].sort((a, b) => a.checkpoint.size - b.checkpoint.size);
  const size = await store.countEntries(db);
  const chunk = options.chunk ?? 50_000;
  const builder = new TreeBuilder();
  let next = 0; // the next target to compare
  let parted: LogVerification['parted'];
  let firstBadLeaf: LogVerification['firstBadLeaf'];
  const compare = () => {
    while (next < targets.length && targets[next]!.checkpoint.size === builder.size) {
      const target = targets[next]!;
      if (!parted && !builder.root().equals(target.checkpoint.root)) {
        parted = { size: target.checkpoint.size, source: target.source, reason: 'the events in the database do not give its root' };
      }
      next += 1;
    }
  };
  compare();
  for (let from = 0; from < size && !parted; from += chunk) {
    const to = Math.min(size, from + chunk);
    const leaves = await store.readLeaves(db, from, to);
    // The stored tiles say what each leaf was when it was logged: the first that differs is named.
    const tiles = await store.readTiles(db, tilesCovering(from, to));
    for (const leaf of leaves) {
      if (leaf.logIndex !== builder.size) {
        firstBadLeaf ??= { index: builder.size, reason: 'the leaf is gone from the database' };
        break;
      }
      if (!leaf.eventHash) {
        firstBadLeaf ??= { index: leaf.logIndex, reason: `event ${leaf.eventId} is gone from the database` };
        break;
      }
      const hash = leafHash(leaf.eventHash);
      const tile = tiles.get(tileName({ level: 0, index: Math.floor(leaf.logIndex / TILE_WIDTH) }));
      const offset = (leaf.logIndex % TILE_WIDTH) * 32;
      if (tile && tile.length >= offset + 32 && !hash.equals(tile.subarray(offset, offset + 32))) {
        firstBadLeaf ??= { index: leaf.logIndex, reason: `event ${leaf.eventId} is not what the log holds for it` };
      }
      builder.push(hash);
      compare();
      if (parted) break;
    }
    if (firstBadLeaf) break;
  }
  if (!parted && next < targets.length) {
    const target = targets[next]!;
    parted = { size: target.checkpoint.size, source: target.source, reason: firstBadLeaf
      ? `leaf ${firstBadLeaf.index}: ${firstBadLeaf.reason}`
      : `the database holds ${builder.size} leaves, fewer than it signed` };
  }
  const unlogged = await store.countUnloggedEvents(db);
  const latest = await store.latestCheckpoint(db);
  const backdated = latest && unlogged.oldest && unlogged.oldest.getTime() < latest.signedAt.getTime() - options.lateEventToleranceMs
    ? `an event dated ${unlogged.oldest.toISOString()} is not in the log, though checkpoint ${latest.size} was signed after it (${latest.signedAt.toISOString()})`
    : undefined;
  return {
    ok: !parted && !firstBadLeaf && !backdated, size, ...(parted && { parted }), ...(firstBadLeaf && { firstBadLeaf }),
    ...(backdated && { backdated }), unlogged, checked: targets.length,
  };
}
