// The consent log as the rest of the service sees it: its checkpoints, its proofs, its key,
// and whether it still signs. Reads only; the sequencer (sequencer.ts) is the one writer.
import type { Database } from '../db/database.js';
import { DomainError } from '../errors.js';
import { consistencyProof, inclusionProof } from './merkle.js';
import { formatVerifierKey, type SignerKey } from './note.js';
import * as store from './store.js';
import { tileNodeReader } from './tiles.js';

export interface ConsentLogSettings {
  origin: string;
  signer: SignerKey;
}

/** A tree size or leaf index as a query gives it: a decimal integer, no sign, no leading zeros. */
function parseCount(name: string, text: string | undefined): number {
  if (text === undefined || !/^(0|[1-9]\d{0,15})$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new DomainError('invalid_input', `${name} must be a whole number`, { [name]: 'a whole number, 0 or more' });
  }
  return Number(text);
}

export class ConsentLog {
  readonly verifierKey: string;

  constructor(private readonly db: Database, readonly settings: ConsentLogSettings) {
    this.verifierKey = formatVerifierKey(settings.signer);
  }

  get origin(): string {
    return this.settings.origin;
  }

  latestCheckpoint(): Promise<store.StoredCheckpoint | undefined> {
    return store.latestCheckpoint(this.db);
  }

  /** The checkpoint of exactly this size (as a path gives it), or undefined. */
  async checkpoint(sizeText: string): Promise<store.StoredCheckpoint | undefined> {
    return store.findCheckpoint(this.db, parseCount('size', sizeText));
  }

  /** How far the stored tree reaches: proofs can be made for any size up to it. */
  async treeSize(): Promise<number> {
    return (await store.readState(this.db)).tiledSize;
  }

  /** RFC 9162 §2.1.3.1 audit path of leaf `index` in the tree of `size`; 400 for anything else. */
  async inclusionProof(query: { index?: string; size?: string }): Promise<Buffer[]> {
    await this.refuseIfHalted();
    const index = parseCount('index', query.index);
    const size = parseCount('size', query.size);
    const tree = await this.treeSize();
    if (size > tree) throw new DomainError('invalid_input', `the log holds ${tree} leaves`, { size: 'past the tree' });
    if (index >= size) throw new DomainError('invalid_input', 'the leaf is not in a tree of that size', { index: 'must be below size' });
    return inclusionProof(index, size, tileNodeReader((keys) => store.readTiles(this.db, keys)));
  }

  /** The audit path of a leaf the caller knows to be in the tree of `size` (a receipt's events). */
  proofOf(index: number, size: number): Promise<Buffer[]> {
    return inclusionProof(index, size, tileNodeReader((keys) => store.readTiles(this.db, keys)));
  }

  /** RFC 9162 §2.1.4.1 proof that the tree of `to` extends the one of `from`; 400 for anything else. */
  async consistencyProof(query: { from?: string; to?: string }): Promise<Buffer[]> {
    await this.refuseIfHalted();
    const from = parseCount('from', query.from);
    const to = parseCount('to', query.to);
    const tree = await this.treeSize();
    if (to > tree) throw new DomainError('invalid_input', `the log holds ${tree} leaves`, { to: 'past the tree' });
    if (from > to) throw new DomainError('invalid_input', 'from must not be past to', { from: 'past to' });
    return consistencyProof(from, to, tileNodeReader((keys) => store.readTiles(this.db, keys)));
  }

  /** A halted log's tiles may be what an operator rewrote: it proves nothing until a person resolves it. */
  private async refuseIfHalted(): Promise<void> {
    const halted = await this.halted();
    if (halted) throw new DomainError('log_halted', `the consent log stopped signing at ${halted.at.toISOString()}: ${halted.reason}`);
  }

  /** Why the log stopped signing, if it did. */
  async halted(): Promise<{ reason: string; at: Date } | undefined> {
    const state = await store.readState(this.db);
    return state.haltedReason ? { reason: state.haltedReason, at: state.haltedAt! } : undefined;
  }
}
