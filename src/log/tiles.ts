// How the consent log's tree is kept: in tiles, as c2sp.org/tlog-tiles does. A tile of level
// t holds up to 256 consecutive hashes of the tree's nodes at height 8·t: level 0 the leaf
// hashes, level 1 the roots of full level-0 tiles, and so on. Any perfect subtree's hash is
// then at most seven hashing steps away from one tile, so a proof for a tree of 10 million
// leaves reads a handful of 8 KB rows (merkle.ts says which subtrees, this file which tiles),
// and the store holds about 32 bytes per leaf: the leaf hashes plus 1/255 more above them.
//
// Only the rightmost tile of each level is ever rewritten (while it fills); a full tile never
// changes. Everything here is derived from the events and can be recomputed from them, which
// is what verification does (log/audit.ts).
import { HASH_SIZE, type NodeId, type NodeReader, nodeHash } from './merkle.js';

export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 2 ** TILE_HEIGHT;

export interface TileKey {
  level: number;
  index: number;
}

export const tileName = (tile: TileKey) => `${tile.level}/${tile.index}`;

/** Where a perfect subtree's hash comes from: `count` entries of one tile, from `offset`. */
export function tileSpan(node: NodeId): { tile: TileKey; offset: number; count: number } {
  const level = Math.floor(node.level / TILE_HEIGHT);
  const count = 2 ** (node.level % TILE_HEIGHT);
  const first = node.index * count; // its first entry at height 8·level
  return { tile: { level, index: Math.floor(first / TILE_WIDTH) }, offset: first % TILE_WIDTH, count };
}

/** The root of a perfect subtree over `count` consecutive entries (a power of two) of a tile. */
export function perfectRoot(hashes: Buffer, offset: number, count: number): Buffer {
  let level: Buffer[] = [];
  for (let i = 0; i < count; i += 1) level.push(entry(hashes, offset + i));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    level = next;
  }
  return level[0]!;
}

function entry(hashes: Buffer, i: number): Buffer {
  if ((i + 1) * HASH_SIZE > hashes.length) throw new Error(`tile entry ${i} is missing`);
  return hashes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
}

/** Reads tiles by key, many at once; a missing tile is absent from the map. */
export type TileReader = (tiles: TileKey[]) => Promise<Map<string, Buffer>>;

/** A NodeReader over tiles: one read for every tile the nodes need. */
export function tileNodeReader(readTiles: TileReader): NodeReader {
  return async (nodes) => {
    const spans = nodes.map(tileSpan);
    const wanted = new Map(spans.map((span) => [tileName(span.tile), span.tile]));
    const tiles = await readTiles([...wanted.values()]);
    return spans.map((span) => {
      const hashes = tiles.get(tileName(span.tile));
      if (!hashes) throw new Error(`tile ${tileName(span.tile)} is missing`);
      return perfectRoot(hashes, span.offset, span.count);
    });
  };
}

/** How many entries tile level `level` holds in a tree of `size` leaves. */
export const entriesAt = (size: number, level: number) => Math.floor(size / TILE_WIDTH ** level);

/** The rightmost, partly filled tile of each level in a tree of `size`: what appending rewrites. */
export function rightEdge(size: number): TileKey[] {
  const tiles: TileKey[] = [];
  for (let level = 0; entriesAt(size, level) > 0; level += 1) {
    const entries = entriesAt(size, level);
    if (entries % TILE_WIDTH !== 0) tiles.push({ level, index: Math.floor(entries / TILE_WIDTH) });
  }
  return tiles;
}

/**
 * Appends leaf hashes to a tree of `size` whose right edge is given (rightEdge's tiles), and
 * says which tiles changed, with their new contents. A tile that fills passes its root up.
 */
export function appendLeaves(size: number, edge: Map<string, Buffer>, leaves: Buffer[]): Map<string, { key: TileKey; hashes: Buffer }> {
  // Each touched tile is written into a full-width buffer once, not copied per leaf.
  const open = new Map<string, { key: TileKey; buffer: Buffer; length: number }>();
  const tile = (key: TileKey) => {
    const name = tileName(key);
    let found = open.get(name);
    if (!found) {
      const stored = edge.get(name) ?? Buffer.alloc(0);
      const buffer = Buffer.alloc(TILE_WIDTH * HASH_SIZE);
      stored.copy(buffer);
      found = { key, buffer, length: stored.length };
      open.set(name, found);
    }
    return found;
  };
  leaves.forEach((leaf, i) => {
    let hash = leaf;
    let entry = size + i; // the new entry's position at this level
    for (let level = 0; ; level += 1) {
      const target = tile({ level, index: Math.floor(entry / TILE_WIDTH) });
      if (target.length !== (entry % TILE_WIDTH) * HASH_SIZE) throw new Error(`tile ${tileName(target.key)} does not end where the tree does`);
      hash.copy(target.buffer, target.length);
      target.length += HASH_SIZE;
      if ((entry + 1) % TILE_WIDTH !== 0) break;
      hash = perfectRoot(target.buffer, 0, TILE_WIDTH); // a full tile's root is the next level's entry
      entry = Math.floor(entry / TILE_WIDTH);
    }
  });
  return new Map([...open].map(([name, t]) => [name, { key: t.key, hashes: t.buffer.subarray(0, t.length) }]));
}
