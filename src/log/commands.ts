// What `assent log …` and `assent receipt verify` do, as functions that return their output
// and exit code (src/cli.ts prints them): testable without a process.
import type { Database } from '../db/database.js';
import { verifyConsistency } from './merkle.js';
import { type Checkpoint, NoteError, openNote, parseCheckpoint, parseVerifierKey, type VerifierKey } from './note.js';
import { verifyReceipt } from './receipt.js';
import * as store from './store.js';
import { openCheckpoints, verifyLog } from './verify.js';

export interface CommandResult {
  exitCode: number;
  out: string[];
  err: string[];
}

export const LATE_EVENT_TOLERANCE_MS = 15 * 60_000;

/** `assent log checkpoint`: the latest signed checkpoint, as served at /consent-log/checkpoint. */
export async function logCheckpoint(db: Database): Promise<CommandResult> {
  const latest = await store.latestCheckpoint(db);
  if (!latest) return { exitCode: 1, out: [], err: ['no checkpoint has been signed yet'] };
  return { exitCode: 0, out: [latest.note.replace(/\n$/, '')], err: [] };
}

/**
 * `assent log verify [--checkpoint FILE]…`: the whole tree recomputed from the database and
 * checked against every stored checkpoint and every file given; exit 1 naming where they part.
 */
export async function logVerify(db: Database, files: { name: string; note: string }[], key: VerifierKey): Promise<CommandResult> {
  const { trusted, problems } = openCheckpoints(files.map((f) => ({ source: f.name, note: f.note })), key);
  if (problems.length > 0) return { exitCode: 1, out: [], err: problems.map((p) => `not a checkpoint of this log: ${p}`) };
  const result = await verifyLog(db, trusted, { key, lateEventToleranceMs: LATE_EVENT_TOLERANCE_MS });
  const halted = (await store.readState(db)).haltedReason;
  const out = [`${result.size} leaves recomputed from the database; ${result.checked} checkpoints compared`];
  if (result.unlogged.count > 0) out.push(`${result.unlogged.count} events not yet in the log (the oldest dated ${result.unlogged.oldest!.toISOString()})`);
  const err: string[] = [];
  if (result.parted) err.push(`the log parts from ${result.parted.source} at tree size ${result.parted.size}: ${result.parted.reason}`);
  if (result.firstBadLeaf) err.push(`leaf ${result.firstBadLeaf.index}: ${result.firstBadLeaf.reason}`);
  if (result.backdated) err.push(result.backdated);
  if (halted) err.push(`the service stopped signing: ${halted}`);
  if (err.length === 0) out.push('the log verifies: every checkpoint is what the database holds');
  return { exitCode: err.length === 0 ? 0 : 1, out, err };
}

export interface LogSource {
  /** The latest checkpoint note and a consistency proof to it, from the log itself. */
  latest(): Promise<string>;
  consistency(from: number, to: number): Promise<Buffer[]>;
}

/** The log as its public endpoints serve it (`--log URL`, the receipt's own by default). */
export function httpLogSource(base: string): LogSource {
  const get = async (path: string) => {
    const response = await fetch(new URL(path, base.endsWith('/') ? base : `${base}/`), { signal: AbortSignal.timeout(15_000) });
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    return response;
  };
  return {
    latest: async () => (await get('checkpoint')).text(),
    consistency: async (from, to) => ((await (await get(`proof/consistency?from=${from}&to=${to}`)).json()) as { hashes: string[] })
      .hashes.map((h) => Buffer.from(h, 'base64')),
  };
}

/**
 * `assent receipt verify FILE [--key VKEY] [--log URL]`: the receipt on its own (signature,
 * inclusion, evidence and chain hashes, time-stamp), then, when a log is reachable, that
 * today's log still extends the receipt's checkpoint; and, when a database is given, that
 * the database still gives every checkpoint including the receipt's.
 */
export async function receiptVerify(text: string, options: { key?: string; log?: LogSource; db?: Database }): Promise<CommandResult> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { exitCode: 1, out: [], err: ['the receipt is not JSON (cut short?)'] };
  }
  const check = await verifyReceipt(parsed, options.key === undefined ? {} : { key: options.key });
  const out = [...check.checked];
  const err = [...check.problems];
  if (check.ok && check.checkpoint) {
    const keyText = options.key ?? (parsed as { consent_log: { verifier_key: string } }).consent_log.verifier_key;
    const key = parseVerifierKey(keyText);
    if (options.log) err.push(...await extendsToday(check.checkpoint, key, options.log, out));
    if (options.db) {
      const kept = (parsed as { consent_log: { checkpoint: string } }).consent_log.checkpoint;
      const db = await logVerify(options.db, [{ name: 'the receipt', note: kept }], key);
      out.push(...db.out);
      err.push(...db.err);
    }
  }
  if (err.length === 0) out.push('the receipt verifies');
  return { exitCode: err.length === 0 ? 0 : 1, out, err };
}

async function extendsToday(old: Checkpoint, key: VerifierKey, log: LogSource, out: string[]): Promise<string[]> {
  let latest: Checkpoint;
  try {
    latest = parseCheckpoint(openNote(await log.latest(), [key]).text);
  } catch (error) {
    return [`today's checkpoint: ${error instanceof NoteError ? error.message : (error as Error).message}`];
  }
  if (latest.size < old.size) return [`the log now holds ${latest.size} leaves, fewer than the receipt's ${old.size}: it was rewritten`];
  let proof: Buffer[];
  try {
    proof = await log.consistency(old.size, latest.size);
  } catch (error) {
    return [`the log gives no consistency proof from ${old.size} to ${latest.size}: ${(error as Error).message}`];
  }
  if (!verifyConsistency(old.size, latest.size, old.root, latest.root, proof)) {
    return [`today's log (${latest.size} leaves) does not extend the receipt's checkpoint (${old.size}): it was rewritten since`];
  }
  out.push(`today's log (${latest.size} leaves) extends the receipt's checkpoint`);
  return [];
}
