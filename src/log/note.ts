// Signed notes (c2sp.org/signed-note, the golang.org/x/mod/sumdb/note format) with Ed25519,
// and checkpoints (c2sp.org/tlog-checkpoint) carried in them.
//
// A note is UTF-8 text ending in a newline, a blank line, then signature lines
// "— <key name> <base64(key hash ‖ signature)>\n". The key hash is the first four bytes of
// SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key), so a verifier picks the right key by name and
// hash and ignores signatures by keys it does not know (witnesses' cosignatures, say).
import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';

const ED25519 = 0x01;
const MAX_SIGNATURES = 100;
const SIGNATURE_PREFIX = '\u2014 '; // an em dash and a space

export interface SignerKey {
  name: string;
  keyHash: Buffer;
  privateKey: KeyObject;
  publicKey: Buffer;
}

export interface VerifierKey {
  name: string;
  keyHash: Buffer;
  publicKey: Buffer;
}

export class NoteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoteError';
  }
}

/** A key name: non-empty, no whitespace, no plus sign (the key strings' separator). */
export const isKeyName = (name: string) => name.length > 0 && !/[\s+]/u.test(name) && isValidText(name);

function isValidText(text: string): boolean {
  // Lone surrogates cannot come from valid UTF-8; control characters other than \n are refused.
  return !/[\p{Cs}]/u.test(text) && !/[\u0000-\u0009\u000b-\u001f\u007f]/.test(text);
}

export function keyHash(name: string, publicKey: Uint8Array): Buffer {
  return createHash('sha256').update(name).update('\n').update(Buffer.from([ED25519])).update(publicKey).digest().subarray(0, 4);
}

// PKCS#8 for an Ed25519 seed: this fixed prefix, then the 32 bytes (RFC 8410 §7).
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export function signerFromSeed(name: string, seed: Uint8Array): SignerKey {
  if (!isKeyName(name)) throw new NoteError(`not a key name: ${JSON.stringify(name)}`);
  if (seed.length !== 32) throw new NoteError('an Ed25519 seed is 32 bytes');
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  return signerFromKey(name, privateKey);
}

export function signerFromKey(name: string, privateKey: KeyObject): SignerKey {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new NoteError('the consent log key must be an Ed25519 key');
  const publicKey = Buffer.from(createPublicKey(privateKey).export({ format: 'jwk' }).x!, 'base64url');
  return { name, keyHash: keyHash(name, publicKey), privateKey, publicKey };
}

/** The signer of a `PRIVATE+KEY+name+hash+base64` string (golang.org/x/mod/sumdb/note). */
export function parseSignerKey(skey: string): SignerKey {
  // base64 may hold '+' itself: the name and hash end at the first two separators.
  const [, name, hash, key] = /^PRIVATE\+KEY\+([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(skey) ?? [];
  if (!name || !hash || !key) throw new NoteError('malformed signer key');
  const raw = Buffer.from(key, 'base64');
  if (raw.length !== 33 || raw[0] !== ED25519) throw new NoteError('not an Ed25519 signer key');
  const signer = signerFromSeed(name, raw.subarray(1));
  if (signer.keyHash.toString('hex') !== hash) throw new NoteError('the signer key hash does not match');
  return signer;
}

/** `name+hexkeyhash+base64(0x01 ‖ public key)`, the form a verifier is given. */
export function formatVerifierKey(key: { name: string; publicKey: Uint8Array }): string {
  const encoded = Buffer.concat([Buffer.from([ED25519]), key.publicKey]).toString('base64');
  return `${key.name}+${keyHash(key.name, key.publicKey).toString('hex')}+${encoded}`;
}

export function parseVerifierKey(vkey: string): VerifierKey {
  const [, name, hash, key] = /^([^+]+)\+([^+]+)\+(.+)$/.exec(vkey.trim()) ?? [];
  if (!name || !hash || !key) throw new NoteError('a verifier key is name+hash+key');
  if (!isKeyName(name) || !/^[0-9a-f]{8}$/.test(hash)) throw new NoteError('malformed verifier key');
  const raw = Buffer.from(key, 'base64');
  if (raw.toString('base64') !== key) throw new NoteError('the verifier key is not base64');
  if (raw[0] !== ED25519) throw new NoteError('unknown verifier key algorithm');
  if (raw.length !== 33) throw new NoteError('an Ed25519 verifier key is 32 bytes');
  const publicKey = raw.subarray(1);
  if (keyHash(name, publicKey).toString('hex') !== hash) throw new NoteError('the verifier key hash does not match its name and key');
  return { name, keyHash: Buffer.from(hash, 'hex'), publicKey };
}

const spki = (publicKey: Uint8Array) =>
  createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' });

/** The signature line of `text` under `signer`. */
export function signatureLine(text: string, signer: SignerKey): string {
  const signature = sign(null, Buffer.from(text, 'utf8'), signer.privateKey);
  return `${SIGNATURE_PREFIX}${signer.name} ${Buffer.concat([signer.keyHash, signature]).toString('base64')}\n`;
}

export function signNote(text: string, signer: SignerKey): string {
  if (!text.endsWith('\n') || !isValidText(text)) throw new NoteError('a note text is valid text ending in a newline');
  return `${text}\n${signatureLine(text, signer)}`;
}

export interface NoteSignature {
  name: string;
  keyHash: Buffer;
  signature: Buffer;
}

/** A note split into its text and signature lines; no signature is checked yet. */
export function parseNote(note: string | Uint8Array): { text: string; signatures: NoteSignature[] } {
  const decoded = typeof note === 'string' ? note : decodeUtf8(note);
  if (!isValidText(decoded)) throw new NoteError('the note holds control characters or is not UTF-8');
  if (!decoded.endsWith('\n')) throw new NoteError('a note ends with a newline');
  const split = decoded.lastIndexOf('\n\n');
  if (split < 0) throw new NoteError('a note has a blank line before its signatures');
  const text = decoded.slice(0, split + 1);
  const lines = decoded.slice(split + 2, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw new NoteError(`more than ${MAX_SIGNATURES} signatures`);
  const signatures = lines.map((line) => {
    if (!line.startsWith(SIGNATURE_PREFIX)) throw new NoteError('a line after the blank line is not a signature');
    const [name, encoded, ...rest] = line.slice(SIGNATURE_PREFIX.length).split(' ');
    if (rest.length > 0 || !name || !isKeyName(name) || !encoded) throw new NoteError('malformed signature line');
    const raw = Buffer.from(encoded, 'base64');
    if (raw.toString('base64') !== encoded || raw.length < 5) throw new NoteError('malformed signature');
    return { name, keyHash: raw.subarray(0, 4), signature: raw.subarray(4) };
  });
  if (signatures.length === 0) throw new NoteError('a note has at least one signature');
  return { text, signatures };
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new NoteError('the note is not UTF-8');
  }
}

/**
 * The note's text if a known key signed it; signatures by other keys are ignored (a
 * witness's cosignature), a bad signature by a known key is an error, and so is a note that
 * no known key signed.
 */
export function openNote(note: string | Uint8Array, verifiers: readonly VerifierKey[]): { text: string; signedBy: string[] } {
  const { text, signatures } = parseNote(note);
  const signedBy: string[] = [];
  for (const sig of signatures) {
    const key = verifiers.find((v) => v.name === sig.name && v.keyHash.equals(sig.keyHash));
    if (!key) continue;
    if (sig.signature.length !== 64 || !verify(null, Buffer.from(text, 'utf8'), spki(key.publicKey), sig.signature)) {
      throw new NoteError(`the signature by ${key.name} does not verify`);
    }
    signedBy.push(key.name);
  }
  if (signedBy.length === 0) throw new NoteError('no known key signed this note');
  return { text, signedBy };
}

export interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
  extensions: string[];
}

/** The body of a c2sp.org/tlog-checkpoint: origin, decimal size, base64 root, extension lines. */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  return [checkpoint.origin, String(checkpoint.size), checkpoint.root.toString('base64'), ...checkpoint.extensions, ''].join('\n');
}

export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw new NoteError('a checkpoint ends with a newline');
  const [origin, size, root, ...extensions] = text.slice(0, -1).split('\n');
  if (!origin) throw new NoteError('a checkpoint starts with its origin');
  if (size === undefined || !/^(0|[1-9]\d{0,15})$/.test(size) || !Number.isSafeInteger(Number(size))) {
    throw new NoteError('a checkpoint\'s size is a decimal number');
  }
  if (root === undefined) throw new NoteError('a checkpoint has a root hash');
  const hash = Buffer.from(root, 'base64');
  if (hash.toString('base64') !== root || hash.length !== 32) throw new NoteError('a checkpoint\'s root is 32 bytes in base64');
  if (extensions.some((line) => line === '')) throw new NoteError('a checkpoint has no empty lines');
  return { origin, size: Number(size), root: hash, extensions };
}
