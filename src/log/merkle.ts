// RFC 9162 §2.1 Merkle trees: hashing, audit paths and consistency proofs, and checking them.
//
// Proofs are built from the hashes of *perfect* subtrees (2^level leaves starting at a
// multiple of 2^level), which is all a store needs to keep (tiles.ts). Building a proof is
// therefore two steps: say which perfect subtrees it needs (pure arithmetic), fetch them in
// one round trip, and combine. Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and is
// checked against transparency-dev/merkle's published vectors (test/tlog.test.ts).
import { createHash } from 'node:crypto';

export const HASH_SIZE = 32;

/** A perfect subtree: 2^level leaves from index * 2^level. Level 0 is a leaf. */
export interface NodeId {
  level: number;
  index: number;
}

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
};

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

export const leafHash = (data: Uint8Array): Buffer => sha256(LEAF_PREFIX, data);
export const nodeHash = (left: Uint8Array, right: Uint8Array): Buffer => sha256(NODE_PREFIX, left, right);
/** The root of the empty tree: SHA-256 of nothing. */
export const EMPTY_ROOT = sha256();

/** The largest power of two smaller than n (n > 1). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 52;

/**
 * A range of leaves [begin, end) as RFC 9162 splits it: the perfect subtrees whose hashes,
 * combined right to left, give MTH(D[begin:end]). Every range a proof or a root asks for
 * starts at a multiple of the largest power of two below its length, so the pieces are
 * aligned.
 */
export function rangeNodes(begin: number, end: number): NodeId[] {
  const nodes: NodeId[] = [];
  while (end - begin > 0) {
    const n = end - begin;
    const size = isPowerOfTwo(n) ? n : splitPoint(n);
    nodes.push({ level: Math.log2(size), index: begin / size });
    begin += size;
  }
  return nodes;
}

/** MTH of a range from the hashes of its rangeNodes, in the same order. */
export function foldRange(hashes: Buffer[]): Buffer {
  if (hashes.length === 0) return EMPTY_ROOT;
  let acc = hashes[hashes.length - 1]!;
  for (let i = hashes.length - 2; i >= 0; i -= 1) acc = nodeHash(hashes[i]!, acc);
  return acc;
}

export type Range = readonly [begin: number, end: number];

/** The ranges whose hashes make the audit path of leaf `index` in a tree of `size` (RFC 9162 §2.1.3.1), leaf side first. */
export function inclusionRanges(index: number, size: number): Range[] {
  if (!(index >= 0 && index < size)) throw new RangeError(`no leaf ${index} in a tree of ${size}`);
  const ranges: Range[] = [];
  let [begin, end, m] = [0, size, index];
  while (end - begin > 1) {
    const k = splitPoint(end - begin);
    if (m < k) {
      ranges.push([begin + k, end]);
      end = begin + k;
    } else {
      ranges.push([begin, begin + k]);
      begin += k;
      m -= k;
    }
  }
  return ranges.reverse();
}

/** The ranges whose hashes make the consistency proof from size m to size n (RFC 9162 §2.1.4.1). */
export function consistencyRanges(m: number, n: number): Range[] {
  if (!(m >= 0 && m <= n)) throw new RangeError(`no consistency proof from ${m} to ${n}`);
  if (m === 0 || m === n) return [];
  const ranges: Range[] = [];
  // SUBPROOF(m, D[begin:end], b), iteratively: `complete` is b, "this subtree is the whole old tree".
  let [begin, end, complete] = [0, n, true];
  let mm = m;
  for (;;) {
    const size = end - begin;
    if (mm === size) {
      if (!complete) ranges.push([begin, end]);
      break;
    }
    const k = splitPoint(size);
    if (mm <= k) {
      ranges.push([begin + k, end]);
      end = begin + k;
    } else {
      ranges.push([begin, begin + k]);
      begin += k;
      mm -= k;
      complete = false;
    }
  }
  return ranges.reverse();
}

/** Reads perfect-subtree hashes, many at once (one round trip to wherever they are kept). */
export type NodeReader = (nodes: NodeId[]) => Promise<Buffer[]>;

/** The hashes of several ranges, reading every perfect subtree they need in one call. */
export async function rangeHashes(ranges: Range[], read: NodeReader): Promise<Buffer[]> {
  const pieces = ranges.map(([begin, end]) => rangeNodes(begin, end));
  const hashes = await read(pieces.flat());
  let at = 0;
  return pieces.map((nodes) => {
    const slice = hashes.slice(at, at + nodes.length);
    at += nodes.length;
    return foldRange(slice);
  });
}

export const rootHash = async (size: number, read: NodeReader): Promise<Buffer> =>
  (await rangeHashes([[0, size]], read))[0]!;

export async function inclusionProof(index: number, size: number, read: NodeReader): Promise<Buffer[]> {
  return rangeHashes(inclusionRanges(index, size), read);
}

export async function consistencyProof(m: number, n: number, read: NodeReader): Promise<Buffer[]> {
  return rangeHashes(consistencyRanges(m, n), read);
}

const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0;

/** RFC 9162 §2.1.3.2: does `proof` lead from the leaf's hash at `index` to `root` in a tree of `size`? */
export function verifyInclusion(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (p.length !== HASH_SIZE || sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(r, root);
}

/** RFC 9162 §2.1.4.2: does `proof` show the tree of size `n` with `newRoot` extends the one of size `m` with `oldRoot`? */
export function verifyConsistency(m: number, n: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || m > n) return false;
  if (m === n) return proof.length === 0 && equal(oldRoot, newRoot);
  if (m === 0) return proof.length === 0; // the empty tree is a prefix of every tree
  if (proof.some((p) => p.length !== HASH_SIZE)) return false;
  const path = isPowerOfTwo(m) ? [oldRoot, ...proof] : [...proof];
  if (path.length === 0) return false;
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(fr, oldRoot) && equal(sr, newRoot);
}

/**
 * The tree's right edge while leaves are appended one by one (a "compact range"): the
 * perfect subtrees that make the tree so far, at most one per level. Enough to give the
 * root of every prefix in constant memory, which is how `log verify` recomputes a tree of
 * millions of leaves from the database.
 */
export class TreeBuilder {
  /** Perfect subtree hashes of the tree so far, largest (leftmost) first. */
  private readonly stack: { level: number; hash: Buffer }[] = [];
  size = 0;

  /** Appends a leaf hash; calls `completed` for every perfect subtree this finishes, the leaf first. */
  push(leaf: Buffer, completed?: (node: NodeId, hash: Buffer) => void): void {
    let hash = leaf;
    let level = 0;
    completed?.({ level: 0, index: this.size }, hash);
    while (this.stack.length > 0 && this.stack[this.stack.length - 1]!.level === level) {
      hash = nodeHash(this.stack.pop()!.hash, hash);
      level += 1;
      completed?.({ level, index: Math.floor(this.size / 2 ** level) }, hash);
    }
    this.stack.push({ level, hash });
    this.size += 1;
  }

  root(): Buffer {
    return foldRange(this.stack.map((entry) => entry.hash));
  }
}
