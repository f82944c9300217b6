// The consent log's signing key: CONSENT_LOG_KEY in production (an Ed25519 private key as
// PKCS#8 PEM, or its 32-byte seed in base64), generated once and kept under DATA_DIR in
// development so checkpoints signed yesterday still verify after a restart.
import { createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type SignerKey, signerFromKey, signerFromSeed } from './note.js';

/** The key the notes are signed with, named for the log (its origin), or an Error saying what is wrong. */
export function parseConsentLogKey(text: string, origin: string): SignerKey | Error {
  const trimmed = text.trim().replace(/\\n/g, '\n');
  try {
    if (trimmed.startsWith('-----BEGIN')) return signerFromKey(origin, createPrivateKey({ key: trimmed, format: 'pem' }));
    const seed = Buffer.from(trimmed, 'base64');
    if (seed.length !== 32 || seed.toString('base64').replace(/=+$/, '') !== trimmed.replace(/=+$/, '')) {
      return new Error('expected an Ed25519 private key as PKCS#8 PEM, or its 32-byte seed in base64');
    }
    return signerFromSeed(origin, seed);
  } catch (error) {
    return new Error(`not a usable Ed25519 key: ${(error as Error).message}`);
  }
}

export function loadOrCreateDevLogKey(dataDir: string, origin: string): SignerKey {
  const file = path.join(dataDir, 'consent-log-key');
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    // Written whole under a name of its own, then linked into place: the key file appears with
    // its content or not at all, so a process starting beside this one never reads it empty.
    const draft = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    writeFileSync(draft, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    try {
      linkSync(draft, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error; // another process on this DATA_DIR made it first
    } finally {
      unlinkSync(draft);
    }
  }
  const key = parseConsentLogKey(readFileSync(file, 'utf8'), origin);
  if (key instanceof Error) throw new Error(`${file}: ${key.message}`);
  return key;
}
