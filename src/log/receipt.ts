// Consent receipts: one JSON document that a person keeps and a regulator can check with
// nothing but the log's verifier key. Its record follows the sections of ISO/IEC TS 27560
// (record header, PII processing, parties, events); its proof holds, for each event, the
// fields its hash covers, its leaf in the consent log, an inclusion proof and the signed
// checkpoint the proof reaches (with the RFC 3161 token, where there is one).
import { eventHash, evidenceHash } from '../consent/ledger.js';
import type { ConsentEventKind } from '../domain.js';
import { leafHash, verifyConsistency, verifyInclusion } from './merkle.js';
import { type Checkpoint, NoteError, openNote, parseCheckpoint, parseVerifierKey, type VerifierKey } from './note.js';
import { checkTimeStamp } from './tsa.js';

export const RECEIPT_SCHEMA = 'https://assent.dev/schema/consent-receipt/v1';

export interface Controller {
  name: string | null;
  contact: string | null;
  privacy_notice: string | null;
}

/** What each event kind says in ISO/IEC TS 27560 terms. */
const EVENT_TYPE: Record<ConsentEventKind, string> = {
  requested: 'consent requested',
  confirmed: 'consent given',
  withdrawn: 'consent withdrawn',
  erased: 'PII erased',
  bounced: 'consent ended: the address bounced',
  complained: 'consent withdrawn by a spam complaint',
  imported: 'consent given elsewhere, imported with its provenance',
  reconsented: 'consent given to a changed wording',
};

export interface ReceiptEvent {
  id: string;
  type: string;
  /** The fields the event's hash covers, exactly as hashed (consent/ledger.ts). */
  record: {
    subscriber_id: string;
    list_id: string | null;
    kind: ConsentEventKind;
    occurred_at: string;
    evidence_hash: string;
    prev_hash: string | null;
    hash: string;
  };
  list: string | null;
  /** The evidence, when still held and safe to hand out; its hash is record.evidence_hash. */
  evidence: Record<string, unknown> | null;
  /** Where the event is in the consent log; null until a signed checkpoint includes it. */
  log: { index: number; leaf_data: string; inclusion_proof: string[] } | null;
}

export interface ConsentReceipt {
  schema: typeof RECEIPT_SCHEMA;
  conforms_to: string[];
  /** ISO/IEC TS 27560 record header. */
  record_id: string;
  issued_at: string;
  pii_principal: { id: string; email: string | null };
  controller: Controller;
  /** ISO/IEC TS 27560 PII processing: one entry per list (purpose). */
  processing: {
    purpose: { list: string; name: string };
    notice: { version: number | null; text: string | null };
    lawful_basis: string;
    collection_method: string;
    pii_categories: string[];
    status: string;
  }[];
  events: ReceiptEvent[];
  consent_log: {
    origin: string;
    verifier_key: string;
    url: string;
    /** The signed note every proof in `events` reaches. */
    checkpoint: string | null;
    /** RFC 3161 token over the checkpoint note, base64 (DER). */
    timestamp_token: string | null;
  };
}

export interface ReceiptInput {
  issuedAt: Date;
  subscriber: { id: string; email: string | null };
  controller: Controller;
  processing: ConsentReceipt['processing'];
  events: (Omit<ReceiptEvent, 'type' | 'log'> & { log: { index: number; inclusionProof: Buffer[] } | null })[];
  log: { origin: string; verifierKey: string; url: string; checkpoint: string | null; timestamp: Buffer | null };
}

export function buildReceipt(input: ReceiptInput): ConsentReceipt {
  return {
    schema: RECEIPT_SCHEMA,
    conforms_to: ['ISO/IEC TS 27560:2023 (consent record structure)', 'RFC 9162 §2.1 (Merkle tree proofs)', 'c2sp.org/tlog-checkpoint', 'c2sp.org/signed-note'],
    record_id: input.subscriber.id,
    issued_at: input.issuedAt.toISOString(),
    pii_principal: input.subscriber,
    controller: input.controller,
    processing: input.processing,
    events: input.events.map((event) => ({
      ...event,
      type: EVENT_TYPE[event.record.kind],
      log: event.log && {
        index: event.log.index,
        leaf_data: Buffer.from(event.record.hash, 'hex').toString('base64'),
        inclusion_proof: event.log.inclusionProof.map((hash) => hash.toString('base64')),
      },
    })),
    consent_log: {
      origin: input.log.origin,
      verifier_key: input.log.verifierKey,
      url: input.log.url,
      checkpoint: input.log.checkpoint,
      timestamp_token: input.log.timestamp?.toString('base64') ?? null,
    },
  };
}

export interface ReceiptCheck {
  ok: boolean;
  /** What fails, one line each; empty when ok. */
  problems: string[];
  /** What was checked, one line each. */
  checked: string[];
  checkpoint: Checkpoint | undefined;
}

const b64 = (text: string) => Buffer.from(text, 'base64');
const isHex32 = (text: unknown) => typeof text === 'string' && /^[0-9a-f]{64}$/.test(text);

/**
 * Checks a receipt offline: the checkpoint's signature under `key` (or, without one, the key
 * the receipt names, which proves less and is said so), every event's hash from its fields
 * and evidence, the chain's links, each leaf's inclusion in the checkpoint, and the
 * time-stamp token. Never throws on a malformed receipt: that is a problem to report.
 */
export async function verifyReceipt(receipt: unknown, options: { key?: string } = {}): Promise<ReceiptCheck> {
  const problems: string[] = [];
  const checked: string[] = [];
  const fail = (problem: string): ReceiptCheck => ({ ok: false, problems: [...problems, problem], checked, checkpoint: undefined });
  const doc = receipt as Partial<ConsentReceipt>;
  if (typeof doc !== 'object' || doc === null || doc.schema !== RECEIPT_SCHEMA || !Array.isArray(doc.events) || typeof doc.consent_log !== 'object' || doc.consent_log === null) {
    return fail('not a consent receipt of this schema, or cut short');
  }
  let key: VerifierKey;
  try {
    key = parseVerifierKey(options.key ?? doc.consent_log.verifier_key);
  } catch (error) {
    return fail(`the verifier key: ${(error as Error).message}`);
  }
  if (!options.key) checked.push('the checkpoint was checked with the key named in the receipt itself; pass the log\'s key obtained elsewhere to rule out a forged key');
  let checkpoint: Checkpoint | undefined;
  if (typeof doc.consent_log.checkpoint === 'string') {
    try {
      checkpoint = parseCheckpoint(openNote(doc.consent_log.checkpoint, [key]).text);
      checked.push(`checkpoint of ${checkpoint.size} leaves signed by ${key.name}`);
    } catch (error) {
      problems.push(`the checkpoint: ${error instanceof NoteError ? error.message : 'malformed'}`);
    }
  } else if (doc.events.some((event) => event?.log)) {
    problems.push('events claim leaves in the log, but the receipt holds no checkpoint');
  }
  if (checkpoint && typeof doc.consent_log.timestamp_token === 'string') {
    try {
      const stamp = await checkTimeStamp(b64(doc.consent_log.timestamp_token), doc.consent_log.checkpoint!);
      checked.push(`time-stamped at ${stamp.genTime.toISOString()} by an RFC 3161 authority`);
    } catch (error) {
      problems.push(`the time-stamp token: ${(error as Error).message}`);
    }
  }
  let previous: string | null = null;
  doc.events.forEach((event, position) => {
    const name = `event ${position + 1} (${event?.record?.kind ?? '?'})`;
    const record = event?.record;
    if (!record || typeof record.subscriber_id !== 'string' || !isHex32(record.hash) || !isHex32(record.evidence_hash)
      || !(record.prev_hash === null || isHex32(record.prev_hash)) || typeof record.occurred_at !== 'string' || Number.isNaN(Date.parse(record.occurred_at))) {
      problems.push(`${name}: its record is malformed`);
      return;
    }
    if (record.subscriber_id !== doc.record_id) problems.push(`${name}: it belongs to another subscriber`);
    const recomputed = eventHash({
      subscriberId: record.subscriber_id, listId: record.list_id, kind: record.kind, occurredAt: new Date(record.occurred_at),
      evidenceHash: Buffer.from(record.evidence_hash, 'hex'), prevHash: record.prev_hash === null ? null : Buffer.from(record.prev_hash, 'hex'),
    });
    if (recomputed.toString('hex') !== record.hash) problems.push(`${name}: its fields do not give its hash`);
    if (event.evidence !== null && event.evidence !== undefined && evidenceHash(event.evidence).toString('hex') !== record.evidence_hash) {
      problems.push(`${name}: its evidence is not what was recorded`);
    }
    if (record.prev_hash !== previous) problems.push(`${name}: the chain is broken before it (an event is missing or out of order)`);
    previous = record.hash;
    if (!event.log) return;
    if (!checkpoint) return;
    const proof = Array.isArray(event.log.inclusion_proof) ? event.log.inclusion_proof.map(b64) : [];
    const leaf = leafHash(Buffer.from(record.hash, 'hex'));
    if (b64(event.log.leaf_data ?? '').toString('hex') !== record.hash) problems.push(`${name}: its leaf is not its hash`);
    else if (!verifyInclusion(event.log.index, checkpoint.size, leaf, proof, checkpoint.root)) problems.push(`${name}: it is not in the checkpoint at leaf ${event.log.index}`);
    else checked.push(`${name}: leaf ${event.log.index} of the log`);
  });
  return { ok: problems.length === 0, problems, checked, checkpoint };
}

/** That a later checkpoint extends the receipt's: what makes a years-old receipt hold today. */
export function checkExtends(old: Checkpoint, latest: Checkpoint, proof: Buffer[]): boolean {
  return verifyConsistency(old.size, latest.size, old.root, latest.root, proof);
}
