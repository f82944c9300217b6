// Delivers webhooks: feeds each endpoint from the consent ledger (its own position over the
// events, webhooks/store.ts feedEndpoint), then calls endpoints with what is due. At least
// once (a delivery is marked only after a 2xx; a worker that dies leaves its claim to run
// out and be taken again), in event order per subscriber (the claim's rule), retried with
// growing delays for three days, the endpoint disabled after three days of failing.
//
// A slow or dead endpoint must not hold up others: calls are not awaited by the round (it
// claims again as soon as a call ends), each has a 10 s deadline, and this process calls
// one endpoint at most `perEndpoint` times at once, so the others always have lanes.
import http from 'node:http';
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import type { Deps } from '../deps.js';
import { isPrivateAddress, publicOnlyLookup, RefusedAddress } from '../webhooks/address.js';
import { kindsFor, webhookBody } from '../webhooks/events.js';
import { webhookHeaders } from '../webhooks/signature.js';
import * as store from '../webhooks/store.js';
import { LoopingWorker, WorkerLoop } from './loop.js';

export interface WebhookWorkerOptions {
  /** Calls in flight at once, over all endpoints. */
  concurrency: number;
  /** Calls in flight at once to one endpoint. */
  perEndpoint: number;
  leaseMs: number;
  pollMs: number;
  /** No answer in this long counts as a failure (the contract's 10 s). */
  timeoutMs: number;
  /** Backoff after a failure: base * 2^(attempts - 1), capped. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** A delivery this old, or an endpoint failing this long, is given up (three days). */
  giveUpMs: number;
  /** Events fed to one endpoint per statement. */
  feedLimit: number;
}

const DAY_MS = 24 * 3600_000;

export const DEFAULT_WEBHOOK_OPTIONS: WebhookWorkerOptions = {
  concurrency: 32,
  perEndpoint: 4,
  leaseMs: 60_000,
  pollMs: 1_000,
  timeoutMs: 10_000,
  // 5 s, 10 s, 20 s … about 12 tries in the first 6 hours, then every 6 hours: ~22 over three days.
  retryBaseMs: 5_000,
  retryMaxMs: 6 * 3600_000,
  giveUpMs: 3 * DAY_MS,
  feedLimit: 1_000,
};

type WebhookDeps = Pick<Deps, 'db' | 'log' | 'clock' | 'config' | 'metrics'>;

interface Answer {
  statusCode: number | null;
  error: string | null;
}

export class WebhookWorker extends LoopingWorker {
  readonly id = `${hostname()}:${process.pid}:webhooks:${randomUUID().slice(0, 8)}`;
  readonly options: WebhookWorkerOptions;
  protected readonly loop: WorkerLoop;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly perEndpoint = new Map<string, number>();
  // Keep-alive: a busy endpoint is called over a few reused connections, not one per event.
  private readonly agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

  constructor(private readonly deps: WebhookDeps, options: Partial<WebhookWorkerOptions> = {}) {
    super();
    this.options = { ...DEFAULT_WEBHOOK_OPTIONS, ...options };
    this.loop = new WorkerLoop(async () => {
      const started = await this.runOnce();
      return { full: started > 0 && this.inFlight.size < this.options.concurrency };
    }, { pollMs: this.options.pollMs, name: this.id }, deps.log);
  }

  /** Feeds every endpoint, then starts the calls that are due (without waiting for them); resolves with how many it started. */
  async runOnce(): Promise<number> {
    await this.feedAll();
    const room = this.options.concurrency - this.inFlight.size;
    if (room <= 0 || this.stopping) return 0;
    const busy = [...this.perEndpoint].filter(([, n]) => n >= this.options.perEndpoint).map(([id]) => id);
    const claimed = await store.claimDueDeliveries(this.deps.db, this.id, {
      limit: room, leaseMs: this.options.leaseMs, now: new Date(this.deps.clock()), busyEndpoints: busy,
    });
    const surplus: string[] = [];
    for (const delivery of claimed) {
      const calls = this.perEndpoint.get(delivery.endpoint_id) ?? 0;
      if (calls >= this.options.perEndpoint) { surplus.push(delivery.id); continue; }
      this.perEndpoint.set(delivery.endpoint_id, calls + 1);
      const call = this.deliver(delivery)
        .catch((error: unknown) => this.deps.log.error({ err: error, delivery_id: delivery.id }, 'webhook delivery failed to record'))
        .finally(() => {
          this.inFlight.delete(call);
          const left = (this.perEndpoint.get(delivery.endpoint_id) ?? 1) - 1;
          if (left > 0) this.perEndpoint.set(delivery.endpoint_id, left); else this.perEndpoint.delete(delivery.endpoint_id);
          this.wake();
        });
      this.inFlight.add(call);
    }
    await store.releaseDeliveries(this.deps.db, this.id, surplus);
    return claimed.length - surplus.length;
  }

  /** Waits for every call in flight (tests, and stop). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** Calls still in flight are cut off: each counts as a failed attempt and is tried again later (at least once). */
  override async stop(): Promise<void> {
    await super.stop();
    this.agents.http.destroy();
    this.agents.https.destroy();
    await this.settle();
  }

  private async feedAll(): Promise<void> {
    for (const endpointId of await store.findEnabledEndpointIds(this.deps.db)) {
      await this.deps.db.transaction().execute(async (trx) => {
        const endpoint = await store.lockEndpointFeed(trx, endpointId);
        if (!endpoint) return;
        const result = await store.feedEndpoint(trx, {
          endpointId, horizon: endpoint.horizon, afterEventId: endpoint.after_event_id, kinds: kindsFor(endpoint.events),
          listIds: endpoint.list_ids, now: new Date(this.deps.clock()), limit: this.options.feedLimit,
        });
        // A full batch may have left events behind the horizon: keep it until a round takes them all.
        if (result.fed < this.options.feedLimit) await store.saveHorizon(trx, endpointId, result.horizon);
      });
    }
  }

  private async deliver(delivery: store.ClaimedDelivery): Promise<void> {
    const { db, clock, metrics, log } = this.deps;
    const facts = await store.findEventFacts(db, delivery.event_id);
    const body = JSON.stringify(webhookBody({
      eventId: delivery.event_id, kind: facts!.kind, occurredAt: facts!.occurred_at, subscriberId: facts!.subscriber_id,
      email: facts!.email, firstName: facts!.first_name, lastName: facts!.last_name,
      list: facts!.slug ? { slug: facts!.slug, fields: facts!.fields ?? [] } : null,
    }));
    const started = Date.now();
    const answer = await this.call(delivery, body, clock());
    const at = new Date(clock());
    const durationMs = Date.now() - started;
    await store.recordAttempt(db, { deliveryId: delivery.id, endpointId: delivery.endpoint_id, at, statusCode: answer.statusCode, error: answer.error, durationMs });
    if (answer.statusCode !== null && answer.statusCode >= 200 && answer.statusCode < 300) {
      metrics.webhookAttempts.inc({ outcome: 'delivered' });
      await store.markDelivered(db, this.id, { id: delivery.id, endpointId: delivery.endpoint_id, at });
      return;
    }
    const delay = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** (delivery.attempts - 1));
    const giveUpBefore = new Date(at.getTime() - this.options.giveUpMs);
    const gaveUp = delivery.created_at.getTime() <= giveUpBefore.getTime();
    metrics.webhookAttempts.inc({ outcome: answer.error?.startsWith('refused') ? 'refused' : gaveUp ? 'gave_up' : 'failed' });
    const { disabled } = await store.markAttemptFailed(db, this.id, {
      id: delivery.id, endpointId: delivery.endpoint_id, at, retryAt: new Date(at.getTime() + delay), giveUpBefore,
      reason: `failing since more than ${Math.round(this.options.giveUpMs / DAY_MS)} days; last: ${answer.error ?? `HTTP ${answer.statusCode}`}`.slice(0, 500),
    });
    log.warn({ delivery_id: delivery.id, endpoint_id: delivery.endpoint_id, attempts: delivery.attempts, status: answer.statusCode, error: answer.error, disabled }, 'webhook not delivered');
  }

  /** One POST with the Standard Webhooks headers; never throws: a failure is an answer without a status. */
  private call(delivery: store.ClaimedDelivery, body: string, now: number): Promise<Answer> {
    const url = new URL(delivery.url);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const guard = !this.deps.config.webhookAllowPrivate;
    // A literal IP is never looked up, so the lookup's check cannot see it: check it here.
    if (guard && isIP(host) !== 0 && isPrivateAddress(host)) {
      return Promise.resolve({ statusCode: null, error: `refused: ${host} is a private, loopback or link-local address` });
    }
    const headers = {
      ...webhookHeaders(delivery.secret, { id: `msg_${delivery.event_id}`, timestamp: Math.floor(now / 1000), body }),
      'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': 'assent-webhooks/1',
    };
    const https_ = url.protocol === 'https:';
    return new Promise<Answer>((resolve) => {
      let settled = false;
      const finish = (answer: Answer) => { if (!settled) { settled = true; clearTimeout(timer); resolve(answer); } };
      const request = (https_ ? https : http).request(url, {
        method: 'POST', headers, agent: https_ ? this.agents.https : this.agents.http,
        ...(guard && { lookup: publicOnlyLookup as never }),
      }, (response) => {
        response.resume(); // the answer's body is not read: its status is the answer
        response.on('end', () => finish({ statusCode: response.statusCode ?? null, error: null }));
        response.on('error', (error) => finish({ statusCode: null, error: error.message }));
      });
      const timer = setTimeout(() => {
        request.destroy();
        finish({ statusCode: null, error: `no answer within ${this.options.timeoutMs} ms` });
      }, this.options.timeoutMs);
      request.on('error', (error) => finish({
        statusCode: null, error: error instanceof RefusedAddress ? `refused: ${error.message}` : error.message.slice(0, 300),
      }));
      request.end(body);
    });
  }
}
