// The service as tests drive it: the real app over the real database and a real SMTP
// peer; only the clock is fake, so tests can move time.
import { type Config, parseConfig } from '../../src/config.js';
import type { Database } from '../../src/db/database.js';
import type { Deps } from '../../src/deps.js';
import { createApp } from '../../src/http/app.js';
import { ConsentLogWorker, DEFAULT_CONSENT_LOG_OPTIONS } from '../../src/log/worker.js';
import { buildDeps } from '../../src/main.js';
import { smtpSender } from '../../src/mail/transport.js';
import { CampaignWorker } from '../../src/workers/campaign.js';
import { OutboxWorker, type OutboxWorkerOptions } from '../../src/workers/outbox.js';
import { ReconsentWorker } from '../../src/workers/reconsent.js';
import { testLogger } from './logs.js';

export { API_KEY, TEST_SECRET } from './secrets.js';
import { API_KEY, TEST_LOG_KEY, TEST_SECRET } from './secrets.js';

export class FakeClock {
  constructor(public now = Date.parse('2026-01-15T10:00:00Z')) {}
  readonly read = () => this.now;
  advance(ms: number): void {
    this.now += ms;
  }
}

export function testConfig(env: Record<string, string> = {}): Config {
  const result = parseConfig({
    NODE_ENV: 'test',
    PUBLIC_URL: 'https://assent.test',
    TOKEN_SECRETS: TEST_SECRET,
    ASSENT_API_KEY: API_KEY,
    SUBSCRIBE_RATE_LIMIT: '0',
    TRUST_PROXY: '1',
    MAIL_FROM: 'News <news@assent.test>',
    LOG_LEVEL: 'silent',
    CONSENT_LOG_KEY: TEST_LOG_KEY,
    ...env,
  });
  if (!result.ok) throw new Error(result.problems.join('\n'));
  return result.config;
}

export interface TestService {
  deps: Deps;
  clock: FakeClock;
  app: ReturnType<typeof createApp>;
  worker: OutboxWorker;
  campaignWorker: CampaignWorker;
  reconsentWorker: ReconsentWorker;
  /** The consent log's sequencer, driven by the test: runOnce({ forceCheckpoint: true }) signs at once. */
  consentLogWorker: ConsentLogWorker;
  /** JSON request to the API with the test key. */
  api(method: string, path: string, body?: unknown): Promise<Response>;
  close(): void;
}

export async function createTestService(db: Database, options: {
  smtpUrl?: string; env?: Record<string, string>; worker?: Partial<OutboxWorkerOptions>;
} = {}): Promise<TestService> {
  const config = testConfig({ ...(options.smtpUrl && { SMTP_URL: options.smtpUrl }), ...options.env });
  const clock = new FakeClock();
  const deps = { ...(await buildDeps(config, testLogger(config), db)), clock: clock.read };
  const app = createApp(deps);
  const sender = smtpSender(options.smtpUrl ?? 'smtp://127.0.0.1:9', { maxConnections: 2, dkim: config.dkim });
  const worker = new OutboxWorker({ ...deps, sender }, { retryBaseMs: 0, pollMs: 50, ...options.worker });
  const campaignWorker = new CampaignWorker({ ...deps, sender }, { retryBaseMs: 0, pollMs: 50 });
  const reconsentWorker = new ReconsentWorker({ ...deps, sender }, { retryBaseMs: 0, pollMs: 50 });
  const consentLogWorker = new ConsentLogWorker({
    db, log: deps.log, clock: clock.read,
    metrics: { halted: deps.metrics.consentLogHalted, checkpoints: deps.metrics.consentLogCheckpoints, leaves: deps.metrics.consentLogLeaves },
  }, { ...DEFAULT_CONSENT_LOG_OPTIONS, origin: config.consentLog.origin, signer: config.consentLog.key!, tsaUrl: config.consentLog.tsaUrl, pollMs: 50 });
  return {
    deps,
    clock,
    app,
    worker,
    campaignWorker,
    reconsentWorker,
    consentLogWorker,
    api: (method, path, body) => Promise.resolve(app.request(path, {
      method,
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    })),
    close: () => sender.close(),
  };
}
