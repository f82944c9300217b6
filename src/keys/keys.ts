// Marketers' API keys: `as_<prefix>_<secret>`. The prefix (public, shown in listings) finds
// the row; the secret is checked against an argon2id hash. argon2 is slow on purpose (tens of
// milliseconds), so a verified key is remembered in this process for VERIFIED_KEY_TTL_MS:
// a revoked key keeps working for at most that long on a process that had just seen it.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { hash, verify } from '@node-rs/argon2';
import type { Database } from '../db/database.js';
import type { Clock } from '../deps.js';
import * as store from './store.js';

export const VERIFIED_KEY_TTL_MS = 60_000;
/** last_used_at is written at most this often per key, not on every request. */
const TOUCH_INTERVAL_MS = 60_000;
const KEY_FORMAT = /^as_([a-z0-9]{10})_([A-Za-z0-9_-]{43})$/;

/** Who made an API call: a key from the database, or the ASSENT_API_KEY of the environment. */
export interface ApiKeyIdentity {
  id: string | null;
  name: string;
  prefix: string | null;
}

export interface CreatedApiKey {
  id: string;
  name: string;
  prefix: string;
  /** Shown once; only its hash is kept. */
  key: string;
}

export async function createApiKey(db: Database, name: string): Promise<CreatedApiKey> {
  const prefix = randomBytes(10).toString('hex').slice(0, 10);
  const secret = randomBytes(32).toString('base64url');
  const row = await store.insertApiKey(db, { name, prefix, secretHash: await hash(secret) });
  return { id: row.id, name: row.name, prefix: row.prefix, key: `as_${prefix}_${secret}` };
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * Whether a presented secret is `secret`, compared as SHA-256 digests of equal length in
 * constant time: neither the secret's length nor its content leaks through timing.
 */
export function secretMatcher(secret: string): (presented: string) => boolean {
  const expected = digest(secret);
  return (presented) => timingSafeEqual(digest(presented), expected);
}

export class ApiKeyVerifier {
  private readonly verified = new Map<string, { identity: ApiKeyIdentity; until: number }>();
  private readonly touched = new Map<string, number>();
  private readonly isEnvKey: ((presented: string) => boolean) | undefined;

  constructor(
    private readonly db: Database,
    private readonly clock: Clock,
    envKey: string | undefined,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {
    this.isEnvKey = envKey === undefined ? undefined : secretMatcher(envKey);
  }

  /**
   * The key's identity when knowing it costs no argon2: ASSENT_API_KEY, or a key this process
   * verified within VERIFIED_KEY_TTL_MS. Undefined otherwise, which says nothing about the key.
   */
  recall(presented: string): ApiKeyIdentity | undefined {
    if (this.isEnvKey?.(presented)) return { id: null, name: 'ASSENT_API_KEY', prefix: null };
    if (!KEY_FORMAT.test(presented)) return undefined;
    const now = this.clock();
    const cacheKey = digest(presented).toString('base64');
    const cached = this.verified.get(cacheKey);
    if (!cached || cached.until <= now) {
      this.verified.delete(cacheKey);
      return undefined;
    }
    this.touch(cached.identity.id!, now);
    return cached.identity;
  }

  /** The key's identity, or undefined for a wrong, unknown or revoked key. */
  async verify(presented: string): Promise<ApiKeyIdentity | undefined> {
    const recalled = this.recall(presented);
    if (recalled) return recalled;
    const match = KEY_FORMAT.exec(presented);
    if (!match) return undefined;
    const row = await store.findActiveApiKeyByPrefix(this.db, match[1]!);
    if (!row || !(await verify(row.secret_hash, match[2]!))) return undefined;
    const identity = { id: row.id, name: row.name, prefix: row.prefix };
    const now = this.clock();
    this.verified.set(digest(presented).toString('base64'), { identity, until: now + VERIFIED_KEY_TTL_MS });
    this.touch(row.id, now);
    return identity;
  }

  private touch(id: string, now: number): void {
    if ((this.touched.get(id) ?? 0) + TOUCH_INTERVAL_MS > now) return;
    this.touched.set(id, now);
    store.touchApiKey(this.db, id).catch(this.onError);
  }
}
