// A token bucket per client (an IPv4 address, or an IPv6 /64: see clientNetwork), in this
// process's memory. With several `serve` processes each keeps its own buckets, so the
// effective limit is the limit times the processes: the aim is to stop a flood from one
// client, and one more round trip to PostgreSQL per signup would cost every honest request
// instead.
import type { RateLimit } from '../config.js';
import type { Clock } from '../deps.js';
import { clientNetwork } from './client.js';

interface Bucket {
  tokens: number;
  updatedAt: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly refillPerMs: number;

  constructor(private readonly limit: RateLimit, private readonly clock: Clock, private readonly maxKeys = 100_000) {
    this.refillPerMs = limit.count / limit.windowMs;
  }

  /** 0 when allowed (and counted); else the seconds to wait before the next attempt can pass. */
  take(ip: string): number {
    const key = clientNetwork(ip);
    const bucket = this.refilled(key) ?? { tokens: this.limit.count, updatedAt: this.clock() };
    if (bucket.tokens < 1) return this.secondsUntilToken(bucket);
    bucket.tokens -= 1;
    this.buckets.delete(key); // re-insert: the Map's order is then least recently used first
    this.buckets.set(key, bucket);
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    return 0;
  }

  /** What take() would answer, without counting anything: 0 while the client has a token left. */
  wait(ip: string): number {
    const bucket = this.refilled(clientNetwork(ip));
    return bucket && bucket.tokens < 1 ? this.secondsUntilToken(bucket) : 0;
  }

  private refilled(key: string): Bucket | undefined {
    const bucket = this.buckets.get(key);
    if (!bucket) return undefined;
    const now = this.clock();
    bucket.tokens = Math.min(this.limit.count, bucket.tokens + (now - bucket.updatedAt) * this.refillPerMs);
    bucket.updatedAt = now;
    return bucket;
  }

  private secondsUntilToken(bucket: Bucket): number {
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.refillPerMs / 1000));
  }
}
