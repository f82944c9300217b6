// The consent log's primitives against published vectors: RFC 6962/9162 trees and proofs
// (transparency-dev/merkle), signed notes (golang.org/x/mod/sumdb/note) and checkpoints
// (c2sp.org, transparency-dev/formats). test/fixtures/tlog/README.md names the sources.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  consistencyProof, EMPTY_ROOT, inclusionProof, leafHash, type NodeId, nodeHash, rootHash, TreeBuilder, verifyConsistency, verifyInclusion,
} from '../src/log/merkle.js';
import { appendLeaves, rightEdge, type TileKey, tileName, tileNodeReader } from '../src/log/tiles.js';
import {
  formatCheckpoint, formatVerifierKey, openNote, parseCheckpoint, parseNote, parseSignerKey, parseVerifierKey, signNote, signerFromSeed,
} from '../src/log/note.js';

const vectors = JSON.parse(readFileSync(new URL('./fixtures/tlog/vectors.json', import.meta.url), 'utf8'));
const hex = (h: string) => Buffer.from(h, 'hex');

/** A reader over leaves held in memory: every perfect subtree computed from them (the reference). */
function memoryReader(leaves: Buffer[]) {
  const node = ({ level, index }: NodeId): Buffer => {
    if (level === 0) return leaves[index]!;
    return nodeHash(node({ level: level - 1, index: 2 * index }), node({ level: level - 1, index: 2 * index + 1 }));
  };
  return async (nodes: NodeId[]) => nodes.map(node);
}

const referenceLeaves: Buffer[] = vectors.merkle.leaf_inputs_hex.map((h: string) => leafHash(hex(h)));

describe('Merkle trees (RFC 9162 §2.1)', () => {
  it('hash leaves and nodes as the reference tree does', () => {
    const levels: string[][] = vectors.merkle.node_hashes_hex;
    expect(referenceLeaves.map((h) => h.toString('hex'))).toEqual(levels[0]);
    for (let level = 1; level < levels.length; level += 1) {
      levels[level]!.forEach((expected, index) => {
        expect(nodeHash(hex(levels[level - 1]![2 * index]!), hex(levels[level - 1]![2 * index + 1]!)).toString('hex')).toBe(expected);
      });
    }
  });

  it('give the reference root for every size from 0 to 8, from stored nodes and from a builder', async () => {
    const roots: string[] = vectors.merkle.roots_hex;
    expect(EMPTY_ROOT.toString('hex')).toBe(roots[0]);
    const builder = new TreeBuilder();
    for (let size = 0; size <= 8; size += 1) {
      expect((await rootHash(size, memoryReader(referenceLeaves))).toString('hex')).toBe(roots[size]);
      expect(builder.root().toString('hex')).toBe(roots[size]);
      if (size < 8) builder.push(referenceLeaves[size]!);
    }
  });

  it('make and verify the published inclusion proofs', async () => {
    for (const v of vectors.inclusion_proofs.vectors as { index: number; size: number; proof_hex: string[] }[]) {
      const proof = await inclusionProof(v.index, v.size, memoryReader(referenceLeaves));
      expect(proof.map((h) => h.toString('hex'))).toEqual(v.proof_hex);
      const root = hex(vectors.merkle.roots_hex[v.size]);
      expect(verifyInclusion(v.index, v.size, referenceLeaves[v.index]!, proof, root)).toBe(true);
      // The corruption probes of transparency-dev/merkle's verify_test.go.
      const some = hex(vectors.proof_probes.some_hash_hex);
      expect(verifyInclusion(v.index, v.size, leafHash(Buffer.from(vectors.proof_probes.wrong_leaf)), proof, root)).toBe(false);
      expect(verifyInclusion(v.index, v.size, referenceLeaves[v.index]!, proof, leafHash(Buffer.from(vectors.proof_probes.wrong_root)))).toBe(false);
      expect(verifyInclusion(v.index, v.size, referenceLeaves[v.index]!, [...proof, some], root)).toBe(false);
      if (proof.length > 0) {
        expect(verifyInclusion(v.index, v.size, referenceLeaves[v.index]!, proof.slice(0, -1), root)).toBe(false);
        expect(verifyInclusion(v.index, v.size, referenceLeaves[v.index]!, [some, ...proof.slice(1)], root)).toBe(false);
        expect(verifyInclusion(v.index + 1, v.size, referenceLeaves[v.index]!, proof, root)).toBe(false);
      }
    }
    for (const { index, size } of vectors.proof_probes.index_size_never_valid_with_empty_proof) {
      expect(verifyInclusion(index, size, leafHash(Buffer.from('data')), [], EMPTY_ROOT)).toBe(false);
    }
  });

  it('make and verify the published consistency proofs', async () => {
    for (const v of vectors.consistency_proofs.vectors as { size1: number; size2: number; proof_hex: string[] }[]) {
      const proof = await consistencyProof(v.size1, v.size2, memoryReader(referenceLeaves));
      expect(proof.map((h) => h.toString('hex'))).toEqual(v.proof_hex);
      const [old, now] = [hex(vectors.merkle.roots_hex[v.size1]), hex(vectors.merkle.roots_hex[v.size2])];
      expect(verifyConsistency(v.size1, v.size2, old, now, proof)).toBe(true);
      expect(verifyConsistency(v.size1, v.size2, now, old, proof)).toBe(v.size1 === v.size2 && old.equals(now));
      if (proof.length > 0) {
        expect(verifyConsistency(v.size1, v.size2, old, now, proof.slice(0, -1))).toBe(false);
        expect(verifyConsistency(v.size1, v.size2, old, now, [...proof, hex(vectors.proof_probes.some_hash_hex)])).toBe(false);
      }
    }
  });

  it('prove and verify every leaf and every pair of sizes of random trees', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 300 }), fc.nat(), fc.nat(), async (size, a, b) => {
      const leaves = Array.from({ length: size }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
      const read = memoryReader(leaves);
      const builder = new TreeBuilder();
      const roots: Buffer[] = [builder.root()];
      for (const leaf of leaves) {
        builder.push(leaf);
        roots.push(builder.root());
      }
      const index = a % size;
      const proof = await inclusionProof(index, size, read);
      expect(verifyInclusion(index, size, leaves[index]!, proof, roots[size]!)).toBe(true);
      expect(verifyInclusion(index, size, leaves[(index + 1) % size]!, proof, roots[size]!)).toBe(size === 1 ? true : false);
      // A proof that reaches the root is still refused for a tree of another size (sn must end at 0).
      expect(verifyInclusion(index, size * 2, leaves[index]!, proof, roots[size]!)).toBe(false);
      const m = b % (size + 1);
      const consistency = await consistencyProof(m, size, read);
      expect(verifyConsistency(m, size, roots[m]!, roots[size]!, consistency)).toBe(true);
      if (m > 0 && m < size) expect(verifyConsistency(m, size, leafHash(Buffer.from('other')), roots[size]!, consistency)).toBe(false);
      // Every tree extends the empty one, with an empty proof and no other.
      expect(verifyConsistency(0, size, EMPTY_ROOT, roots[size]!, [leaves[0]!])).toBe(false);
    }), { numRuns: 200 });
  });

  it('report each perfect subtree the builder completes, with its position', () => {
    const seen: string[] = [];
    const builder = new TreeBuilder();
    for (const leaf of referenceLeaves) builder.push(leaf, (node, hash) => seen.push(`${node.level}/${node.index}=${hash.toString('hex')}`));
    const levels: string[][] = vectors.merkle.node_hashes_hex;
    const expected = levels.flatMap((hashes, level) => hashes.map((h, index) => `${level}/${index}=${h}`));
    expect([...seen].sort()).toEqual([...expected].sort());
  });

  it('refuse out-of-range proofs', async () => {
    const read = memoryReader(referenceLeaves);
    await expect(inclusionProof(8, 8, read)).rejects.toThrow(RangeError);
    await expect(inclusionProof(-1, 8, read)).rejects.toThrow(RangeError);
    await expect(consistencyProof(5, 4, read)).rejects.toThrow(RangeError);
  });
});

describe('tiles (c2sp.org/tlog-tiles layout)', () => {
  /** Appends leaves in batches to tiles kept in a Map, as the sequencer does to the database. */
  function tiledTree(leaves: Buffer[], batches: number[]) {
    const store = new Map<string, Buffer>();
    let size = 0;
    for (const batch of batches) {
      const edge = new Map(rightEdge(size).map((key) => [tileName(key), store.get(tileName(key))!]));
      for (const [name, tile] of appendLeaves(size, edge, leaves.slice(size, size + batch))) store.set(name, tile.hashes);
      size += batch;
    }
    return tileNodeReader(async (keys: TileKey[]) => new Map(keys.filter((k) => store.has(tileName(k))).map((k) => [tileName(k), store.get(tileName(k))!])));
  }

  it('give the same roots and proofs as the leaves themselves, across three tile levels and any batching', async () => {
    const total = 256 * 256 + 300; // a full level-1 tile, so level 2 holds an entry
    const leaves = Array.from({ length: total }, (_, i) => leafHash(Buffer.from(`event ${i}`)));
    const read = tiledTree(leaves, [1, 255, 1000, 256 * 256 - 1256, 299, 1]);
    const builder = new TreeBuilder();
    const roots = new Map<number, Buffer>();
    const sizes = new Set([1, 2, 255, 256, 257, 4096, 65535, 65536, 65537, total]);
    leaves.forEach((leaf, i) => {
      builder.push(leaf);
      if (sizes.has(i + 1)) roots.set(i + 1, builder.root());
    });
    for (const [size, root] of roots) expect((await rootHash(size, read)).equals(root), `root of ${size}`).toBe(true);
    await fc.assert(fc.asyncProperty(fc.constantFrom(...sizes), fc.nat(), fc.constantFrom(...sizes), async (size, i, other) => {
      const index = i % size;
      expect(verifyInclusion(index, size, leaves[index]!, await inclusionProof(index, size, read), roots.get(size)!)).toBe(true);
      const [m, n] = other <= size ? [other, size] : [size, other];
      expect(verifyConsistency(m, n, roots.get(m)!, roots.get(n)!, await consistencyProof(m, n, read))).toBe(true);
    }), { numRuns: 100 });
  });

  it('refuse to append to a tile that does not end where the tree does', () => {
    const leaves = [leafHash(Buffer.from('a')), leafHash(Buffer.from('b'))];
    expect(() => appendLeaves(1, new Map(), leaves)).toThrow(/does not end/);
  });
});

describe('signed notes (c2sp.org/signed-note)', () => {
  const note = vectors.signed_note;
  const peter = parseVerifierKey(note.keys.peter.vkey);
  const enoch = parseVerifierKey(note.keys.enoch.vkey);

  it('sign exactly as golang.org/x/mod/sumdb/note does, and round-trip the key strings', () => {
    const signer = parseSignerKey(note.keys.peter.skey);
    expect(signNote(note.text, signer)).toBe(`${note.text}\n${note.keys.peter.signature_line}`);
    expect(formatVerifierKey(signer)).toBe(note.keys.peter.vkey);
    expect(peter.keyHash.toString('hex')).toBe(note.keys.peter.key_hash);
  });

  it('open a note signed by a known key, ignoring signatures by unknown keys', () => {
    const both = `${note.text}\n${note.keys.peter.signature_line}${note.keys.enoch.signature_line}`;
    expect(openNote(both, [peter])).toEqual({ text: note.text, signedBy: ['PeterNeumann'] });
    expect(openNote(both, [peter, enoch]).signedBy).toEqual(['PeterNeumann', 'EnochRoot']);
    const probes = note.signature_line_probes;
    expect(() => openNote(`${note.text}\n${probes.corrupted}`, [peter])).toThrow(/does not verify/);
    expect(() => openNote(`${note.text}\n${probes.misnamed}`, [peter])).toThrow(/no known key/);
    expect(() => openNote(`${note.text}\n${probes.wrong_key_hash}`, [peter])).toThrow(/no known key|malformed/);
  });

  it('refuse malformed notes and keys', () => {
    for (const bad of note.malformed_notes.notes as { desc: string; text?: string; base64?: string }[]) {
      const input = bad.text ?? Buffer.from(bad.base64!, 'base64');
      expect(() => openNote(input, [peter]), bad.desc).toThrow();
    }
    expect(() => parseVerifierKey(note.bad_vkeys.wrong_length)).toThrow();
    expect(() => parseVerifierKey(note.bad_vkeys.unknown_algorithm)).toThrow();
    expect(() => signerFromSeed(note.bad_key_name, Buffer.alloc(32))).toThrow();
  });

  it('verify a real sum.golang.org checkpoint among cosignatures, and the c2sp.org examples parse', () => {
    const sum = vectors.sumdb_checkpoint;
    const cosigned = `${sum.note}${sum.cosigners.map((c: { signature_line: string }) => c.signature_line).join('')}${sum.unknown_signature_lines.join('')}`;
    const opened = openNote(cosigned, [parseVerifierKey(sum.vkey)]);
    expect(parseCheckpoint(opened.text)).toEqual({ origin: sum.origin, size: sum.size, root: Buffer.from(sum.root_base64, 'base64'), extensions: [] });
    const example = vectors.c2sp_examples;
    expect(parseNote(example.signed_note.note).text).toBe(example.signed_note.text);
    expect(parseNote(example.signed_note.note).signatures.map((s) => s.name)).toEqual(example.signed_note.signature_names);
    const checkpoint = parseCheckpoint(parseNote(example.checkpoint.note).text);
    expect(checkpoint).toEqual({ origin: example.checkpoint.origin, size: example.checkpoint.size, root: Buffer.from(example.checkpoint.root_base64, 'base64'), extensions: [] });
    expect(formatCheckpoint(checkpoint)).toBe(example.checkpoint.text);
  });
});

describe('checkpoints (c2sp.org/tlog-checkpoint)', () => {
  it('parse the valid bodies and refuse the malformed ones', () => {
    for (const valid of vectors.checkpoint_bodies.valid as { text: string; extensions: string[] }[]) {
      const parsed = parseCheckpoint(valid.text);
      expect(parsed.extensions).toEqual(valid.extensions);
      expect(formatCheckpoint(parsed)).toBe(valid.text);
    }
    for (const malformed of vectors.checkpoint_bodies.malformed as string[]) {
      expect(() => parseCheckpoint(malformed), JSON.stringify(malformed)).toThrow();
    }
  });
});
